"""Input checks shared by every public entry point. Each error names the argument at fault.

This module imports nothing of robustlab's own.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def check_inputs(x: object, y: object | None = None, *, name_x: str = "x", name_y: str = "y") -> None:
    """Check a batch of inputs (N, ...) in [0, 1] and, if given, labels (N,) of integer type."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name_x}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name_x}: expected a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{name_x}: expected a batch of shape (N, ...), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name_x}: empty batch (N = 0)")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name_x}: contains NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name_x}: values must lie in [0, 1] (normalisation belongs inside the model), "
            f"got range [{lo:.4g}, {hi:.4g}]"
        )
    if y is None:
        return
    if not isinstance(y, Tensor):
        raise TypeError(f"{name_y}: expected a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"{name_y}: expected an integer tensor of class indices, got dtype {y.dtype}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name_y}: expected shape ({x.shape[0]},) to match {name_x}, got {tuple(y.shape)}"
        )
    if bool((y < 0).any()):
        raise ValueError(f"{name_y}: class indices must be >= 0, got min {int(y.min())}")


def check_labels_in_range(y: Tensor, n_classes: int, name: str = "y") -> None:
    if bool((y >= n_classes).any()):
        raise ValueError(
            f"{name}: label {int(y.max())} out of range for a model with {n_classes} classes"
        )


def check_logits(out: object, n: int, name: str = "model") -> int:
    """Check a model's output for a batch of ``n``; return the number of classes."""
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}: expected the model to return a Tensor of logits, got {type(out).__name__}")
    if out.dim() != 2 or out.shape[0] != n:
        raise ValueError(
            f"{name}: expected output of shape ({n}, n_classes) for a batch of {n}, got {tuple(out.shape)}"
        )
    if out.shape[1] < 2:
        raise ValueError(f"{name}: expected at least 2 classes in the output, got {out.shape[1]}")
    return int(out.shape[1])


def check_model(model: object, name: str = "model") -> None:
    if not callable(model):
        raise TypeError(f"{name}: expected an nn.Module or a callable, got {type(model).__name__}")


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def check_nonneg_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0) or value == float("inf"):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def is_module(model: object) -> bool:
    return isinstance(model, nn.Module)


def probe_model(model, x1: Tensor, name: str = "model") -> int:
    """Run the model on one input (no gradient); return its number of classes, or raise a
    ValueError naming the model when it fails or returns the wrong shape."""
    try:
        with torch.no_grad():
            out = model(x1)
    except (RuntimeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{name}: forward pass failed on an input of shape {tuple(x1.shape)}: {first}") from e
    return check_logits(out, x1.shape[0], name)
