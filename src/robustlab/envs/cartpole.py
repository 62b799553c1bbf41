"""CartPole-v1 dynamics for a whole batch of episodes at once, step for step equal to gymnasium's.

Gymnasium steps one cart with Python floats and NumPy scalars; here every episode of a batch
advances in one vectorised NumPy float64 update that performs the same operations in the same
order (NumPy's cos/sin give the same bits on a scalar and on an array, torch's do not always),
so states, observations, rewards and termination flags match gymnasium's bit for bit. The
interface speaks torch: observations come back as float32 tensors (N, 4) in raw units.

Initial states are drawn exactly as ``gymnasium.make("CartPole-v1").reset(seed=s)`` draws them
(``np.random.default_rng(s).uniform(-0.05, 0.05, 4)``), so episode ``s`` here is episode ``s``
there.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

# Gymnasium's constants (gymnasium/envs/classic_control/cartpole.py, v1).
GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
MAX_STEPS = 500


class BatchedCartPole:
    """N CartPole-v1 episodes advanced together.

    ``reset(seeds)`` starts one episode per seed; ``step(actions)`` advances the episodes still
    running. An episode that terminated (pole past 12 degrees or cart past 2.4) or was truncated
    (500 steps) stays frozen; its later rewards are 0, and ``done`` says which ones are over.

    Attributes:
        state: (N, 4) float64 NumPy array, gymnasium's ``env.unwrapped.state`` per episode.
        steps: (N,) int64, steps taken per episode.
        done: (N,) bool, episode over (terminated or truncated).
    """

    env_id = "CartPole-v1"
    obs_dim = 4
    n_actions = 2
    max_steps = MAX_STEPS

    def __init__(self) -> None:
        self.state = np.zeros((0, 4))
        self.steps = np.zeros(0, dtype=np.int64)
        self.done = np.zeros(0, dtype=bool)

    def reset(self, seeds: Sequence[int]) -> Tensor:
        """Start one episode per seed; returns observations (N, 4) float32."""
        seeds = list(seeds)
        if not seeds:
            raise ValueError("seeds: expected at least one seed")
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
            raise ValueError(f"seeds: expected non-negative integers, got {seeds[:5]}...")
        self.state = np.stack([np.random.default_rng(int(s)).uniform(-0.05, 0.05, size=(4,)) for s in seeds])
        self.steps = np.zeros(len(seeds), dtype=np.int64)
        self.done = np.zeros(len(seeds), dtype=bool)
        return self.observation()

    def set_state(self, state: np.ndarray) -> Tensor:
        """Start episodes from given float64 states (N, 4) (e.g. states met in training)."""
        state = np.asarray(state, dtype=np.float64)
        if state.ndim != 2 or state.shape[1] != 4:
            raise ValueError(f"state: expected shape (N, 4), got {state.shape}")
        self.state = state.copy()
        self.steps = np.zeros(len(state), dtype=np.int64)
        self.done = np.zeros(len(state), dtype=bool)
        return self.observation()

    def restart(self, idx: np.ndarray, seeds: Sequence[int]) -> Tensor:
        """Start new episodes (one per seed) in the slots ``idx`` (training loops auto-reset
        this way); returns the observations of all slots (N, 4) float32."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if len(idx) != len(list(seeds)):
            raise ValueError(f"seeds: expected one seed per slot ({len(idx)}), got {len(list(seeds))}")
        for i, s in zip(idx, seeds):
            self.state[i] = np.random.default_rng(int(s)).uniform(-0.05, 0.05, size=(4,))
        self.steps[idx] = 0
        self.done[idx] = False
        return self.observation()

    def observation(self) -> Tensor:
        """(N, 4) float32: what gymnasium returns, ``np.array(state, dtype=np.float32)``."""
        return torch.from_numpy(self.state.astype(np.float32))

    def step(self, actions: Tensor | np.ndarray) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Advance every running episode by one step.

        Args:
            actions: (N,) integers in {0, 1} (0 pushes left, 1 right); ignored for finished episodes.
        Returns:
            obs (N, 4) float32, reward (N,) float32 (1 per step taken, the failing one included,
            0 once over), terminated (N,) bool, truncated (N,) bool: the flags of this step only.
        """
        a = np.asarray(actions.detach().cpu() if isinstance(actions, Tensor) else actions).reshape(-1)
        if a.shape[0] != self.state.shape[0]:
            raise ValueError(f"actions: expected {self.state.shape[0]} actions, got {a.shape[0]}")
        if a.size and not np.isin(a, (0, 1)).all():
            raise ValueError("actions: expected values in {0, 1}")
        live = ~self.done
        x, x_dot, theta, theta_dot = (self.state[:, i] for i in range(4))
        force = np.where(a == 1, FORCE_MAG, -FORCE_MAG)
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        # Same operations in the same order as gymnasium's step (bit-exact float64).
        temp = (force + POLEMASS_LENGTH * np.square(theta_dot) * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * (4.0 / 3.0 - MASSPOLE * np.square(costheta) / TOTAL_MASS))
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        new = np.stack([x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot,
                        theta_dot + TAU * thetaacc], axis=1)
        self.state = np.where(live[:, None], new, self.state)
        self.steps = self.steps + live
        xs, th = self.state[:, 0], self.state[:, 2]
        terminated = live & ((xs < -X_THRESHOLD) | (xs > X_THRESHOLD) | (th < -THETA_THRESHOLD) | (th > THETA_THRESHOLD))
        truncated = live & ~terminated & (self.steps >= MAX_STEPS)
        self.done = self.done | terminated | truncated
        reward = torch.from_numpy(live.astype(np.float32))
        return (self.observation(), reward, torch.from_numpy(terminated), torch.from_numpy(truncated))
