"""Train the shipped Acrobot-v1 policy from a seed: a double DQN with a replay buffer and a soft
target net, acting in 8 gymnasium Acrobot episodes at once (``envs.GymBatch``), on one CPU thread.

    python scripts/train_acrobot.py --seed 0      # -> models/weights/acrobot-dqn.{safetensors,json}

Acrobot-v1: observation (6,) = cos/sin of the two joint angles and their angular velocities
(raw gymnasium units), 3 actions (torque -1, 0, +1), reward -1 per step until the tip swings above
the bar, episodes cut at 500 steps: the return is minus the number of steps taken (-500 at worst).

The checkpoint kept is the one with the best mean greedy return on 100 selection episodes (seeds
1_000_000+), evaluated every ``--eval-every`` iterations; the card reports the measuring seeds
0..99, never used for selection, and the policy's own clean state std per dimension
(``state_std``, the unit of the state-scaled threat). ``--checkpoint PATH`` saves the whole
training state at every evaluation and resumes from it. CPU time is this process's
``time.process_time()`` (one thread).
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
from safetensors.torch import save_file

from robustlab.envs import GymBatch
from robustlab.envs.rollout import greedy_rollout
from robustlab.models.policy import PolicyNet, policy_from_state

ENV = "Acrobot-v1"
# cos/sin are in [-1, 1]; the angular velocities are bounded by 4 pi and 9 pi rad/s
OBS_SCALE = torch.tensor([1.0, 1.0, 1.0, 1.0, 2 * math.pi, 4 * math.pi])
SELECT_SEEDS = list(range(1_000_000, 1_000_100))
MEASURE_SEEDS = list(range(100))
WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "models" / "weights"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def select_score(policy: PolicyNet) -> float:
    """Mean greedy return over the 100 selection episodes."""
    returns, _ = greedy_rollout(policy.eval(), ENV, SELECT_SEEDS)
    policy.train()
    return float(returns.mean())


def train(args: argparse.Namespace) -> tuple[dict, float, float, float]:
    """Returns (best state dict, its selection score, wall seconds, cpu seconds)."""
    g = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    q = PolicyNet(6, 3, args.hidden, OBS_SCALE, kind="dqn")
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
    if args.checkpoint is not None and args.checkpoint.is_file():  # resume where a cut-off run stopped
        ck = torch.load(args.checkpoint, weights_only=False)
        q.load_state_dict(ck["q"]); target.load_state_dict(ck["target"]); opt.load_state_dict(ck["opt"])
        buf_o, buf_a, buf_r, buf_o2, buf_d = ck["buffer"]
        size, ptr, next_seed, best, best_state = ck["size"], ck["ptr"], ck["next_seed"], ck["best"], ck["best_state"]
        g.set_state(ck["gen"]); rng.bit_generator.state = ck["rng"]; torch.set_rng_state(ck["torch_rng"])
        first, wall_before, cpu_before = ck["it"] + 1, ck["wall"], ck["cpu"]
        obs = env.reset(range(next_seed, next_seed + n_env)); next_seed += n_env
        log(f"resumed from {args.checkpoint} at iteration {ck['it']} (best {best:.1f})")
    t0, c0 = time.time() - wall_before, time.process_time() - cpu_before
    loss = torch.zeros(())
    for it in range(first, iters + 1):
        steps_done = it * n_env
        eps_greedy = max(args.eps_final, 1.0 - (1.0 - args.eps_final) * steps_done / args.explore_steps)
        with torch.no_grad():
            greedy = q(obs).argmax(dim=1)
        rand = torch.from_numpy(rng.integers(0, 3, n_env))
        act = torch.where(torch.from_numpy(rng.random(n_env) < eps_greedy), rand, greedy)
        obs2, rew, term, _ = env.step(act)
        idx = torch.arange(ptr, ptr + n_env) % cap
        # a truncated episode (500 steps) is not terminal: its target bootstraps from obs2
        buf_o[idx], buf_a[idx], buf_r[idx], buf_o2[idx], buf_d[idx] = obs, act, rew, obs2, term.float()
        ptr = (ptr + n_env) % cap; size = min(size + n_env, cap)
        done = np.flatnonzero(env.done)
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
                opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0); opt.step()
                with torch.no_grad():
                    for pt, pq in zip(target.parameters(), q.parameters()):
                        pt.mul_(1 - args.tau).add_(args.tau * pq)
        if it % args.eval_every == 0 or it == iters:
            score = select_score(q)
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
                            "wall": time.time() - t0, "cpu": time.process_time() - c0}, tmp)
                tmp.replace(args.checkpoint)
    env.close()
    return best_state, best, time.time() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100_000, help="environment steps in all (all episodes together)")
    p.add_argument("--n-env", type=int, default=8, help="episodes stepped together")
    p.add_argument("--updates", type=int, default=2, help="gradient steps per iteration (per n-env env steps)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--buffer", type=int, default=50_000)
    p.add_argument("--warmup", type=int, default=1000, help="transitions collected before the first update")
    p.add_argument("--tau", type=float, default=0.005, help="soft target-net update rate per gradient step")
    p.add_argument("--eps-final", type=float, default=0.05)
    p.add_argument("--explore-steps", type=int, default=15_000, help="env steps over which eps-greedy decays to eps-final")
    p.add_argument("--eval-every", type=int, default=500, help="iterations between selection evaluations")
    p.add_argument("--checkpoint", type=Path, default=None, help="save here at every evaluation; resume from it")
    p.add_argument("--name", default="acrobot-dqn")
    p.add_argument("--out", type=Path, default=WEIGHTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    state, best, wall, cpu = train(args)
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
            "robust": False, "recipe": recipe, "seed": args.seed, "env_steps": args.steps,
            "command": "python scripts/train_acrobot.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "wall_seconds": round(wall, 1), "cpu_seconds_one_thread": round(cpu, 1), "selection_score": best,
            "clean_return_mean_seeds_0_99": float(returns.mean()), "clean_return_min_seeds_0_99": float(returns.min()),
            "state_std": [round(float(v), 6) for v in policy.state_std]}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    log(f"saved {args.name}: clean mean {returns.mean():.1f} min {returns.min():.0f} over seeds 0..99; "
        f"state std {policy.state_std.tolist()}")


if __name__ == "__main__":
    main()
