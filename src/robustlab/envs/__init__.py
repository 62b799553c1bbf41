"""Reinforcement-learning environments behind one batched interface (torch observations in,
integer actions out): CartPole-v1 re-implemented for whole batches (bit-exact with gymnasium),
any other discrete-action gymnasium environment (Acrobot-v1, MountainCar-v0) through a loop."""
from __future__ import annotations

from robustlab.envs.cartpole import BatchedCartPole
from robustlab.envs.gym import GymBatch

BATCHED = {"CartPole-v1": BatchedCartPole}


def make_batched(env_id: str, fast: bool = True) -> BatchedCartPole | GymBatch:
    """The batched environment for ``env_id``: the vectorised re-implementation where one exists
    (and ``fast``), else gymnasium's environment stepped in a loop."""
    if not isinstance(env_id, str):
        raise TypeError(f"env: expected a gymnasium id such as 'CartPole-v1', got {type(env_id).__name__}")
    if fast and env_id in BATCHED:
        return BATCHED[env_id]()
    return GymBatch(env_id)


__all__ = ["BatchedCartPole", "GymBatch", "make_batched", "BATCHED"]
