"""Offline datasets as tensors: float32 images in [0, 1], NCHW, int64 labels. Nothing downloads.

    x, y = robustlab.data.load("mnist", split="test", n=1000)
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from robustlab.data import digits, mnist

_SOURCES: dict[str, ModuleType | str] = {"mnist": mnist, "digits": digits}
# Sources of other modalities register by module path (imported on first use), one line each.
# Such a module defines N_CLASSES, SIZES ({split: size}), SHAPE (or None for text) and
# ``load(split, n, start) -> (x, y)`` with x a tensor or a list of strings.
_PLUGINS: dict[str, str] = {}


def register_dataset(name: str, module: str) -> None:
    """Make ``load(name)`` read from ``module`` (imported lazily), e.g. "robustlab.data.keywords"."""
    _SOURCES[name] = module
    _PLUGINS[name] = module


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    n_classes: int
    shape: tuple[int, int, int]
    sizes: dict[str, int]


def names() -> list[str]:
    """The datasets robustlab ships."""
    return sorted(_SOURCES)


def info(name: str) -> DatasetInfo:
    """Number of classes, image shape (C, H, W) and split sizes of a shipped dataset."""
    src = _source(name)
    return DatasetInfo(name, src.N_CLASSES, src.SHAPE, dict(src.SIZES))


def _source(name: str) -> ModuleType:
    if name not in _SOURCES:
        raise ValueError(f"name: unknown dataset {name!r}; expected one of {names()}")
    src = _SOURCES[name]
    if isinstance(src, str):
        src = _SOURCES[name] = importlib.import_module(src)
    return src


def load(name: str, split: str = "test", n: int | None = None, start: int = 0) -> tuple[Tensor, Tensor]:
    """Load points ``start .. start+n`` of a split of a shipped dataset.

    Args:
        name: "mnist" (60k train / 10k test, 28x28) or "digits" (scikit-learn, 1297 / 500, 8x8).
        split: "train" or "test".
        n: number of points (None: all from ``start``).
        start: index of the first point, in the split's fixed order.

    Returns:
        x: float32 (n, 1, H, W) in [0, 1]; y: int64 (n,).
    """
    src = _source(name)
    if hasattr(src, "load"):  # a registered source of another modality reads its own files
        return src.load(split=split, n=n, start=start)
    if split not in src.SIZES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    size = src.SIZES[split]
    if not isinstance(start, int) or start < 0 or start >= size:
        raise ValueError(f"start: expected an int in [0, {size}), got {start!r}")
    if n is not None and (not isinstance(n, int) or n <= 0):
        raise ValueError(f"n: expected a positive int or None, got {n!r}")
    stop = size if n is None else start + n
    if stop > size:
        raise ValueError(f"n: {name} {split} has {size} points; start={start} + n={n} exceeds it")
    xs, ys = src.arrays(split)
    xs, ys = xs[start:stop], ys[start:stop]
    if xs.dtype == np.uint8:
        x = torch.from_numpy(xs.astype(np.float32) / 255.0)
    else:
        x = torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32))
    x = x.reshape(len(xs), *src.SHAPE)
    y = torch.from_numpy(ys.astype(np.int64))
    return x, y


__all__ = ["load", "names", "info", "DatasetInfo", "register_dataset"]
register_dataset("fashion-mnist", "robustlab.data.fashion_mnist")
