"""Observation attacks on the shipped CartPole policies, the state-scaled ball, the batched
dynamics and the episode store (issue 18)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import robustlab as rl
from robustlab.attacks.policy import ObsNoise, ObsPGD, Timed, parse_policy_attack
from robustlab.envs import BatchedCartPole, GymBatch
from robustlab.evaluation.episodes import check_min_return, evaluate_policy, rollout
from robustlab.threats import parse_threat
from robustlab.threats.obs import StateBall

EPS = 0.4  # the zoo entries' threat: 0.4 state std per dimension


def test_batched_cartpole_equals_gymnasium_bit_for_bit(dqn):
    seeds = list(range(12))
    fast, slow = BatchedCartPole(), GymBatch("CartPole-v1")
    a, b = fast.reset(seeds), slow.reset(seeds)
    assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(0)
    while not slow.done.all():
        # the shipped policy, with random actions mixed in so that episodes also terminate early
        act = torch.where(torch.rand(len(seeds), generator=gen) < 0.15, torch.randint(0, 2, (len(seeds),), generator=gen),
                          dqn(a).argmax(1))
        a, ra, ta, ua = fast.step(act)
        b, rb, tb, ub = slow.step(act)
        assert torch.equal(a, b) and torch.equal(ra, rb) and torch.equal(ta, tb) and torch.equal(ua, ub)
    assert np.array_equal(fast.state, np.stack([e.unwrapped.state for e in slow.envs]))
    assert np.array_equal(fast.steps, slow.steps) and fast.steps.min() < 500  # both ends were exercised


def test_state_ball_geometry_and_spec():
    ball = parse_threat("state:0.5")
    assert isinstance(ball, StateBall) and ball.spec() == "state:0.5"
    with pytest.raises(ValueError, match="bind"):
        ball.per_dim(torch.zeros(1, 4))
    ball = ball.bind(torch.tensor([1.0, 2.0, 0.1, 0.5]))
    x = torch.zeros(3, 4)
    far = ball.project(x + 10.0, x)
    assert torch.allclose(far[0], torch.tensor([0.5, 1.0, 0.05, 0.25]))
    assert torch.allclose(ball.distance(far, x), torch.full((3,), 0.5))
    assert ball.admits(far, x).all() and not ball.admits(far * 1.01, x).any()
    start = ball.random_start(x, torch.Generator().manual_seed(0))
    assert ball.admits(start, x).all()
    for bad, arg in (("state:-1", "eps"), ("state:x", "threat")):
        with pytest.raises(ValueError, match=arg):
            parse_threat(bad)
    with pytest.raises(ValueError, match="scale"):
        StateBall(0.1, (1.0, 0.0))


def test_attacks_stay_in_the_ball_and_count_their_passes(dqn, visited):
    ball = StateBall(EPS).bind(dqn.state_std)
    greedy = dqn(visited).argmax(1)
    gen = torch.Generator().manual_seed(1)
    for attack in (ObsNoise(), ObsNoise(corners=True), ObsPGD(), ObsPGD(steps=1, step_size=1.0, random_start=False),
                   ObsPGD(target="min-q"), ObsPGD(target=1), Timed(ObsPGD(), threshold=0.2)):
        u = torch.rand(len(visited), attack.n_random(4), generator=gen)
        res = attack(dqn, visited, ball, u if u.shape[1] else None)
        assert ball.admits(res.obs_adv, visited).all(), attack
        assert res.forward.shape == (len(visited),) and (res.backward <= res.forward).all()
        if isinstance(attack, ObsPGD):
            assert (res.forward >= 2).all() and (res.forward <= attack.steps + 2).all()
            pick = dqn(res.obs_adv).argmax(1)
            goal = {"flip": None, "min-q": dqn(visited).argmin(1)}.get(attack.target, attack.target)
            reached = pick != greedy if goal is None else pick == goal
            # an observation the attack did not move to its goal cost it every step
            assert (res.backward[~reached] == attack.steps).all() and reached.any()
    pgd = ObsPGD()(dqn, visited, ball, torch.rand(len(visited), 4, generator=gen))
    noise = ObsNoise()(dqn, visited, ball, torch.rand(len(visited), 4, generator=gen))
    pgd_flips = (dqn(pgd.obs_adv).argmax(1) != greedy).float().mean()
    noise_flips = (dqn(noise.obs_adv).argmax(1) != greedy).float().mean()
    assert pgd_flips > 0.5 and pgd_flips > 3 * noise_flips


@pytest.mark.slow
def test_pgd_breaks_the_vanilla_policy_far_more_than_noise(dqn):
    report = evaluate_policy(dqn, "CartPole-v1", f"state:{EPS}", ["pgd", "pgd-action1", "timed0.2-pgd"], episodes=4,
                             seed=0)
    pgd, toward, timed = report.attacks
    assert report.clean.mean_return == 500.0 and report.noise.mean_return == 500.0  # noise of the budget: harmless
    worst = np.minimum(pgd.returns, toward.returns)  # the adversary picks its attack per episode
    assert worst.mean() < 100 and max(worst) < 150
    # the strategically timed attack does real damage attacking a few percent of the steps
    assert timed.attacked_fraction < 0.1 and timed.mean_return < 250
    assert check_min_return(report, 400)[0] is False and check_min_return(report, 50)[0] is True


@pytest.mark.slow
def test_robust_ppo_holds_where_the_vanilla_one_breaks():
    robust, vanilla = rl.models.load("cartpole-ppo-robust"), rl.models.load("cartpole-ppo")
    # the same raw perturbation for both: the ball in the vanilla policy's state std
    ball = StateBall(EPS).bind(vanilla.state_std)
    seeds = range(2)
    worst_robust = np.full(2, np.inf)
    for attack in (ObsPGD(), ObsPGD(target=0), ObsPGD(target=1)):
        worst_robust = np.minimum(worst_robust, rollout(robust, "CartPole-v1", seeds, ball, attack)[0].returns)
    worst_vanilla = np.array(rollout(vanilla, "CartPole-v1", seeds, ball, ObsPGD(target=1))[0].returns)
    assert worst_robust.min() >= 400 and worst_vanilla.max() < 250, (worst_robust, worst_vanilla)


def test_store_keeps_each_episode_and_a_rerun_reads_them_back(dqn, tmp_path, monkeypatch):
    store = rl.Store(tmp_path / "runs.db")
    first = evaluate_policy(dqn, "CartPole-v1", "state:0.2", "fgsm", episodes=3, seed=5, store=store)
    import robustlab.evaluation.episodes as episodes

    def no_rollout(*a, **k):
        raise AssertionError("a stored episode was rolled out again")

    monkeypatch.setattr(episodes, "rollout", no_rollout)
    again = evaluate_policy(dqn, "CartPole-v1", "linf:0.2", "fgsm", episodes=3, seed=5, store=store)
    assert again.run_id == first.run_id
    assert again.attacks[0].returns == first.attacks[0].returns and again.clean.returns == first.clean.returns
    store.close()


def test_bad_arguments_name_themselves(dqn):
    with pytest.raises(ValueError, match="episodes"):
        evaluate_policy(dqn, episodes=0)
    with pytest.raises(ValueError, match="attacks"):
        parse_policy_attack("pgd-x")
    with pytest.raises(ValueError, match="threat"):
        evaluate_policy(dqn, threat="l2:0.1", episodes=1)
    with pytest.raises(ValueError, match="u"):
        ObsPGD()(dqn, torch.zeros(2, 4), StateBall(0.1).bind(dqn.state_std), None)


def test_an_episode_does_not_depend_on_its_batch(dqn):
    ball = StateBall(EPS).bind(dqn.state_std)
    _, together = rollout(dqn, "CartPole-v1", [3, 4, 5], ball, ObsNoise(), stream=11, record=True)
    _, alone = rollout(dqn, "CartPole-v1", [4], ball, ObsNoise(), stream=11, record=True)
    assert together[1] == alone[0]  # the same actions, step for step
    _, other = rollout(dqn, "CartPole-v1", [4], ball, ObsNoise(), stream=12, record=True)
    assert other[0] != alone[0]  # the stream is what decides, not luck


def test_min_q_reaches_the_critics_worst_action_with_three_actions():
    # Acrobot-v1 has three actions, so the critic-guided target differs from "any other action"
    torch.manual_seed(0)
    q = rl.models.PolicyNet(6, 3, 32).eval()
    env = GymBatch("Acrobot-v1")
    obs = env.reset(range(32))
    ball = StateBall(2.0).bind(torch.ones(6))
    res = ObsPGD(steps=20, target="min-q")(q, obs, ball, torch.rand(32, 6))
    worst = q(obs).argmin(1)
    assert ball.admits(res.obs_adv, obs).all()
    assert (q(res.obs_adv).argmax(1) == worst).float().mean() > 0.5


@pytest.mark.slow
def test_cli_gate_fails_the_vanilla_policy_and_prints_the_table(tmp_path):
    import io

    from rich.console import Console

    from robustlab.evaluation.policy_cli import run_policy_evaluation

    out = io.StringIO()
    code = run_policy_evaluation(Console(file=out, width=150), "CartPole-v1", "cartpole-dqn", f"linf:{EPS}",
                                 "pgd-action1", episodes=2, store=tmp_path / "runs.db", min_return=400)
    text = out.getvalue()
    assert code == 1 and "FAILS the gate" in text and "pgd-action1" in text and "state:0.4" in text


def test_sa_hinge_is_zero_outside_the_ball_reach_and_positive_inside():
    """The SA regulariser of robust policy training: a linear 2-action policy whose margin is
    w . x; with a ball too small to bring the margin under ``margin`` the hinge is exactly 0, and
    with a ball that can flip the action it is positive and the PGD point stays inside the ball."""
    from robustlab.defenses.policy import pgd_margin_obs, sa_hinge

    torch.manual_seed(0)
    policy = torch.nn.Linear(4, 2)
    with torch.no_grad():
        policy.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))
        policy.bias.zero_()
    obs = torch.tensor([[2.0, 0, 0, 0], [3.0, 1, 1, 1]])  # margins 4 and 6 (action 0)
    scale = torch.ones(4)
    assert float(sa_hinge(policy, obs, scale, eps=0.1, margin=1.0)) == 0.0  # margin >= 4 - 0.4 > 1
    x_adv, a_star = pgd_margin_obs(policy, obs, scale, eps=2.5)
    assert a_star.tolist() == [0, 0] and float((x_adv - obs).abs().max()) <= 2.5 + 1e-6
    assert float(sa_hinge(policy, obs, scale, eps=2.5, margin=1.0)) > 0.0  # the ball reaches margin -1 for point 1
