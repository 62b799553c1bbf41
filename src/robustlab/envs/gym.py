"""Any gymnasium environment behind the batched interface of ``BatchedCartPole``: one gymnasium
env per episode, stepped in a Python loop (the policy and the attack still see one batch)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


class GymBatch:
    """N episodes of a gymnasium environment with discrete actions and a flat Box observation.

    Same interface as ``BatchedCartPole``: ``reset(seeds)``, ``step(actions)``, ``done``,
    ``steps``; episode ``s`` is ``gymnasium.make(env_id).reset(seed=s)`` followed by the same
    actions. ``render_mode="rgb_array"`` makes ``render(i)`` return episode i's frame (H, W, 3).
    """

    def __init__(self, env_id: str, render_mode: str | None = None) -> None:
        import gymnasium as gym

        if not isinstance(env_id, str):
            raise TypeError(f"env: expected a gymnasium id such as 'CartPole-v1', got {type(env_id).__name__}")
        try:
            probe = gym.make(env_id)
        except Exception as e:  # gymnasium raises its own error types for unknown ids
            raise ValueError(f"env: gymnasium cannot make {env_id!r} ({e})") from None
        space, obs_space = probe.action_space, probe.observation_space
        probe.close()
        if not isinstance(space, gym.spaces.Discrete):
            raise ValueError(f"env: {env_id} has a {type(space).__name__} action space; only Discrete is supported")
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"env: {env_id} must have a flat Box observation space, got {obs_space}")
        self.env_id = env_id
        self.obs_dim = int(obs_space.shape[0])
        self.n_actions = int(space.n)
        spec = gym.spec(env_id)
        self.max_steps = int(spec.max_episode_steps or 10**9)
        self.render_mode = render_mode
        self._gym = gym
        self.envs: list = []
        self.steps = np.zeros(0, dtype=np.int64)
        self.done = np.zeros(0, dtype=bool)
        self._obs = torch.zeros(0, self.obs_dim)

    def reset(self, seeds: Sequence[int]) -> Tensor:
        """Start one episode per seed; returns observations (N, obs_dim) float32."""
        seeds = list(seeds)
        if not seeds:
            raise ValueError("seeds: expected at least one seed")
        self.close()
        self.envs = [self._gym.make(self.env_id, render_mode=self.render_mode) for _ in seeds]
        obs = [env.reset(seed=int(s))[0] for env, s in zip(self.envs, seeds)]
        self._obs = torch.from_numpy(np.stack(obs).astype(np.float32))
        self.steps = np.zeros(len(seeds), dtype=np.int64)
        self.done = np.zeros(len(seeds), dtype=bool)
        return self._obs.clone()

    def restart(self, idx: np.ndarray, seeds: Sequence[int]) -> Tensor:
        """Start new episodes (one per seed) in the slots ``idx`` of a running batch (training
        loops auto-reset this way); returns the observations of all slots (N, obs_dim) float32."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        seeds = list(seeds)
        if len(idx) != len(seeds):
            raise ValueError(f"seeds: expected one seed per slot ({len(idx)}), got {len(seeds)}")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.envs)):
            raise ValueError(f"idx: expected slots in [0, {len(self.envs)}), got {idx.tolist()}")
        for i, s in zip(idx, seeds):
            o, _ = self.envs[i].reset(seed=int(s))
            self._obs[i] = torch.from_numpy(np.asarray(o, dtype=np.float32))
        self.steps[idx] = 0
        self.done[idx] = False
        return self._obs.clone()

    def step(self, actions: Tensor | np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Advance the running episodes; finished ones stay frozen with reward 0.

        Returns obs (N, obs_dim) float32, reward (N,) float32, terminated (N,), truncated (N,) bool.
        """
        a = np.asarray(actions.detach().cpu() if isinstance(actions, Tensor) else actions).reshape(-1)
        if a.shape[0] != len(self.envs):
            raise ValueError(f"actions: expected {len(self.envs)} actions, got {a.shape[0]}")
        n = len(self.envs)
        reward = torch.zeros(n)
        term = torch.zeros(n, dtype=torch.bool)
        trunc = torch.zeros(n, dtype=torch.bool)
        for i, env in enumerate(self.envs):
            if self.done[i]:
                continue
            o, r, te, tr, _ = env.step(int(a[i]))
            self._obs[i] = torch.from_numpy(np.asarray(o, dtype=np.float32))
            reward[i], term[i], trunc[i] = float(r), bool(te), bool(tr) and not bool(te)
            self.steps[i] += 1
            self.done[i] = bool(te) or bool(tr)
        return self._obs.clone(), reward, term, trunc

    def render(self, i: int) -> np.ndarray:
        """Frame (H, W, 3) uint8 of episode ``i`` (needs render_mode="rgb_array")."""
        if self.render_mode != "rgb_array":
            raise ValueError("render_mode: make the batch with render_mode='rgb_array' to render frames")
        return np.asarray(self.envs[i].render())

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []
