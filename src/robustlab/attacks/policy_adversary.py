"""A learned adversary for one policy: which action to push it towards, step by step.

Myopic attacks decide each step on its own: flip the greedy action (Huang et al. 2017), or push
towards one fixed action on every step. On CartPole a confident policy corrects a flipped push on
the next step, and a steady push only drifts the cart; an adversary that plans - push now, hold
back then, push the other way when the pole is about to recover - does far more with the same
ball. Zhang et al. (2021, "Robust reinforcement learning on state observations with learned
optimal adversary") learn such an adversary by RL against the fixed policy. Here the adversary's
action is the victim action it wants (a discrete target), which PGD then tries to reach:

    adversary = train_adversary(policy, StateBall(0.4).bind(policy.state_std), iterations=20_000)
    attack = Steered(adversary, label="learned")    # PGD towards argmax adversary(obs), every step
    rollout(policy, "CartPole-v1", seeds, ball, attack)

The adversary is a ``PolicyNet`` (obs (N, D) raw units -> (N, A) scores over the victim's
actions, the greedy one is the target), trained by double DQN on the adversary's MDP: it picks a
target b; the victim takes b when some corner of the ball (2^D corners, each dimension at
+-eps * std) makes b its greedy action, else its own greedy action; the adversary is paid -1 per
step the victim survives. Corners stand in for PGD while training (one batched forward per step);
at attack time ``Steered`` runs real PGD, which reaches at least as often.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.envs import make_batched
from robustlab.models.policy import PolicyNet
from robustlab.threats.obs import StateBall


def corners(ball: StateBall, obs_dim: int) -> Tensor:
    """(2^D, D) the corners of the ball around 0 in raw units (each dimension at +-eps * std)."""
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=obs_dim)))
    return signs * ball.per_dim(torch.zeros(1, obs_dim))


@torch.no_grad()
def corner_realise(policy: nn.Module, obs: Tensor, target: Tensor, offsets: Tensor) -> Tensor:
    """(N,) the action the policy takes when the adversary wants ``target`` (N,): the target if
    the policy picks it at the clean observation or at some corner ``obs + offsets[k]``, else the
    policy's greedy action. obs (N, D), offsets (K, D) raw units."""
    n, d = obs.shape
    x = torch.cat([obs[:, None, :], obs[:, None, :] + offsets[None]], dim=1).reshape(-1, d)
    picks = policy(x).argmax(dim=1).reshape(n, -1)
    reach = (picks == target[:, None]).any(dim=1)
    return torch.where(reach, target, picks[:, 0])


def train_adversary(policy: nn.Module, ball: StateBall, env_id: str = "CartPole-v1", iterations: int = 20_000,
                    seed: int = 0, n_env: int = 16, hidden: int = 64, lr: float = 5e-4, gamma: float = 0.99,
                    batch: int = 256, obs_scale: Tensor | None = None,
                    log: Callable[[str], None] | None = None) -> PolicyNet:
    """Train an adversary against the fixed ``policy`` (double DQN on the adversary's MDP).

    Args:
        policy: the victim, obs (N, D) float32 raw units -> action scores (N, A); not modified.
        ball: a bound StateBall (the budget the adversary's targets must be reachable in).
        env_id: the environment (CartPole-v1 runs on the batched dynamics).
        iterations: environment steps of the ``n_env`` parallel episodes.
        seed: seeds the network, the exploration and the training episodes (seeds from
            5_000_000 + 100_000 * seed, apart from the measuring ones).
        obs_scale: (D,) divisor of the adversary's input (default: the victim's ``obs_scale``
            buffer if it has one, else ones).
        log: called with a progress line every 2000 iterations.
    Exploration: each episode slot is driven by the adversary's greedy choice (5% random), by a
    steady push towards one action, or by random targets; the share of the latter decays from 1
    to 0.1 over the first half of training.
    Returns the adversary, a ``PolicyNet`` in eval mode (kind "dqn": its scores are Q-values).
    """
    if not isinstance(ball, StateBall) or ball.scale is None:
        raise ValueError("ball: expected a StateBall bound to a scale (StateBall(eps).bind(policy.state_std))")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations: expected an integer >= 1, got {iterations!r}")
    env = make_batched(env_id)
    d = len(ball.scale)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    scale = obs_scale if obs_scale is not None else getattr(policy, "obs_scale", torch.ones(d))
    was_training = policy.training
    policy.eval()
    with torch.no_grad():
        n_act = int(policy(torch.zeros(1, d)).shape[1])
    q = PolicyNet(d, n_act, hidden, scale, kind="dqn")
    target_net = PolicyNet(d, n_act, hidden, scale, kind="dqn")
    target_net.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=lr)
    offsets = corners(ball, d)
    cap = 200_000
    bo, bo2 = torch.zeros(cap, d), torch.zeros(cap, d)
    ba, br, bd = torch.zeros(cap, dtype=torch.long), torch.zeros(cap), torch.zeros(cap)
    size = ptr = 0
    nxt = 5_000_000 + 100_000 * seed
    obs = env.reset(range(nxt, nxt + n_env))
    nxt += n_env
    # exploration mode per slot: 0 adversary-greedy, 1 random targets, 2 + a: steady push towards a
    mode = rng.integers(1, 2 + n_act, n_env)
    lengths: list[int] = []
    t0 = time.process_time()
    try:
        for it in range(1, iterations + 1):
            explore = max(0.1, 1.0 - it / (0.5 * iterations))
            with torch.no_grad():
                want = q(obs).argmax(dim=1)
            rand = torch.from_numpy(rng.integers(0, n_act, n_env))
            m = torch.from_numpy(mode)
            want = torch.where((m == 0) & torch.from_numpy(rng.random(n_env) < 0.05), rand, want)
            want = torch.where(m == 1, rand, torch.where(m >= 2, m - 2, want))
            with torch.no_grad():
                act = corner_realise(policy, obs, want, offsets)
            obs2, reward, term, _ = env.step(act)
            idx = torch.arange(ptr, ptr + n_env) % cap
            bo[idx], ba[idx], br[idx], bo2[idx], bd[idx] = obs, want, -reward, obs2, term.float()
            ptr, size = (ptr + n_env) % cap, min(size + n_env, cap)
            done = np.flatnonzero(env.done)
            if len(done):
                lengths += env.steps[done][mode[done] == 0].tolist()
                mode[done] = np.where(rng.random(len(done)) < explore, rng.integers(1, 2 + n_act, len(done)), 0)
                obs2 = env.restart(done, range(nxt, nxt + len(done)))
                nxt += len(done)
            obs = obs2
            if size >= 2000:
                b = torch.randint(0, size, (batch,), generator=gen)
                with torch.no_grad():
                    a2 = q(bo2[b]).argmax(dim=1, keepdim=True)
                    y = br[b] + gamma * (1 - bd[b]) * target_net(bo2[b]).gather(1, a2).squeeze(1)
                loss = F.smooth_l1_loss(q(bo[b]).gather(1, ba[b][:, None]).squeeze(1), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for pt, pq in zip(target_net.parameters(), q.parameters()):
                        pt.mul_(0.995).add_(0.005 * pq)
            if log is not None and it % 2000 == 0:
                recent = float(np.mean(lengths[-50:])) if lengths else float("nan")
                log(f"adversary it {it} explore {explore:.2f} greedy episode length {recent:.1f} "
                    f"cpu {time.process_time() - t0:.0f}s")
    finally:
        policy.train(was_training)
    return q.eval()
