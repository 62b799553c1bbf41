"""Robust policy training: the SA-style regulariser (Zhang et al. 2020, SA-DQN/SA-PPO), the
hinge of the greedy action's margin at the worst point of a state-scaled observation ball found
by a few PGD steps, and the attacked rollouts (:class:`RolloutAdversary`). Used by ``scripts/train_policies.py`` (CartPole) and
``scripts/train_acrobot.py`` (Acrobot-v1); the attacks of the evaluation are ``attacks.policy``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.threats.obs import StateBall


def pgd_margin_obs(policy: nn.Module, obs: Tensor, scale: Tensor, eps: float, steps: int = 5) -> tuple[Tensor, Tensor]:
    """The point of the Linf ball of radius ``eps * scale`` (per dimension) around ``obs`` that
    most lowers the greedy action's margin (PGD from a uniform random start, steps of eps/2), and
    that action.

    Args:
        policy: observations (N, D) -> action scores (N, A).
        obs: (N, D) observations in the environment's units; scale: (D,) per-dimension unit.
    Returns: (N, D) perturbed observations and (N,) greedy actions at ``obs``.
    """
    with torch.no_grad():
        a_star = policy(obs).argmax(dim=1)
    r = eps * scale
    delta = (torch.rand_like(obs) * 2 - 1) * r
    for _ in range(steps):
        delta.requires_grad_(True)
        s = policy(obs + delta)
        own = s.gather(1, a_star[:, None]).squeeze(1)
        other = s.masked_fill(F.one_hot(a_star, s.shape[1]).bool(), -1e9).amax(dim=1)
        grad, = torch.autograd.grad((other - own).sum(), delta)
        delta = (delta.detach() + 0.5 * r * grad.sign()).clamp(-r, r)
    return (obs + delta).detach(), a_star


def sa_hinge(policy: nn.Module, obs: Tensor, scale: Tensor, eps: float, margin: float) -> Tensor:
    """Scalar: the mean over ``obs`` (N, D) of relu(max_{a != a*} s(x', a) - s(x', a*) + margin)
    at the PGD point x' of :func:`pgd_margin_obs` (s: the policy's action scores)."""
    x_adv, a_star = pgd_margin_obs(policy, obs, scale, eps)
    s = policy(x_adv)
    own = s.gather(1, a_star[:, None]).squeeze(1)
    other = s.masked_fill(F.one_hot(a_star, s.shape[1]).bool(), -1e9).amax(dim=1)
    return F.relu(other - own + margin).mean()


class RolloutAdversary:
    """The attacks of robust training rollouts: each episode slot draws a mode when it starts
    (an entry of ``attacks``; None is clean) and keeps it for the episode; the agent acts on, and
    learns from, the observation it is shown.

    Args:
        attacks: observation attacks of ``attacks.policy`` (e.g. ``ObsPGD``), None for clean.
        n: episode slots; scale: (D,) per-dimension unit of the state-scaled ball.
        seed: the NumPy generator drawing the modes.
    """

    def __init__(self, attacks: Sequence[object | None], n: int, scale: Tensor, seed: int) -> None:
        self.attacks = tuple(attacks)
        self.rng = np.random.default_rng(seed)
        self.scale = scale
        self.mode = self.rng.integers(0, len(self.attacks), n)

    def restart(self, idx: np.ndarray) -> None:
        """New modes for the slots ``idx`` whose episodes restart."""
        self.mode[idx] = self.rng.integers(0, len(self.attacks), len(idx))

    def perceive(self, policy: nn.Module, obs: Tensor, eps: float) -> Tensor:
        """(N, D): what each slot's policy is shown this step (the ball's radius ``eps`` x scale)."""
        seen = obs.clone()
        if eps <= 0:
            return seen
        ball = StateBall(eps).bind(self.scale)
        for m, attack in enumerate(self.attacks):
            sel = torch.from_numpy(self.mode == m)
            if attack is None or not sel.any():
                continue
            with torch.enable_grad():
                seen[sel] = attack(policy, obs[sel], ball, torch.rand(int(sel.sum()), obs.shape[1])).obs_adv  # type: ignore[operator]
        return seen


__all__ = ["pgd_margin_obs", "sa_hinge", "RolloutAdversary"]
