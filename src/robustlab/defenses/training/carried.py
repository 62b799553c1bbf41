"""Recipes whose attack carries a per-example state across epochs.

ATTA (Zheng et al. 2020, "Efficient adversarial training with transferable adversarial
examples"): adversarial examples of one epoch still fool the model of the next, so each
training point keeps its perturbation and the next epoch's attack starts from it. A one-step
attack a visit then accumulates into a many-step attack over the epochs, for the price of one
attack gradient a step (two forward+backward passes with the training pass).

The contract beyond :class:`~robustlab.defenses.training.recipes.Recipe`: a carried recipe has
``init_memory(x, generator) -> Tensor`` (one row per training point) and its ``loss`` takes
two keyword arguments, ``memory`` (that tensor, updated in place) and ``index`` ((B,) int64
rows of the batch in the training set). ``train`` creates the memory, passes both, and keeps
the memory in its checkpoint, so a resumed run continues from the same perturbations.

Shapes: x (B, ...) inputs in [0, 1], y (B,) int64 labels, memory (N, ...) int8.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.defenses.training.recipes import (
    _check_common,
    _check_steps,
    perturb,
    ramp,
    scaled,
)
from robustlab.threats import LpBall

SCALE = 127  # memory unit: eps / 127 per coordinate


@dataclass(frozen=True)
class ATTA:
    """Adversarial training with perturbations carried across epochs (ATTA, Zheng et al. 2020).

    Each visit of a training point starts ``steps`` PGD steps of ``step_size`` at its previous
    visit's adversarial point (at first a uniform point of the ball), trains on the last
    iterate, and stores that perturbation for the next visit. Cost: ``steps + 1``
    forward+backward passes a step, as PGD-AT with ``steps`` steps, but the attack the model
    meets has had ``steps`` steps per epoch so far.

    The perturbation is stored as a fraction of eps per coordinate, rounded to 1/127 (int8: one
    byte per input value), so under the eps ramp it grows with eps.

    Args:
        threat: the LpBall trained against (e.g. LpBall("linf", 0.3)).
        steps: attack steps per visit (ATTA-k; 1 is the one-step recipe).
        step_size: length of each step in the threat's norm; default eps / 3.
        warmup: eps (and the step) ramps from 0 over this fraction of training.
    """

    threat: LpBall
    steps: int = 1
    step_size: float | None = None
    warmup: float = 0.0

    def __post_init__(self) -> None:
        _check_common(self.threat, self.warmup)
        _check_steps(self.steps, self.step_size)

    def init_memory(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """(N, ...) int8 start perturbations of the training set ``x`` (N, ...): uniform in
        [-eps, eps] per coordinate, in units of eps / 127."""
        u = torch.rand(x.shape, generator=generator, device=generator.device)
        return torch.round((2 * u - 1) * SCALE).to(torch.int8).to(x.device)

    def points(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator, progress: float,
               *, memory: Tensor, index: Tensor) -> Tensor:
        """The (B, ...) training points; writes their perturbations to ``memory[index]``."""
        f = ramp(progress, self.warmup)
        if f == 0:
            return x
        t = scaled(self.threat, f)
        start = t.project(x + memory[index].to(x.dtype) * (t.eps / SCALE), x)
        step = f * (self.step_size if self.step_size is not None else self.threat.eps / 3)
        x_adv = perturb(model, t, x, y, generator, steps=self.steps, step_size=step, start=start)
        memory[index] = torch.round((x_adv - x) / t.eps * SCALE).clamp_(-SCALE, SCALE).to(torch.int8)
        return x_adv

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator, progress: float,
             *, memory: Tensor, index: Tensor) -> Tensor:
        return F.cross_entropy(model(self.points(model, x, y, generator, progress, memory=memory, index=index)), y)

    def spec(self) -> str:
        return f"atta:{self.threat.spec()}:steps={self.steps}:step={self.step_size}:warmup={self.warmup}"


def carries_memory(recipe: object) -> bool:
    """Whether ``recipe`` keeps a per-example state (has ``init_memory``)."""
    return callable(getattr(recipe, "init_memory", None))


__all__ = ["ATTA", "carries_memory"]
