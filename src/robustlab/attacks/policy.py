"""Attacks on the observations a policy acts on, one environment step at a time.

    result = attack(policy, obs, ball, u)       # obs (N, D) raw units; ball a bound StateBall
    result.obs_adv (N, D), result.attacked (N,) bool, result.forward_calls, result.backward_calls

``u`` (N, attack.n_random(D)) holds the uniform [0, 1) numbers the attack may use this step
(random starts, noise); the caller draws them from a per-episode stream, so an episode's attack
does not depend on which other episodes share its batch (a resumed run repeats it exactly).

The attacks:
    ObsNoise        uniform noise of the same budget: the baseline every attack must beat.
    ObsPGD          FGSM/PGD that makes the policy drop its greedy action (Huang et al. 2017:
                    the cross-entropy of the greedy action; or the score margin), or, with
                    ``target="min-q"``, that makes a DQN take the action its own critic values
                    least on the clean observation (the critic-guided attack of Pattanaik et al.
                    2018; with two actions it is the same action as the untargeted one).
    Steered         PGD towards the action a learned adversary picks for this observation (Zhang
                    et al. 2021: an adversary trained by RL against the fixed policy, see
                    ``attacks.policy_adversary``), on every step.
    Timed           the strategically-timed attack (Lin et al. 2017): attack only the steps where
                    the policy's preference gap max(p) - min(p) of softmax(scores / T) is at
                    least ``threshold``, with any of the above.

Costs are counted per observation (a batch of 100 is 100 forward passes), as ``attacks.base.Counter``
does, and returned per observation so that each episode's cost is known.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.base import Counter, ModelGuard
from robustlab.threats.obs import StateBall


@dataclass
class ObsAttackResult:
    """One step's attacked observations.

    Attributes:
        obs_adv: (N, D) observations the policy will see, inside the ball.
        attacked: (N,) bool, the observation was perturbed at this step (PGD-based attacks perturb
            only where the perturbation changes the policy's action).
        forward / backward: (N,) int64, model passes spent on each observation (counted).
    """

    obs_adv: Tensor
    attacked: Tensor
    forward: Tensor
    backward: Tensor

    @property
    def forward_calls(self) -> int:
        return int(self.forward.sum())

    @property
    def backward_calls(self) -> int:
        return int(self.backward.sum())


def _zeros(n: int, device: torch.device) -> Tensor:
    return torch.zeros(n, dtype=torch.int64, device=device)


@runtime_checkable
class ObsAttack(Protocol):
    """``attack(policy, obs, ball, u) -> ObsAttackResult``; ``name`` labels it in reports."""

    name: str

    def n_random(self, obs_dim: int) -> int: ...

    def __call__(self, policy: nn.Module, obs: Tensor, ball: StateBall, u: Tensor | None = None) -> ObsAttackResult: ...


def margin(scores: Tensor, action: Tensor) -> Tensor:
    """(N,) score of ``action`` minus the best other score (> 0: the action is chosen)."""
    own = scores.gather(1, action[:, None]).squeeze(1)
    other = scores.masked_fill(F.one_hot(action, scores.shape[1]).bool(), float("-inf")).amax(dim=1)
    return own - other


def preference_gap(scores: Tensor, temperature: float = 1.0) -> Tensor:
    """(N,) max(p) - min(p) of p = softmax(scores / temperature) (Lin et al.'s c(s))."""
    p = torch.softmax(scores / temperature, dim=1)
    return p.amax(dim=1) - p.amin(dim=1)


def _check_call(obs: object, ball: object, u: Tensor | None, need: int) -> None:
    if not isinstance(ball, StateBall):
        raise TypeError(f"ball: expected a StateBall, got {type(ball).__name__}")
    ball.validate(obs, name="obs")
    if need and (u is None or u.shape != (obs.shape[0], need)):  # type: ignore[union-attr]
        got = None if u is None else tuple(u.shape)
        raise ValueError(f"u: expected uniform numbers of shape ({obs.shape[0]}, {need}), got {got}")  # type: ignore[union-attr]


@dataclass(frozen=True)
class ObsNoise:
    """Uniform noise in the state-scaled ball (``corners``: every dimension at +-eps * std)."""

    corners: bool = False

    @property
    def name(self) -> str:
        return "noise-corners" if self.corners else "noise"

    def n_random(self, obs_dim: int) -> int:
        return obs_dim

    def __call__(self, policy: nn.Module, obs: Tensor, ball: StateBall, u: Tensor | None = None) -> ObsAttackResult:
        _check_call(obs, ball, u, obs.shape[1])
        direction = torch.where(u < 0.5, -1.0, 1.0) if self.corners else 2 * u - 1  # type: ignore[operator]
        x = ball.project(obs + direction.to(obs) * ball.per_dim(obs), obs)
        n = obs.shape[0]
        return ObsAttackResult(x, torch.ones(n, dtype=torch.bool, device=obs.device), _zeros(n, obs.device),
                               _zeros(n, obs.device))


@dataclass(frozen=True)
class ObsPGD:
    """PGD (FGSM with ``steps=1, random_start=False, step_size=1``) on one step's observations.

    Args:
        steps: gradient steps.
        step_size: step per iteration in units of eps (each dimension moves step_size * eps * std).
        random_start: start at a uniform point of the ball (uses D numbers of ``u``).
        loss: "ce" (Huang et al.: cross-entropy of softmax(scores) w.r.t. the goal action) or
            "margin" (the score margin, scale-free).
        target: "flip" (any action but the greedy one) or "min-q" (the action with the lowest
            score on the clean observation: for a DQN, the critic's worst action).
    A point that reaches the goal is kept at once (the policy acts on it); otherwise the iterate
    with the best objective. Where that point leaves the policy's action unchanged the clean
    observation is returned and the step is not counted as attacked (``attacked`` False): the
    perturbation would not change what the policy does, so the attacker does not spend it, and
    ``attacked`` counts the steps whose action the attack changed (its passes are still counted).
    """

    steps: int = 10
    step_size: float = 0.25
    random_start: bool = True
    loss: Literal["ce", "margin"] = "margin"
    target: Literal["flip", "min-q"] | int = "flip"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps: expected an integer >= 1, got {self.steps!r}")
        if not self.step_size > 0:
            raise ValueError(f"step_size: expected > 0, got {self.step_size}")
        if self.loss not in ("ce", "margin"):
            raise ValueError(f"loss: expected 'ce' or 'margin', got {self.loss!r}")
        if self.target not in ("flip", "min-q") and (isinstance(self.target, bool) or not isinstance(self.target, int)
                                                     or self.target < 0):
            raise ValueError(f"target: expected 'flip', 'min-q' or an action index >= 0, got {self.target!r}")

    @property
    def name(self) -> str:
        if self.target == "min-q":
            return "min-q"
        if isinstance(self.target, int):
            return f"pgd-action{self.target}"
        return "fgsm" if self.steps == 1 and not self.random_start else "pgd"

    def n_random(self, obs_dim: int) -> int:
        return obs_dim if self.random_start else 0

    def _objective(self, scores: Tensor, goal: Tensor) -> Tensor:
        """(N,) to maximise: for "flip" ``goal`` is the greedy action to leave, else the target."""
        sign = -1.0 if self.target == "flip" else 1.0
        if self.loss == "ce":
            return -sign * F.cross_entropy(scores, goal, reduction="none")
        return sign * margin(scores, goal)

    def _reached(self, scores: Tensor, goal: Tensor) -> Tensor:
        pick = scores.argmax(dim=1)
        return pick != goal if self.target == "flip" else pick == goal

    def __call__(self, policy: nn.Module, obs: Tensor, ball: StateBall, u: Tensor | None = None) -> ObsAttackResult:
        _check_call(obs, ball, u, self.n_random(obs.shape[1]))
        n = obs.shape[0]
        attacked = torch.ones(n, dtype=torch.bool, device=obs.device)
        fwd, bwd = torch.ones(n, dtype=torch.int64, device=obs.device), _zeros(n, obs.device)
        if n == 0 or ball.eps == 0:
            return ObsAttackResult(obs.clone(), attacked & (ball.eps > 0), fwd * 0, bwd)
        with ModelGuard(policy, warn=False):
            c = Counter(policy)
            s0 = c.logits(obs)
            if isinstance(self.target, int):
                if self.target >= s0.shape[1]:
                    raise ValueError(f"target: action {self.target} but the policy has {s0.shape[1]} actions")
                goal = torch.full_like(s0[:, 0], self.target, dtype=torch.int64)
            else:
                goal = s0.argmin(dim=1) if self.target == "min-q" else s0.argmax(dim=1)
            x = ball.project(obs + (2 * u.to(obs) - 1) * ball.per_dim(obs), obs) if self.random_start else obs.clone()
            best, best_obj = x.clone(), torch.full((n,), float("-inf"), device=obs.device)
            pick = s0.argmax(dim=1)  # the action at ``best`` (the clean one until an iterate is kept)
            done = torch.zeros(n, dtype=torch.bool, device=obs.device)
            alpha = self.step_size * ball.eps
            for _ in range(self.steps):
                act = (~done).nonzero().squeeze(1)
                scores, grad = c.logits_and_grad(x[act], lambda s, g=goal[act]: self._objective(s, g))
                fwd[act] += 1
                bwd[act] += 1
                obj = self._objective(scores, goal[act])
                hit = self._reached(scores, goal[act])
                better = (obj > best_obj[act]) | hit
                best[act[better]] = x[act[better]]
                pick[act[better]] = scores[better].argmax(dim=1)
                best_obj[act] = torch.maximum(best_obj[act], obj)
                done[act[hit]] = True
                step = ball.project(x[act] + alpha * ball.steepest_direction(grad), obs[act])
                x[act] = step
                if done.all():
                    break
            act = (~done).nonzero().squeeze(1)
            if len(act):  # the last iterate has not been looked at yet
                scores = c.logits(x[act])
                fwd[act] += 1
                obj = self._objective(scores, goal[act])
                better = (obj > best_obj[act]) | self._reached(scores, goal[act])
                best[act[better]] = x[act[better]]
                pick[act[better]] = scores[better].argmax(dim=1)
        assert int(fwd.sum()) == c.forward and int(bwd.sum()) == c.backward
        changed = pick != s0.argmax(dim=1)
        best = torch.where(changed[:, None], ball.project(best, obs), obs)
        return ObsAttackResult(best, changed, fwd, bwd)


@dataclass(frozen=True)
class Timed:
    """Attack only the steps where the policy cares (Lin et al. 2017, strategically-timed).

    Args:
        attack: the attack used on the chosen steps.
        threshold: attack when max(p) - min(p) >= threshold, p = softmax(scores / temperature).
        temperature: softmax temperature (DQN Q-values: the spread of Q between actions).
    """

    attack: ObsAttack
    threshold: float = 0.5
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold: expected a preference gap in [0, 1], got {self.threshold}")
        if not self.temperature > 0:
            raise ValueError(f"temperature: expected > 0, got {self.temperature}")

    @property
    def name(self) -> str:
        return f"timed{self.threshold:g}-{self.attack.name}"

    def n_random(self, obs_dim: int) -> int:
        return self.attack.n_random(obs_dim)

    def __call__(self, policy: nn.Module, obs: Tensor, ball: StateBall, u: Tensor | None = None) -> ObsAttackResult:
        need = self.n_random(obs.shape[1])
        _check_call(obs, ball, u, need)
        with ModelGuard(policy, warn=False):
            c = Counter(policy)
            chosen = preference_gap(c.logits(obs), self.temperature) >= self.threshold
        x = obs.clone()
        fwd, bwd = torch.ones(obs.shape[0], dtype=torch.int64, device=obs.device), _zeros(obs.shape[0], obs.device)
        if chosen.any():
            inner = self.attack(policy, obs[chosen], ball, u[chosen] if need else None)  # type: ignore[index]
            x[chosen] = inner.obs_adv
            fwd[chosen] += inner.forward
            bwd[chosen] += inner.backward
            chosen[chosen.clone()] = inner.attacked
        return ObsAttackResult(x, chosen, fwd, bwd)


@dataclass(frozen=True)
class Steered:
    """PGD towards a target action chosen per observation by ``chooser`` (a learned adversary).

    Args:
        chooser: obs (N, D) raw units -> (N, A) scores over the victim's actions (the argmax is the
            target; e.g. a ``PolicyNet`` from ``attacks.policy_adversary.train_adversary``) or
            directly (N,) int64 target actions.
        label: the attack's name in reports ("learned").
        steps / step_size: the PGD towards each target (as ``ObsPGD``).
    The chooser's own forward passes are not the victim's and are not counted; the victim's
    are, as in ``ObsPGD``.
    """

    chooser: Callable[[Tensor], Tensor]
    label: str = "steered"
    steps: int = 10
    step_size: float = 0.25

    def __post_init__(self) -> None:
        if not callable(self.chooser):
            raise TypeError(f"chooser: expected a callable obs -> scores or actions, got {type(self.chooser).__name__}")
        ObsPGD(steps=self.steps, step_size=self.step_size)  # validates steps and step_size

    @property
    def name(self) -> str:
        return self.label

    def n_random(self, obs_dim: int) -> int:
        return obs_dim

    def targets(self, obs: Tensor) -> Tensor:
        """(N,) int64 the action the chooser wants at each observation."""
        with torch.no_grad():
            out = self.chooser(obs)
        if out.dim() == 2:
            out = out.argmax(dim=1)
        if out.shape != (obs.shape[0],):
            raise ValueError(f"chooser: expected scores (N, A) or actions (N,) for N={obs.shape[0]}, got {tuple(out.shape)}")
        return out.to(torch.int64)

    def __call__(self, policy: nn.Module, obs: Tensor, ball: StateBall, u: Tensor | None = None) -> ObsAttackResult:
        _check_call(obs, ball, u, obs.shape[1])
        n = obs.shape[0]
        x = obs.clone()
        attacked = torch.zeros(n, dtype=torch.bool, device=obs.device)
        fwd, bwd = _zeros(n, obs.device), _zeros(n, obs.device)
        if n == 0:
            return ObsAttackResult(x, attacked, fwd, bwd)
        goal = self.targets(obs)
        for t in goal.unique().tolist():
            sel = goal == t
            res = ObsPGD(steps=self.steps, step_size=self.step_size, target=int(t))(policy, obs[sel], ball, u[sel])  # type: ignore[index]
            x[sel], fwd[sel], bwd[sel], attacked[sel] = res.obs_adv, res.forward, res.backward, res.attacked
        return ObsAttackResult(x, attacked, fwd, bwd)


def parse_policy_attack(name: str) -> ObsAttack:
    """Attacks by name: "pgd", "pgd-20", "fgsm", "min-q", "noise", "noise-corners",
    "pgd-action0" (PGD towards a fixed action), "timed-pgd" (threshold 0.5), "timed0.2-pgd" (0.2).
    ``Steered`` takes a trained adversary, so it has no name here: pass the object."""
    if not isinstance(name, str):
        raise TypeError(f"attacks: expected attack names, got {type(name).__name__}")
    n = name.strip().lower()
    if n.startswith("timed"):
        head, _, rest = n.partition("-")
        thr = float(head[5:]) if head[5:] else 0.5
        return Timed(parse_policy_attack(rest), threshold=thr)
    if n in ("noise", "noise-corners"):
        return ObsNoise(corners=n == "noise-corners")
    if n == "fgsm":
        return ObsPGD(steps=1, step_size=1.0, random_start=False, loss="ce")
    if n == "min-q":
        return ObsPGD(target="min-q")
    if n.startswith("pgd-action") and n[10:].isdigit():
        return ObsPGD(target=int(n[10:]))
    if n == "pgd" or n.startswith("pgd-"):
        steps = int(n[4:]) if n[4:].isdigit() else 10 if n == "pgd" else -1
        if steps < 1:
            raise ValueError(f"attacks: expected pgd or pgd-STEPS, got {name!r}")
        return ObsPGD(steps=steps)
    raise ValueError(f"attacks: unknown policy attack {name!r}; expected fgsm, pgd[-STEPS], min-q, noise, "
                     "noise-corners, timed[THRESHOLD]-ATTACK")
