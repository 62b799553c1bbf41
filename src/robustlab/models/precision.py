"""Reduced-precision attack models: the same weights run under autocast, exact near the boundary.

An attack spends nearly all its time in the model's forward and backward passes. Run in
bfloat16 (``torch.autocast``) they cost about half as much on a CPU with AVX-512 BF16
(measured: BENCHMARKS.md; GPUs with bfloat16 units should gain as well), while the search
directions they give (the sign of a gradient, which square to keep) are nearly the same.
What must not change is any decision about success, so :class:`Autocast` returns
full-precision values wherever they decide one:

- a row whose top-2 logit margin is within ``tol`` times its largest |logit| (bfloat16 errs
  by < 1% of that on the shipped models; the default tolerance is 5%) is recomputed in full
  precision (forward only) and its values replaced, while its gradient still flows through
  the reduced-precision pass (a straight-through correction);
- ``evaluate(..., precision="bf16")`` re-classifies every returned point with the original
  model, as it does for every attack, so a reduced-precision run never reports a point as
  broken that the full-precision model classifies correctly.

The refinement passes are counted in ``refine_calls`` (per sample); ``evaluate`` adds them
to the attacks' forward passes. ``approximate_decisions`` switches the refinement off for
attacks that confirm their own points (FAB).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Autocast(nn.Module):
    """``model`` run under ``torch.autocast(dtype)``; logits come back in the input's dtype.

    Args:
        model: maps (N, ...) inputs to (N, K) logits; its weights are shared, not copied.
        dtype: torch.bfloat16 (default) or torch.float16 (GPU).
        tol: rows with top-2 logit margin <= ``tol * max|logit|`` get full-precision values
            (0 turns the refinement off).
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16, tol: float = 0.05) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: reduced precision needs an nn.Module, got {type(model).__name__}")
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"dtype: expected torch.bfloat16 or torch.float16, got {dtype}")
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not 0 <= tol < 1:
            raise ValueError(f"tol: expected a number in [0, 1), got {tol!r}")
        self.model = model
        self.dtype = dtype
        self.tol = float(tol)
        self.refine_calls = 0
        self.refine = True  # see approximate_decisions
        self.train(model.training)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            out = self.model(x)
        out = out.to(x.dtype)
        if not self.refine or self.tol == 0 or out.dim() != 2 or out.shape[1] < 2:
            return out
        with torch.no_grad():
            top = out.detach().topk(2, dim=1).values
            scale = out.detach().abs().amax(dim=1)
            near = (top[:, 0] - top[:, 1]) <= self.tol * scale
            rows = near.nonzero().squeeze(1)
            if rows.numel() == 0:
                return out
            exact = self.model(x.detach()[rows]).to(x.dtype)
        self.refine_calls += int(rows.numel())
        vals = out.detach().clone()
        vals[rows] = exact
        # out - out.detach() is exactly zero with out's gradient, so the values are exactly
        # ``vals`` (bit for bit) and the gradient is the reduced-precision one.
        return (out - out.detach()) + vals


@contextmanager
def approximate_decisions(model: object) -> Iterator[bool]:
    """Inside, an :class:`Autocast` model skips its full-precision refinement; yields whether
    ``model`` is one (for any other model this is a no-op that yields False).

    For attacks whose iterates sit on the decision boundary by design (FAB walks along it, so
    nearly every pass would be refined and the reduced precision would save nothing). Such an
    attack must confirm the points it reports, outside the block, where refinement is back on.
    """
    if not isinstance(model, Autocast):
        yield False
        return
    saved = model.refine
    model.refine = False
    try:
        yield True
    finally:
        model.refine = saved


def check_precision(precision: str, model: object) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None for "fp32"); a ValueError naming ``precision``
    for an unknown name, or for reduced precision on a model that is not an nn.Module."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {sorted(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is not None and not isinstance(model, nn.Module):
        raise ValueError(f"precision: {precision} needs a white-box nn.Module model, not {type(model).__name__}")
    return dtype


def with_precision(model: object, precision: str) -> object:
    """``model`` itself for "fp32", else an :class:`Autocast` wrapper ("bf16", "fp16")."""
    dtype = check_precision(precision, model)
    return model if dtype is None else Autocast(model, dtype=dtype)  # type: ignore[arg-type]
