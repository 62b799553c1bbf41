"""Greedy clean rollouts of a policy on a batched environment: the returns and the states the
policy visits (the distribution the state-scaled threat is measured on)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.envs import make_batched


@torch.no_grad()
def greedy_rollout(policy: nn.Module, env_id: str, seeds: Sequence[int], fast: bool = True) -> tuple[np.ndarray, Tensor]:
    """Run one greedy episode per seed, all in one batch.

    Returns:
        returns (N,) float64, the undiscounted return of each episode;
        visited (M, D) float32, every observation the policy acted on (all episodes, all steps).
    """
    env = make_batched(env_id, fast=fast)
    obs = env.reset(seeds)
    total = np.zeros(len(seeds))
    visited = []
    while not env.done.all():
        live = torch.from_numpy(~env.done)
        visited.append(obs[live])
        action = policy(obs).argmax(dim=1)
        obs, reward, _, _ = env.step(action)
        total += reward.numpy()
    return total, torch.cat(visited)


def state_std(policy: nn.Module, env_id: str, seeds: Sequence[int]) -> Tensor:
    """(D,) standard deviation of each observation dimension over the policy's own clean episodes."""
    _, visited = greedy_rollout(policy, env_id, seeds)
    return visited.std(dim=0)
