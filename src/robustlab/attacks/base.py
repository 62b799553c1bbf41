"""The attack contract and the plumbing every white-box attack shares.

An attack is a callable configured in its constructor (a dataclass: threat, steps, seed, ...)
and holds no state between calls:

    result = attack(model, x, y, target=None)      # -> AttackResult

Helpers here: ``ModelGuard`` puts a model in eval mode with parameter gradients off and puts
everything back afterwards; ``Counter`` routes every model call so forward/backward passes are
counted, never estimated; ``finish`` re-clips the returned points and measures their distance.
"""
from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from robustlab.attacks.losses import attack_loss, is_success, margin_loss  # noqa: F401 (the one success rule)
from robustlab.results import AttackResult
from robustlab.validation import check_attack_args, check_labels_in_range, check_seed, probe_model


@runtime_checkable
class Attack(Protocol):
    """Anything called as ``attack(model, x, y, *, target=None) -> AttackResult``."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        ...


class ModelGuard:
    """Context manager: the model in eval mode, its parameters' ``requires_grad`` off, and on
    exit the training flags, ``requires_grad`` flags, buffers and ``.grad`` fields exactly as
    they were (BatchNorm statistics included). Plain callables pass through untouched."""

    def __init__(self, model: object, warn: bool = True) -> None:
        self.model = model
        self.warn = warn

    def __enter__(self) -> "ModelGuard":
        m = self.model
        if not isinstance(m, nn.Module):
            return self
        if m.training and self.warn:
            warnings.warn(
                "model was in training mode; attacks run it in eval mode and restore the mode afterwards",
                stacklevel=3,
            )
        self._modes = [(mod, mod.training) for mod in m.modules()]
        self._params = [(p, p.requires_grad, p.grad) for p in m.parameters()]
        self._buffers = [(b, b.detach().clone()) for b in m.buffers()]
        m.eval()
        for p, _, _ in self._params:
            p.requires_grad_(False)
        return self

    def __exit__(self, *exc: object) -> None:
        if not isinstance(self.model, nn.Module):
            return
        for mod, mode in self._modes:
            mod.training = mode
        for p, req, grad in self._params:
            p.requires_grad_(req)
            p.grad = grad
        with torch.no_grad():
            for b, saved in self._buffers:
                if b.shape == saved.shape:
                    b.copy_(saved)


class Counter:
    """Routes model calls and counts them per sample (a batch of 100 counts as 100)."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.forward = 0
        self.backward = 0

    def logits(self, x: Tensor) -> Tensor:
        """Forward pass without gradient."""
        with torch.no_grad():
            out = self.model(x)
        self.forward += x.shape[0]
        return out

    def logits_and_grad(self, x: Tensor, loss_fn) -> tuple[Tensor, Tensor]:
        """Forward and backward: logits at ``x`` and the gradient of ``loss_fn(logits).sum()``
        with respect to ``x`` only (parameters receive nothing)."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.model(x)
            if not out.requires_grad:
                raise ValueError("model: its output does not depend on x through autograd (its forward runs under "
                                 "torch.no_grad(), detaches, or leaves torch); gradient attacks cannot run on it: "
                                 "use a score-based attack (square, spsa, nes) or give the model an attack_view()")
            loss = loss_fn(out)
            (grad,) = torch.autograd.grad(loss.sum(), x)
        self.forward += x.shape[0]
        self.backward += x.shape[0]
        return out.detach(), grad


def prepare(model: object, x: Tensor, y: Tensor, target: Tensor | None) -> int:
    """Validate an attack's inputs and the model's output shape; return the number of classes.

    Costs one forward pass on up to two samples (not counted: it is not part of the attack); two,
    because a batch of one can hide a missing channel axis behind broadcasting.
    """
    check_attack_args(model, x, y, target)
    with ModelGuard(model, warn=False):  # the probe must not touch BatchNorm statistics
        n_classes = probe_model(model, x[:2])
    check_labels_in_range(y, n_classes)
    if target is not None:
        check_labels_in_range(target, n_classes, "target")
    return n_classes


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    if seed is not None:
        check_seed(seed)
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def finish(
    threat: object,
    x: Tensor,
    x_adv: Tensor,
    success: Tensor,
    counter: Counter,
    queries: Tensor | None = None,
) -> AttackResult:
    """Package an attack's output. ``x_adv`` must already lie in the ball (attacks project every
    iterate), and ``success`` must come from the model's logits at exactly ``x_adv``."""
    x_adv = x_adv.detach()
    return AttackResult(
        x_adv=x_adv,
        success=success.detach().clone(),
        distance=threat.distance(x_adv, x).detach(),  # type: ignore[attr-defined]
        forward_calls=counter.forward,
        backward_calls=counter.backward,
        queries=queries,
    )
