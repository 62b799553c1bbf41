"""The second environment of issue 18: the shipped Acrobot-v1 DQN (6-dim observations, 3 actions)
through gymnasium's own dynamics (``envs.GymBatch``), attacked in its own state-scaled ball."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import robustlab as rl
from robustlab.attacks.policy import ObsNoise, ObsPGD
from robustlab.envs import GymBatch, make_batched
from robustlab.envs.rollout import greedy_rollout
from robustlab.evaluation.episodes import rollout
from robustlab.models.zoo import ZOO
from robustlab.threats.obs import StateBall

ENV = "Acrobot-v1"
EPS = float(ZOO["acrobot-dqn"].threat.split(":")[1])  # the zoo entry's threat, in the policy's own state std
SEEDS = range(4)


@pytest.fixture(scope="module")
def acrobot():
    torch.set_num_threads(1)
    return rl.models.load("acrobot-dqn")


def test_shipped_acrobot_dqn_swings_up_quickly(acrobot):
    assert ZOO["acrobot-dqn"].dataset == ENV
    obs = make_batched(ENV).reset(SEEDS)
    assert obs.shape == (4, 6) and acrobot(obs).shape == (4, 3)
    returns, visited = greedy_rollout(acrobot, ENV, SEEDS)
    # Acrobot-v1's return is minus the steps to swing up (-500: never); published DQNs reach about -80 to -100
    assert returns.mean() >= -110 and returns.min() > -200, returns
    # the buffer the threat is measured in: the policy's own clean state std (measured on seeds 0..99)
    assert acrobot.state_std.shape == (6,) and bool((acrobot.state_std > 0).all())
    assert torch.allclose(visited.std(dim=0), acrobot.state_std, rtol=0.5)


def test_pgd_in_the_ball_breaks_the_swing_up_while_noise_does_not(acrobot):
    ball = StateBall(EPS).bind(acrobot.state_std)
    clean, _ = rollout(acrobot, ENV, SEEDS)
    noise, _ = rollout(acrobot, ENV, SEEDS, ball, ObsNoise(), stream=3)
    pgd, _ = rollout(acrobot, ENV, SEEDS, ball, ObsPGD(), stream=3)  # raises if an observation leaves the ball
    c, n, p = (float(np.mean(s.returns)) for s in (clean, noise, pgd))
    assert c - p >= 4 * max(c - n, 10.0), (c, n, p)  # the attack's loss far beyond same-budget noise's
    assert p <= -250, (c, n, p)
    assert 0 < pgd.attacked_fraction <= 1 and sum(pgd.backward) > 0
    # the attacked observations themselves: inside the ball, and they change the greedy action
    _, visited = greedy_rollout(acrobot, ENV, [0])
    res = ObsPGD()(acrobot, visited, ball, torch.rand(len(visited), 6, generator=torch.Generator().manual_seed(0)))
    assert bool(ball.admits(res.obs_adv, visited).all())
    changed = acrobot(res.obs_adv).argmax(1) != acrobot(visited).argmax(1)
    assert torch.equal(changed, res.attacked) and changed.float().mean() > 0.3


def test_gym_batch_restart_starts_the_seeded_episode():
    env = GymBatch(ENV)
    env.reset([5, 6])
    env.step(torch.tensor([0, 2]))
    obs = env.restart(np.array([1]), [9])
    fresh = GymBatch(ENV).reset([9])
    assert torch.equal(obs[1], fresh[0]) and env.steps.tolist() == [1, 0] and not env.done.any()
    with pytest.raises(ValueError, match="seeds"):
        env.restart(np.array([0, 1]), [1])


def test_cli_evaluates_the_acrobot_policy_and_stores_it(tmp_path):
    from rich.console import Console

    from robustlab.evaluation.policy_cli import run_policy_evaluation

    out = io.StringIO()
    code = run_policy_evaluation(Console(file=out, width=160), ENV, "acrobot-dqn", f"linf:{EPS:g}", "min-q",
                                 episodes=2, store=tmp_path / "runs.db", min_return=-150)
    text = out.getvalue()
    assert code == 1 and "FAILS the gate" in text and "min-q" in text and f"state:{EPS:g}" in text


def test_robust_acrobot_dqn_holds_where_the_vanilla_one_breaks(acrobot):
    robust = rl.models.load("acrobot-dqn-robust")
    # the same raw perturbation for both: the ball in the vanilla policy's state std
    ball = StateBall(EPS).bind(acrobot.state_std)
    seeds = range(3)
    clean, _ = rollout(robust, ENV, seeds)
    worst = {}
    for name, policy in (("vanilla", acrobot), ("robust", robust)):
        per_attack = [rollout(policy, ENV, seeds, ball, a, stream=5)[0].returns
                      for a in (ObsPGD(target=0), ObsPGD(target=2))]  # the steady pushes, the strongest attacks
        worst[name] = float(np.min(per_attack, axis=0).mean())
    assert float(np.mean(clean.returns)) >= -110
    assert worst["robust"] >= worst["vanilla"] + 150, worst
