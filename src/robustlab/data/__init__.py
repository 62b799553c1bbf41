"""Offline datasets as tensors: float32 images in [0, 1], NCHW, int64 labels. Nothing downloads.

    x, y = robustlab.data.load("mnist", split="test", n=1000)
    x, y = robustlab.data.load("fashion-mnist")              # Debian's dataset-fashion-mnist
    x, y = robustlab.data.load("points.npz")                 # your own: .npz (x, y), an image
    x, y = robustlab.data.load("cifar-10-batches-bin/")      # folder, CIFAR-10 binary batches
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from pathlib import Path

from robustlab.data import digits, fashion_mnist, mnist
from robustlab.data.files_io import load_path

_SOURCES: dict[str, ModuleType | str] = {"mnist": mnist, "digits": digits, "fashion-mnist": fashion_mnist}
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


def is_path(name: str) -> bool:
    """True when ``name`` names a file or folder rather than a shipped dataset."""
    return name not in _SOURCES and ("/" in name or "\\" in name or name.endswith(".npz") or Path(name).exists())


def size(name: str, split: str = "test") -> int:
    """Number of points in a split of a dataset (shipped or a path)."""
    if is_path(name):
        return int(_from_path(name, split)[1].shape[0])
    return int(_source(name).SIZES.get(split, 0))


def _from_path(name: str, split: str) -> tuple[Tensor, Tensor]:
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    xs, ys = load_path(Path(name), split)
    return torch.from_numpy(np.ascontiguousarray(xs)), torch.from_numpy(ys)


def _stop(what: str, size: int, start: object, n: object) -> int:
    """The end of the slice ``start .. start + n`` of ``size`` points, or a ValueError naming
    ``start`` or ``n``."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 0 or start >= size:
        raise ValueError(f"start: expected an int in [0, {size}), got {start!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        raise ValueError(f"n: expected a positive int or None, got {n!r}")
    stop = size if n is None else start + n
    if stop > size:
        raise ValueError(f"n: {what} has {size} points; start={start} + n={n} exceeds it")
    return stop


def load(name: str, split: str = "test", n: int | None = None, start: int = 0) -> tuple[Tensor, Tensor]:
    """Load points ``start .. start+n`` of a split of a dataset (see ``_load``). The returned x
    carries ``x.robustlab_data = {"name", "split", "start"}``, which ``evaluate`` records with the
    run when it is given no ``data=`` description (a slice or copy of x does not carry it)."""
    x, y = _load(name, split, n, start)
    if isinstance(x, Tensor):
        x.robustlab_data = {"name": name, "split": split, "start": int(start)}  # type: ignore[attr-defined]
    return x, y


def _load(name: str, split: str = "test", n: int | None = None, start: int = 0) -> tuple[Tensor, Tensor]:
    """Load points ``start .. start+n`` of a split of a dataset.

    Args:
        name: a shipped dataset: "mnist" (60k train / 10k test, 28x28), "digits" (scikit-learn,
            1297 / 500, 8x8), "fashion-mnist" (Debian's package), or a registered modality; or a
            path: an ``.npz`` with ``x`` (uint8 or float in [0, 1]; NCHW, NHWC or NHW) and ``y``,
            a folder of images in class subfolders (``split``/ inside it if present), or the
            CIFAR-10 binary folder (``data_batch_*.bin``, ``test_batch.bin``).
        split: "train" or "test".
        n: number of points (None: all from ``start``).
        start: index of the first point, in the split's fixed order.

    Returns:
        x: float32 (n, 1, H, W) in [0, 1]; y: int64 (n,).
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a dataset name or a path, got {type(name).__name__}")
    if is_path(name):
        x, y = _from_path(name, split)
        stop = _stop(name, int(y.shape[0]), start, n)
        return x[start:stop].contiguous(), y[start:stop].contiguous()
    src = _source(name)
    if hasattr(src, "load"):  # a registered source of another modality reads its own files
        return src.load(split=split, n=n, start=start)
    if split not in src.SIZES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    stop = _stop(f"{name} {split}", src.SIZES[split], start, n)
    xs, ys = src.arrays(split)
    xs, ys = xs[start:stop], ys[start:stop]
    if xs.dtype == np.uint8:
        x = torch.from_numpy(xs.astype(np.float32) / 255.0)
    else:
        x = torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32))
    x = x.reshape(len(xs), *src.SHAPE)
    y = torch.from_numpy(ys.astype(np.int64))
    return x, y


register_dataset("keywords", "robustlab.data.keywords")

__all__ = ["load", "names", "info", "size", "is_path", "DatasetInfo", "register_dataset"]
register_dataset("mr", "robustlab.data.mr")
register_dataset("r8", "robustlab.data.r8")
register_dataset("sms", "robustlab.data.sms")
