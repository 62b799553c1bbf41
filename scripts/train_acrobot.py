"""Train the shipped Acrobot-v1 policy from a seed: a double DQN with a replay buffer and a soft
target net, acting in 8 gymnasium Acrobot episodes at once (``envs.GymBatch``), on one CPU thread.

    python scripts/train_acrobot.py --seed 0      # -> models/weights/acrobot-dqn.{safetensors,json}
    python scripts/train_acrobot.py --robust      # -> acrobot-dqn-robust.* (fine-tuned from acrobot-dqn)

Acrobot-v1: observation (6,) = cos/sin of the two joint angles and their angular velocities
(raw gymnasium units), 3 actions (torque -1, 0, +1), reward -1 per step until the tip swings above
the bar, episodes cut at 500 steps: the return is minus the number of steps taken (-500 at worst).

The checkpoint kept is the one with the best mean greedy return on 100 selection episodes (seeds
1_000_000+), evaluated every ``--eval-every`` iterations; the card reports the measuring seeds
0..99, never used for selection, and the policy's own clean state std per dimension
(``state_std``, the unit of the state-scaled threat). ``--checkpoint PATH`` saves the whole
training state at every evaluation and resumes from it. CPU time is this process's
``time.process_time()`` (one thread).

``--robust`` fine-tunes ``acrobot-dqn`` with the recipe of ``cartpole-dqn-robust`` (SA-DQN, Zhang
et al. 2020), the ball measured in acrobot-dqn's own state std: (1) attacked training rollouts,
each episode clean or attacked on every step (PGD flipping the greedy action, towards the critic's
worst action, or towards one fixed action), the agent acting on what it is shown while the replay
buffer keeps the true states; (2) the loss adds ``kappa`` x the hinge of the greedy action's Q
margin at the PGD point of the ball. The checkpoint kept maximises min(clean mean, mean of the
per-episode worst PGD return) on selection seeds.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from robustlab.attacks.policy import ObsPGD
from robustlab.defenses.policy import RolloutAdversary, sa_hinge
from robustlab.envs import GymBatch
from robustlab.envs.rollout import greedy_rollout
from robustlab.evaluation.episodes import rollout
from robustlab.models.policy import PolicyNet, policy_from_state
from robustlab.threats.obs import StateBall

ENV = "Acrobot-v1"
# cos/sin are in [-1, 1]; the angular velocities are bounded by 4 pi and 9 pi rad/s
OBS_SCALE = torch.tensor([1.0, 1.0, 1.0, 1.0, 2 * math.pi, 4 * math.pi])
SELECT_SEEDS = list(range(1_000_000, 1_000_100))
MEASURE_SEEDS = list(range(100))
WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "models" / "weights"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


FULL_ATTACKS = (ObsPGD(), ObsPGD(target="min-q"), ObsPGD(target=0), ObsPGD(target=1), ObsPGD(target=2))


def worst_return(policy: PolicyNet, scale: torch.Tensor, eps: float, seeds: list[int]) -> float:
    """Mean over ``seeds`` of the per-episode worst return under PGD-10 (flip, min-Q, towards each
    action) in the ball of radius eps * scale."""
    ball = StateBall(eps).bind(scale)
    worst = np.full(len(seeds), np.inf)
    for attack in FULL_ATTACKS:
        stats, _ = rollout(policy, ENV, seeds, ball, attack, stream=7)
        worst = np.minimum(worst, stats.returns)
    return float(worst.mean())


def select_score(policy: PolicyNet, robust: tuple[torch.Tensor, float, int] | None = None) -> float:
    """Mean greedy return over the 100 selection episodes; with ``robust`` = (scale, eps, n), the
    minimum of that and the mean worst-attack return on the first n selection episodes."""
    policy.eval()
    returns, _ = greedy_rollout(policy, ENV, SELECT_SEEDS)
    score = float(returns.mean())
    if robust is not None:
        score = min(score, worst_return(policy, robust[0], robust[1], SELECT_SEEDS[:robust[2]]))
    policy.train()
    return score


def Adversary(n: int, scale: torch.Tensor, seed: int, steps: int) -> RolloutAdversary:
    """Each episode slot: clean, or one of PGD flip / min-Q / towards action 0, 1, 2 on every step."""
    attacks = (None, ObsPGD(steps=steps), ObsPGD(steps=steps, target="min-q"),
               *(ObsPGD(steps=steps, target=a) for a in range(3)))
    return RolloutAdversary(attacks, n, scale, seed + 1)


def train(args: argparse.Namespace, init: dict | None = None,
          scale: torch.Tensor | None = None) -> tuple[dict, float, float, float]:
    """Returns (best state dict, its selection score, wall seconds, cpu seconds)."""
    g = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    q = PolicyNet(6, 3, args.hidden, OBS_SCALE, kind="dqn")
    if init is not None:
        q.load_state_dict(init)
    target = PolicyNet(6, 3, args.hidden, OBS_SCALE, kind="dqn")
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=args.lr)
    n_env, cap = args.n_env, args.buffer
    buf_o = torch.zeros(cap, 6); buf_a = torch.zeros(cap, dtype=torch.long); buf_r = torch.zeros(cap)
    buf_o2 = torch.zeros(cap, 6); buf_d = torch.zeros(cap)
    size = ptr = 0
    env = GymBatch(ENV)
    next_seed = 10_000_000 * (args.seed + 1)  # training episodes: apart from selection and measuring seeds
    obs = env.reset(range(next_seed, next_seed + n_env)); next_seed += n_env
    best, best_state, first = -math.inf, None, 1
    wall_before = cpu_before = 0.0
    iters = args.steps // n_env
    adversary = Adversary(n_env, scale, args.seed, args.attack_steps) if init is not None else None
    robust_sel = (scale, args.select_eps or args.eps, args.select_episodes) if init is not None else None
    if args.checkpoint is not None and args.checkpoint.is_file():  # resume where a cut-off run stopped
        ck = torch.load(args.checkpoint, weights_only=False)
        q.load_state_dict(ck["q"]); target.load_state_dict(ck["target"]); opt.load_state_dict(ck["opt"])
        buf_o, buf_a, buf_r, buf_o2, buf_d = ck["buffer"]
        size, ptr, next_seed, best, best_state = ck["size"], ck["ptr"], ck["next_seed"], ck["best"], ck["best_state"]
        g.set_state(ck["gen"]); rng.bit_generator.state = ck["rng"]; torch.set_rng_state(ck["torch_rng"])
        first, wall_before, cpu_before = ck["it"] + 1, ck["wall"], ck["cpu"]
        if adversary is not None:
            adversary.rng.bit_generator.state, adversary.mode = ck["adv_rng"], ck["adv_mode"]
        obs = env.reset(range(next_seed, next_seed + n_env)); next_seed += n_env
        log(f"resumed from {args.checkpoint} at iteration {ck['it']} (best {best:.1f})")
    t0, c0 = time.time() - wall_before, time.process_time() - cpu_before
    loss = torch.zeros(())
    for it in range(first, iters + 1):
        steps_done = it * n_env
        eps_greedy = max(args.eps_final, 1.0 - (1.0 - args.eps_final) * steps_done / args.explore_steps)
        ramp = min(1.0, it / (0.3 * iters))  # robust: the radius grows over the first 30% of iterations
        if init is not None:
            eps_greedy = args.eps_final
        seen = adversary.perceive(q, obs, args.eps * ramp) if adversary is not None else obs
        with torch.no_grad():
            greedy = q(seen).argmax(dim=1)
        rand = torch.from_numpy(rng.integers(0, 3, n_env))
        act = torch.where(torch.from_numpy(rng.random(n_env) < eps_greedy), rand, greedy)
        obs2, rew, term, _ = env.step(act)
        idx = torch.arange(ptr, ptr + n_env) % cap
        # a truncated episode (500 steps) is not terminal: its target bootstraps from obs2; robust:
        # the true state is stored (SA-DQN), the attack only decides which states the rollouts visit
        buf_o[idx], buf_a[idx], buf_r[idx], buf_o2[idx], buf_d[idx] = obs, act, rew, obs2, term.float()
        ptr = (ptr + n_env) % cap; size = min(size + n_env, cap)
        done = np.flatnonzero(env.done)
        if len(done) and adversary is not None:
            adversary.restart(done)
        if len(done):
            obs2 = env.restart(done, range(next_seed, next_seed + len(done))); next_seed += len(done)
        obs = obs2
        if size >= args.warmup:
            for _ in range(args.updates):
                b = torch.randint(0, size, (args.batch,), generator=g)
                with torch.no_grad():
                    a2 = q(buf_o2[b]).argmax(dim=1, keepdim=True)  # double DQN
                    y = buf_r[b] + args.gamma * (1 - buf_d[b]) * target(buf_o2[b]).gather(1, a2).squeeze(1)
                pred = q(buf_o[b]).gather(1, buf_a[b][:, None]).squeeze(1)
                loss = F.smooth_l1_loss(pred, y)
                if init is not None and args.kappa > 0:
                    loss = loss + args.kappa * ramp * sa_hinge(q, buf_o[b], scale, args.eps * ramp, args.margin)
                opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0); opt.step()
                with torch.no_grad():
                    for pt, pq in zip(target.parameters(), q.parameters()):
                        pt.mul_(1 - args.tau).add_(args.tau * pq)
        if it % args.eval_every == 0 or it == iters:
            score = select_score(q, robust_sel)
            if score >= best:
                best, best_state = score, {k: v.clone() for k, v in q.state_dict().items()}
            log(f"dqn it {it} steps {steps_done} eps-greedy {eps_greedy:.3f} loss {loss.item():.4f} "
                f"select {score:.1f} best {best:.1f} (wall {time.time() - t0:.0f}s, cpu {time.process_time() - c0:.0f}s)")
            if args.checkpoint is not None:
                tmp = args.checkpoint.with_suffix(".tmp")
                torch.save({"q": q.state_dict(), "target": target.state_dict(), "opt": opt.state_dict(),
                            "buffer": (buf_o, buf_a, buf_r, buf_o2, buf_d), "size": size, "ptr": ptr,
                            "next_seed": next_seed, "best": best, "best_state": best_state, "gen": g.get_state(),
                            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "it": it,
                            "wall": time.time() - t0, "cpu": time.process_time() - c0,
                            "adv_rng": adversary.rng.bit_generator.state if adversary is not None else None,
                            "adv_mode": adversary.mode if adversary is not None else None}, tmp)
                tmp.replace(args.checkpoint)
    env.close()
    return best_state, best, time.time() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=150_000, help="environment steps in all (all episodes together)")
    p.add_argument("--n-env", type=int, default=8, help="episodes stepped together")
    p.add_argument("--updates", type=int, default=4, help="gradient steps per iteration (per n-env env steps)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--buffer", type=int, default=50_000)
    p.add_argument("--warmup", type=int, default=1000, help="transitions collected before the first update")
    p.add_argument("--tau", type=float, default=0.005, help="soft target-net update rate per gradient step")
    p.add_argument("--eps-final", type=float, default=0.05)
    p.add_argument("--explore-steps", type=int, default=15_000, help="env steps over which eps-greedy decays to eps-final")
    p.add_argument("--eval-every", type=int, default=250, help="iterations between selection evaluations")
    p.add_argument("--checkpoint", type=Path, default=None, help="save here at every evaluation; resume from it")
    p.add_argument("--robust", action="store_true", help="fine-tune acrobot-dqn: attacked rollouts + SA-DQN hinge")
    p.add_argument("--eps", type=float, default=0.3, help="robust: state-scaled radius of the rollouts' attacks and the hinge")
    p.add_argument("--select-eps", type=float, default=None, help="robust: eps of the selection attacks (default --eps)")
    p.add_argument("--select-episodes", type=int, default=10, help="robust: selection episodes under each attack")
    p.add_argument("--kappa", type=float, default=0.3, help="robust: weight of the hinge")
    p.add_argument("--margin", type=float, default=0.1, help="robust: Q margin the hinge asks of the greedy action")
    p.add_argument("--attack-steps", type=int, default=3, help="robust: PGD steps of the rollouts' attacks")
    p.add_argument("--name", default=None, help="default acrobot-dqn, or acrobot-dqn-robust with --robust")
    p.add_argument("--out", type=Path, default=WEIGHTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.name = args.name or ("acrobot-dqn-robust" if args.robust else "acrobot-dqn")
    init = scale = None
    if args.robust:
        base = policy_from_state(load_file(str(args.out / "acrobot-dqn.safetensors")), "dqn")
        init, scale = base.state_dict(), base.state_std.clone()  # the radius unit: the vanilla policy's state std
        log(f"robust fine-tune of acrobot-dqn, state std {scale.tolist()}")
    state, best, wall, cpu = train(args, init, scale)
    policy = policy_from_state(state, "dqn")
    returns, visited = greedy_rollout(policy, ENV, MEASURE_SEEDS)
    policy.state_std.copy_(visited.std(dim=0))
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(args.out / f"{args.name}.safetensors"))
    root = Path(__file__).resolve().parents[1]
    recipe = {k: (str(v.resolve().relative_to(root)) if isinstance(v, Path) and v.resolve().is_relative_to(root)
                  else str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    card_path = args.out / f"{args.name}.json"
    card = {"name": args.name, "env": ENV, "gymnasium": __import__("gymnasium").__version__, "algorithm": "dqn",
            "robust": args.robust, "recipe": recipe, "seed": args.seed, "env_steps": args.steps,
            "command": "python scripts/train_acrobot.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "wall_seconds": round(wall, 1), "cpu_seconds_one_thread": round(cpu, 1), "selection_score": best,
            "clean_return_mean_seeds_0_99": float(returns.mean()), "clean_return_min_seeds_0_99": float(returns.min()),
            "state_std": [round(float(v), 6) for v in policy.state_std]}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    log(f"saved {args.name}: clean mean {returns.mean():.1f} min {returns.min():.0f} over seeds 0..99; "
        f"state std {policy.state_std.tolist()}")


if __name__ == "__main__":
    main()
