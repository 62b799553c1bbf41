"""Policies for discrete-action environments: an MLP mapping raw float32 observations (N, D) to
action scores (N, A) whose argmax is the greedy action (Q-values for DQN, logits for PPO).

The module carries two buffers beside its weights:
    obs_scale (D,)  divides the observation before the first layer (a fixed input normalisation,
                    so the model takes raw gymnasium units);
    state_std (D,)  the standard deviation of each observation dimension over the policy's own
                    clean episodes (measured by the training script): the per-dimension unit of the
                    state-scaled threat (``threats.obs.StateBall``).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class PolicyNet(nn.Module):
    """obs (N, obs_dim) float32, raw units -> scores (N, n_actions).

    Args:
        obs_dim: observation size D.
        n_actions: number of discrete actions A.
        hidden: width of the two hidden ReLU layers.
        obs_scale: (D,) divisor of the input (default ones).
        kind: "dqn" (scores are Q-values) or "ppo" (scores are logits of a categorical policy).
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64, obs_scale: Tensor | None = None,
                 kind: str = "dqn") -> None:
        super().__init__()
        if obs_dim < 1 or n_actions < 2 or hidden < 1:
            raise ValueError(f"obs_dim/n_actions/hidden: expected >= 1/2/1, got {obs_dim}/{n_actions}/{hidden}")
        if kind not in ("dqn", "ppo"):
            raise ValueError(f"kind: expected 'dqn' or 'ppo', got {kind!r}")
        self.kind = kind
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_actions))
        scale = torch.ones(obs_dim) if obs_scale is None else torch.as_tensor(obs_scale, dtype=torch.float32)
        self.register_buffer("obs_scale", scale.clone())
        self.register_buffer("state_std", torch.ones(obs_dim))

    @property
    def obs_dim(self) -> int:
        return int(self.obs_scale.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.net[-1].out_features)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs / self.obs_scale)

    def spec(self) -> str:
        return f"policy:{self.kind}"


def policy_from_state(state: Mapping[str, Tensor], kind: str) -> PolicyNet:
    """A PolicyNet whose sizes are read from a state dict, weights loaded (strict)."""
    w0, w_last = state["net.0.weight"], state["net.4.weight"]
    model = PolicyNet(int(w0.shape[1]), int(w_last.shape[0]), int(w0.shape[0]), kind=kind)
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def load_policy(entry, state: Mapping[str, Tensor] | None) -> PolicyNet:
    """Zoo loader for the shipped policies ("cartpole-dqn", "cartpole-ppo-robust", ...) and the
    learned adversaries ("cartpole-ppo-adversary": Q-values over the victim's actions, kind "dqn")."""
    if state is None:
        raise FileNotFoundError(f"name: weights for {entry.name!r} are missing from the package; "
                                "train them with scripts/train_policies.py")
    adversary = entry.name.endswith("-adversary")
    return policy_from_state(state, kind="ppo" if "ppo" in entry.name and not adversary else "dqn")
