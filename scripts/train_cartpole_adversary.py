"""Train a learned adversary against a shipped CartPole policy (Zhang et al. 2021 style): a
Q-network that picks, at each step, the action to push the policy towards; ``Steered`` then
reaches it with PGD inside the state-scaled ball.

    python scripts/train_cartpole_adversary.py cartpole-ppo --eps 0.4 --iterations 20000 --seed 0 --out runs/
        # -> runs/cartpole-ppo-adversary.{safetensors,json}

Not shipped: against the shipped cartpole-ppo the learned adversary rediscovers the steady push
(PGD towards action 1 on every step) and does no better (docs/rl.md).

The ball is measured in the victim's own state std (its ``state_std`` buffer), the eps of the
zoo entries' threat. Training episodes use seeds from 5_000_000 (never the measuring seeds 0..99);
the card reports the mean return of the victim on seeds 0..19 under the steered PGD, next to the
steady pushes (PGD towards one action on every step). One CPU thread.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import robustlab as rl
from robustlab.attacks.policy import ObsPGD, Steered
from robustlab.attacks.policy_adversary import train_adversary
from robustlab.evaluation.episodes import rollout
from robustlab.threats.obs import StateBall


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("victim", help="zoo name of the policy to attack (cartpole-ppo, cartpole-dqn)")
    p.add_argument("--eps", type=float, default=0.4, help="state-scaled Linf radius (victim's std units)")
    p.add_argument("--iterations", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gamma", type=float, default=0.99, help="the adversary's discount")
    p.add_argument("--episodes", type=int, default=20, help="measuring episodes (seeds 0..N-1) for the card")
    p.add_argument("--out", type=Path, required=True, help="folder for the adversary's weights and card")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    victim = rl.models.load(args.victim)
    ball = StateBall(args.eps).bind(victim.state_std)
    t0, c0 = time.time(), time.process_time()
    adversary = train_adversary(victim, ball, iterations=args.iterations, seed=args.seed, gamma=args.gamma,
                                log=log)
    wall, cpu = time.time() - t0, time.process_time() - c0
    name = f"{args.victim}-adversary"
    seeds = range(args.episodes)
    measured = {}
    for label, attack in (("learned", Steered(adversary, label="learned")), ("pgd-action0", ObsPGD(target=0)),
                          ("pgd-action1", ObsPGD(target=1))):
        stats, _ = rollout(victim, "CartPole-v1", seeds, ball, attack, stream=5)
        measured[label] = float(np.mean(stats.returns))
        log(f"{args.victim} at state:{args.eps:g} under {label}: mean return {measured[label]:.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in adversary.state_dict().items()}, str(args.out / f"{name}.safetensors"))
    card = {"name": name, "env": "CartPole-v1", "gymnasium": __import__("gymnasium").__version__,
            "algorithm": "double DQN on the adversary's MDP (targets reached at the corners of the ball)",
            "victim": args.victim, "threat": f"state:{args.eps:g}", "scale": [round(float(v), 6) for v in victim.state_std],
            "seed": args.seed, "iterations": args.iterations, "gamma": args.gamma, "parallel_episodes": 16,
            "command": "python scripts/train_cartpole_adversary.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "cpu_note": "process CPU time (time.process_time); wall inflated by other jobs sharing 2 cores",
            f"measured_mean_return_seeds_0_{args.episodes - 1}": measured,
            "use": "robustlab.attacks.policy.Steered(policy_from_state(load_file(path), 'dqn'))"}
    (args.out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"saved {name}")


if __name__ == "__main__":
    main()
