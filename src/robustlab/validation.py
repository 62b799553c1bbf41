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
    if x.dtype in (torch.float16, torch.bfloat16):
        raise TypeError(f"{name_x}: {x.dtype} inputs cannot hold a perturbation budget exactly (0.3 rounds to "
                        "0.30029 in float16); pass float32 (x.float()) and, for speed, precision='bf16'")
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


def check_dtype_matches(model: object, x: Tensor, name: str = "x") -> None:
    """A TypeError naming ``x`` when its float dtype differs from the model's parameters'
    (float64 inputs to a float32 model fail deep inside torch otherwise)."""
    params = getattr(model, "parameters", None)
    if not callable(params):
        return
    try:
        p = next(iter(params()))
    except (StopIteration, TypeError):
        return
    if p.is_floating_point() and x.dtype != p.dtype:
        raise TypeError(f"{name}: dtype {x.dtype} does not match the model's {p.dtype} parameters; "
                        f"pass x.to({p.dtype})")


def check_target(y: Tensor, target: Tensor, name: str = "target") -> None:
    """A targeted attack whose target is the true label has nothing to do: say so."""
    same = target.to(y.device) == y
    if bool(same.any()):
        raise ValueError(f"{name}: equals the true label y at {int(same.sum())} point(s) (first at index "
                         f"{int(same.nonzero()[0])}); a targeted attack needs target != y")


def check_attack_args(model: object, x: Tensor, y: Tensor, target: Tensor | None) -> None:
    """An attack call's arguments: a callable model, inputs and labels, x's dtype against the
    model's, and a target (if any) of the right shape that differs from y."""
    check_model(model)
    check_inputs(x, y)
    check_dtype_matches(model, x)
    if target is not None:
        check_inputs(x, target, name_y="target")
        check_target(y, target)


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
    if out.is_floating_point() and not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name}: returned NaN or Inf scores (a classifier's logits must be finite)")
    return int(out.shape[1])


def check_model(model: object, name: str = "model") -> None:
    if not callable(model):
        raise TypeError(f"{name}: expected an nn.Module or a callable, got {type(model).__name__}")


def check_seed(value: object, name: str = "seed") -> int:
    """An int seed in [0, 2**63): torch generators take nothing else."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if not 0 <= value < 2**63:
        raise ValueError(f"{name}: expected an int in [0, 2**63), got {value}")
    return value


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


def _first_layer_input(model: object) -> tuple[int | str, ...] | None:
    """What the first convolution of an nn.Module takes per sample, e.g. (1, "H", "W") for a
    Conv2d with one input channel; None when the model does not start with one we can read."""
    if not isinstance(model, nn.Module):
        return None
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return (m.in_channels,) + ("L",) if isinstance(m, nn.Conv1d) else \
                (m.in_channels, "H", "W") if isinstance(m, nn.Conv2d) else (m.in_channels, "D", "H", "W")
        if isinstance(m, (nn.Linear, nn.Embedding)):
            return None
    return None


def probe_model(model, x1: Tensor, name: str = "model") -> int:
    """Run the model on one input (no gradient); return its number of classes, or raise a
    ValueError naming the model when it fails or returns the wrong shape."""
    try:
        with torch.no_grad():
            out = model(x1)
    except (RuntimeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if x1.dim() <= 3:  # an unbatched image or a batch missing its channel axis
            raise ValueError(f"x: the model's forward pass failed on a batch of shape {tuple(x1.shape)} ({first}); "
                             "is x a batch (N, C, H, W) of what the model takes?") from e
        expected = _first_layer_input(model)
        if expected is not None and (x1.dim() != len(expected) + 1 or x1.shape[1] != expected[0]):
            raise ValueError(f"x: a batch of shape {tuple(x1.shape)} does not fit the model, whose first layer takes "
                             f"(N, {', '.join(map(str, expected))}) ({first})") from e
        raise ValueError(f"{name}: forward pass failed on an input of shape {tuple(x1.shape)}: {first}") from e
    if isinstance(out, Tensor) and out.dim() >= 1 and out.shape[0] != x1.shape[0]:
        raise ValueError(f"x: a batch of shape {tuple(x1.shape)} gave model output of shape {tuple(out.shape)}, "
                         f"expected ({x1.shape[0]}, n_classes): is x batched the way the model expects?")
    return check_logits(out, x1.shape[0], name)
