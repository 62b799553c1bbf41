"""Train the shipped CartPole policies from a seed: DQN and PPO, and their robust versions,
fine-tuned from the vanilla ones with (1) adversarial training: in the training rollouts each
episode is clean or attacked on every step (PGD flipping the greedy action, or PGD towards a
fixed action) and the agent acts on and learns from the observation it is shown, and (2) an
SA-style regulariser: the hinge of the greedy action's margin at the PGD point of the
state-scaled ball, added to the RL loss (Zhang et al. 2020).

    python scripts/train_policies.py dqn --seed 0            # -> models/weights/cartpole-dqn.*
    python scripts/train_policies.py ppo --seed 0            # -> cartpole-ppo.*
    python scripts/train_policies.py dqn --robust --eps 0.2  # -> cartpole-dqn-robust.* (from cartpole-dqn)
    python scripts/train_policies.py ppo --robust --eps 0.2  # -> cartpole-ppo-robust.*

Checkpoints are chosen on 100 selection episodes (seeds 1_000_000+), never on the measuring
seeds 0..99 that the card reports. Everything runs on one CPU thread.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from robustlab.attacks.policy import ObsPGD
from robustlab.defenses.policy import RolloutAdversary, sa_hinge
from robustlab.envs import BatchedCartPole
from robustlab.envs.rollout import greedy_rollout, state_std
from robustlab.evaluation.episodes import rollout
from robustlab.models.policy import PolicyNet, policy_from_state
from robustlab.threats.obs import StateBall

ENV = "CartPole-v1"
OBS_SCALE = torch.tensor([2.4, 2.0, 0.21, 2.0])
SELECT_SEEDS = list(range(1_000_000, 1_000_100))
MEASURE_SEEDS = list(range(100))
WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "models" / "weights"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def select_score(policy: torch.nn.Module, robust_fn=None) -> float:
    clean, _ = greedy_rollout(policy.eval(), ENV, SELECT_SEEDS)
    score = float(clean.mean())
    if robust_fn is not None:
        score = min(score, robust_fn(policy))
    policy.train()
    return score


# -- robust training: attacked rollouts and the SA-style hinge live in robustlab.defenses.policy
def Adversary(n: int, scale: torch.Tensor, seed: int, steps: int = 5) -> RolloutAdversary:
    """Each episode slot: clean, PGD that flips the greedy action, or PGD towards action 0 / 1."""
    attacks = (None, ObsPGD(steps=steps), ObsPGD(steps=steps, target=0), ObsPGD(steps=steps, target=1))
    return RolloutAdversary(attacks, n, scale, seed)


def shaped(reward: torch.Tensor, next_obs: torch.Tensor, center: float) -> torch.Tensor:
    """The training reward: the environment's, minus ``center * (x / 2.4)^2`` (robust recipe: a
    policy that holds the cart near the middle has room to absorb a steady observation bias)."""
    return reward - center * (next_obs[:, 0] / 2.4) ** 2 * (reward > 0)


def pgd_return(policy, scale, eps, seeds=SELECT_SEEDS[:20]) -> float:
    """Mean return per episode under the worst of PGD-10 (flip) and the two constant-action PGD
    attacks, every observation attacked (selection only; seeds apart from the measuring ones)."""
    policy.eval()
    ball = StateBall(eps).bind(scale)
    worst = np.full(len(seeds), np.inf)
    for attack in (ObsPGD(steps=10), ObsPGD(steps=10, target=0), ObsPGD(steps=10, target=1)):
        stats, _ = rollout(policy, ENV, seeds, ball, attack, stream=7)
        worst = np.minimum(worst, stats.returns)
    return float(worst.mean())


# -- DQN -------------------------------------------------------------------------------------
def train_dqn(args, init=None, scale=None):
    g = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    q = PolicyNet(4, 2, args.hidden, OBS_SCALE, kind="dqn")
    if init is not None:
        q.load_state_dict(init)
    target = PolicyNet(4, 2, args.hidden, OBS_SCALE, kind="dqn")
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=args.lr)
    n_env, cap = 8, 100_000
    buf_o = torch.zeros(cap, 4); buf_a = torch.zeros(cap, dtype=torch.long); buf_r = torch.zeros(cap)
    buf_o2 = torch.zeros(cap, 4); buf_d = torch.zeros(cap)
    size = ptr = 0
    env = BatchedCartPole()
    next_seed = 10_000_000 * (args.seed + 1)
    obs = env.reset(range(next_seed, next_seed + n_env)); next_seed += n_env
    best, best_state, t0 = -1.0, None, time.time()
    robust_fn = (lambda p: pgd_return(p, scale, args.select_eps or args.eps, SELECT_SEEDS[:args.select_episodes])) \
        if args.robust else None
    explore = args.explore_steps if init is None else 1
    adversary = Adversary(n_env, scale, args.seed, args.attack_steps) if args.robust and args.attack_steps else None
    first, seconds_before = 1, 0.0
    if args.checkpoint is not None and args.checkpoint.is_file():  # resume where a cut-off run stopped
        ck = torch.load(args.checkpoint, weights_only=False)
        q.load_state_dict(ck["q"]); target.load_state_dict(ck["target"]); opt.load_state_dict(ck["opt"])
        buf_o, buf_a, buf_r, buf_o2, buf_d = ck["buffer"]
        size, ptr, next_seed, best, best_state = ck["size"], ck["ptr"], ck["next_seed"], ck["best"], ck["best_state"]
        g.set_state(ck["gen"]); rng.bit_generator.state = ck["rng"]; torch.set_rng_state(ck["torch_rng"])
        if adversary is not None:
            adversary.rng.bit_generator.state = ck["adv_rng"]
            adversary.mode = ck["adv_mode"]
        first, seconds_before = ck["it"] + 1, ck["seconds"]
        obs = env.reset(range(next_seed, next_seed + n_env)); next_seed += n_env
        log(f"resumed from {args.checkpoint} at iteration {ck['it']} (best {best:.1f})")
    t0 -= seconds_before
    for it in range(first, args.iters + 1):
        steps_done = it * n_env
        ramp = min(1.0, it / (0.3 * args.iters))
        eps_greedy = max(args.eps_final, 1.0 - steps_done / explore) if init is None else args.eps_final
        seen = adversary.perceive(q, obs, args.eps * ramp) if adversary is not None else obs
        with torch.no_grad():
            greedy = q(seen).argmax(dim=1)
        rand = torch.from_numpy(rng.integers(0, 2, n_env))
        act = torch.where(torch.from_numpy(rng.random(n_env) < eps_greedy), rand, greedy)
        obs2, rew, term, _ = env.step(act)
        idx = torch.arange(ptr, ptr + n_env) % cap
        # robust: the agent learns the value of acting on what it was shown (targets from clean states);
        # --store-clean (SA-DQN): the true state and the action taken are stored, the attack only
        # decides which states the rollouts visit
        buf_o[idx], buf_a[idx], buf_r[idx], buf_o2[idx], buf_d[idx] = obs if args.store_clean else seen, act, \
            shaped(rew, obs2, args.center), obs2, term.float()
        ptr = (ptr + n_env) % cap; size = min(size + n_env, cap)
        done = np.flatnonzero(env.done)
        if len(done) and adversary is not None:
            adversary.restart(done)
        if len(done):
            obs2 = env.restart(done, range(next_seed, next_seed + len(done))); next_seed += len(done)
        obs = obs2
        if size < args.warmup:
            continue
        for _ in range(2):
            b = torch.randint(0, size, (args.batch,), generator=g)
            with torch.no_grad():
                a2 = q(buf_o2[b]).argmax(dim=1, keepdim=True)  # double DQN
                y = buf_r[b] + args.gamma * (1 - buf_d[b]) * target(buf_o2[b]).gather(1, a2).squeeze(1)
            pred = q(buf_o[b]).gather(1, buf_a[b][:, None]).squeeze(1)
            loss = F.smooth_l1_loss(pred, y)
            if args.robust and args.kappa > 0:
                loss = loss + args.kappa * ramp * sa_hinge(q, buf_o[b], scale, args.eps * ramp, args.margin)
            opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0); opt.step()
            with torch.no_grad():
                for pt, pq in zip(target.parameters(), q.parameters()):
                    pt.mul_(1 - args.tau).add_(args.tau * pq)
        if it % args.eval_every == 0:
            score = select_score(q, robust_fn)
            if score >= best:
                best, best_state = score, {k: v.clone() for k, v in q.state_dict().items()}
            log(f"dqn it {it} steps {steps_done} eps-greedy {eps_greedy:.3f} loss {loss.item():.4f} "
                f"select {score:.1f} best {best:.1f} ({time.time() - t0:.0f}s, cpu {time.process_time():.0f}s)")
            if args.checkpoint is not None:
                tmp = args.checkpoint.with_suffix(".tmp")
                torch.save({"q": q.state_dict(), "target": target.state_dict(), "opt": opt.state_dict(),
                            "buffer": (buf_o, buf_a, buf_r, buf_o2, buf_d), "size": size, "ptr": ptr,
                            "next_seed": next_seed, "best": best, "best_state": best_state, "gen": g.get_state(),
                            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                            "adv_rng": adversary.rng.bit_generator.state if adversary is not None else None,
                            "adv_mode": adversary.mode if adversary is not None else None, "it": it,
                            "seconds": time.time() - t0}, tmp)
                tmp.replace(args.checkpoint)
    return best_state, best, time.time() - t0


# -- PPO -------------------------------------------------------------------------------------
class Critic(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                                       torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

    def forward(self, obs):
        return self.net(obs / OBS_SCALE).squeeze(-1)


def train_ppo(args, init=None, scale=None):
    torch.manual_seed(args.seed)
    pi = PolicyNet(4, 2, args.hidden, OBS_SCALE, kind="ppo")
    if init is not None:
        pi.load_state_dict(init)
    vf = Critic(args.hidden)
    opt = torch.optim.Adam(list(pi.parameters()) + list(vf.parameters()), lr=args.lr)
    n_env, T = 16, 128
    env = BatchedCartPole()
    next_seed = 10_000_000 * (args.seed + 1)
    obs = env.reset(range(next_seed, next_seed + n_env)); next_seed += n_env
    best, best_state, t0 = -1.0, None, time.time()
    robust_fn = (lambda p: pgd_return(p, scale, args.select_eps or args.eps, SELECT_SEEDS[:args.select_episodes])) \
        if args.robust else None
    adversary = Adversary(n_env, scale, args.seed, args.attack_steps) if args.robust and args.attack_steps else None
    for it in range(1, args.iters + 1):
        frac = 1.0 - (it - 1) / args.iters
        ramp = min(1.0, it / (0.3 * args.iters))
        for grp in opt.param_groups:
            grp["lr"] = args.lr * frac
        O = torch.zeros(T, n_env, 4); A = torch.zeros(T, n_env, dtype=torch.long); LP = torch.zeros(T, n_env)
        R = torch.zeros(T, n_env); D = torch.zeros(T, n_env); V = torch.zeros(T + 1, n_env); S = torch.zeros(T, n_env, 4)
        with torch.no_grad():
            for t in range(T):
                # robust: the actor acts on (and is trained on) what it is shown; the critic sees the state
                seen = adversary.perceive(pi, obs, args.eps * ramp) if adversary is not None else obs
                logits = pi(seen)
                dist = torch.distributions.Categorical(logits=logits)
                a = dist.sample()
                O[t], A[t], LP[t], V[t], S[t] = seen, a, dist.log_prob(a), vf(obs), obs
                obs2, rew, term, trunc = env.step(a)
                # a truncated episode is bootstrapped with the value of its last observation
                R[t] = shaped(rew, obs2, args.center) + args.gamma * vf(obs2) * trunc.float()
                D[t] = (term | trunc).float()
                done = np.flatnonzero(env.done)
                if len(done) and adversary is not None:
                    adversary.restart(done)
                if len(done):
                    obs2 = env.restart(done, range(next_seed, next_seed + len(done))); next_seed += len(done)
                obs = obs2
            V[T] = vf(obs)
            adv = torch.zeros(T, n_env); last = torch.zeros(n_env)
            for t in reversed(range(T)):
                delta = R[t] + args.gamma * V[t + 1] * (1 - D[t]) - V[t]
                last = delta + args.gamma * 0.95 * (1 - D[t]) * last
                adv[t] = last
            ret = adv + V[:T]
        O, A, LP, adv, ret, S = (O.reshape(-1, 4), A.reshape(-1), LP.reshape(-1), adv.reshape(-1), ret.reshape(-1),
                                 S.reshape(-1, 4))
        for _ in range(args.epochs):
            perm = torch.randperm(O.shape[0])
            for mb in perm.split(512):
                dist = torch.distributions.Categorical(logits=pi(O[mb]))
                ratio = (dist.log_prob(A[mb]) - LP[mb]).exp()
                a_n = (adv[mb] - adv[mb].mean()) / (adv[mb].std() + 1e-8)
                pg = -torch.min(ratio * a_n, ratio.clamp(0.8, 1.2) * a_n).mean()
                vl = F.mse_loss(vf(S[mb]), ret[mb])
                loss = pg + 0.5 * vl - args.entropy * frac * dist.entropy().mean()
                if args.robust and args.kappa > 0:
                    loss = loss + args.kappa * ramp * sa_hinge(pi, S[mb], scale, args.eps * ramp, args.margin)
                opt.zero_grad(); loss.backward()
                torch.nn.utils.clip_grad_norm_(list(pi.parameters()) + list(vf.parameters()), 0.5); opt.step()
        if it % args.eval_every == 0:
            score = select_score(pi, robust_fn)
            if score >= best:
                best, best_state = score, {k: v.clone() for k, v in pi.state_dict().items()}
            log(f"ppo it {it} steps {it * T * n_env} loss {loss.item():.4f} select {score:.1f} best {best:.1f} "
                f"({time.time() - t0:.0f}s)")
    return best_state, best, time.time() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("algo", choices=["dqn", "ppo"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--robust", action="store_true", help="fine-tune the vanilla policy with the SA-style hinge")
    p.add_argument("--eps", type=float, default=0.2, help="state-scaled Linf radius of the regulariser")
    p.add_argument("--select-eps", type=float, default=None, help="eps of the selection attacks (default --eps)")
    p.add_argument("--kappa", type=float, default=1.0, help="weight of the regulariser")
    p.add_argument("--margin", type=float, default=1.0, help="margin the hinge asks of the greedy action")
    p.add_argument("--center", type=float, default=0.0, help="reward shaping: minus CENTER * (x / 2.4)^2 per step")
    p.add_argument("--attack-steps", type=int, default=5, help="PGD steps of the attacks in robust training rollouts (0: clean rollouts)")
    p.add_argument("--store-clean", action="store_true",
                   help="DQN: store the true state in the replay buffer, not the attacked observation (SA-DQN)")
    p.add_argument("--warmup", type=int, default=1000, help="DQN: transitions collected before the first update")
    p.add_argument("--select-episodes", type=int, default=20, help="selection episodes under each attack")
    p.add_argument("--checkpoint", type=Path, default=None, help="DQN: save here at every evaluation; resume from it")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--tau", type=float, default=0.005)
    p.add_argument("--eps-final", type=float, default=0.02)
    p.add_argument("--explore-steps", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--entropy", type=float, default=0.01)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--out", type=Path, default=WEIGHTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    if args.iters is None:
        args.iters = {"dqn": 15_000, "ppo": 120}[args.algo] // (3 if args.robust else 1)
    if args.lr is None:
        args.lr = {"dqn": 5e-4, "ppo": 3e-4}[args.algo] / (3 if args.robust else 1)
    if args.eval_every is None:
        args.eval_every = {"dqn": 500, "ppo": 5}[args.algo]
    name = args.name or f"cartpole-{args.algo}" + ("-robust" if args.robust else "")
    init = scale = None
    if args.robust:
        base = policy_from_state(load_file(str(args.out / f"cartpole-{args.algo}.safetensors")), args.algo)
        init = base.state_dict()
        scale = base.state_std.clone()  # the radius unit: the vanilla policy's own state std
        log(f"robust fine-tune of cartpole-{args.algo}, state std {scale.tolist()}")
    fn = train_dqn if args.algo == "dqn" else train_ppo
    state, best, seconds = fn(args, init, scale)
    policy = policy_from_state(state, args.algo)
    policy.state_std.copy_(state_std(policy, ENV, MEASURE_SEEDS))
    returns, _ = greedy_rollout(policy, ENV, MEASURE_SEEDS)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(args.out / f"{name}.safetensors"))
    root = Path(__file__).resolve().parents[1]
    recipe = {k: (str(v.resolve().relative_to(root)) if isinstance(v, Path) and v.resolve().is_relative_to(root)
                  else str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    card = {"name": name, "env": ENV, "gymnasium": __import__("gymnasium").__version__, "algorithm": args.algo,
            "robust": args.robust, "recipe": recipe, "seed": args.seed,
            "command": "python scripts/train_policies.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "wall_seconds": round(seconds, 1), "cpu_seconds": round(time.process_time(), 1), "selection_score": best,
            "clean_return_mean_seeds_0_99": float(returns.mean()), "clean_return_min_seeds_0_99": float(returns.min()),
            "state_std": [round(float(v), 6) for v in policy.state_std]}
    (args.out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"saved {name}: clean mean {returns.mean():.1f} min {returns.min():.0f} over seeds 0..99; "
        f"state std {policy.state_std.tolist()}")


if __name__ == "__main__":
    main()
