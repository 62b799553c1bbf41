"""Fashion-MNIST (Xiao et al. 2017), read from the system copy Debian's ``dataset-fashion-mnist``
package installs (``apt-get install dataset-fashion-mnist``: the four original idx .gz files in
/usr/share/datasets/fashion-mnist/). Not shipped inside robustlab (30 MB); nothing downloads.

    x, y = robustlab.data.load("fashion-mnist", split="test", n=1000)   # (1000, 1, 28, 28), (1000,)

The directory can be moved with the environment variable ROBUSTLAB_FASHION_MNIST.
"""
from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

N_CLASSES = 10
SHAPE = (1, 28, 28)
SIZES = {"train": 60000, "test": 10000}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def data_dir() -> Path:
    """Where the idx files are read from (ROBUSTLAB_FASHION_MNIST, else Debian's location)."""
    return Path(os.environ.get("ROBUSTLAB_FASHION_MNIST", DEFAULT_DIR))


def _read_idx(path: Path, header: int, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise ValueError(f"{path}: not an idx file of the expected kind (magic {got:#x}, expected {magic:#x})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header)


@lru_cache(maxsize=2)
def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) in 0..255 and uint8 labels (N,) of ``split`` ("train" or "test")."""
    if split not in _FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    d = data_dir()
    img_name, lab_name = _FILES[split]
    if not (d / img_name).is_file() or not (d / lab_name).is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST {split} files not found in {d}; install them with "
            f"`apt-get install dataset-fashion-mnist` or point ROBUSTLAB_FASHION_MNIST at a folder holding "
            f"{img_name} and {lab_name}")
    x = _read_idx(d / img_name, 16, 0x00000803).reshape(-1, 28, 28)
    y = _read_idx(d / lab_name, 8, 0x00000801)
    if x.shape[0] != SIZES[split] or y.shape[0] != SIZES[split]:
        raise ValueError(f"{d}: {split} holds {x.shape[0]} images and {y.shape[0]} labels, expected {SIZES[split]}")
    return x, y


def load(split: str = "test", n: int | None = None, start: int = 0) -> tuple[Tensor, Tensor]:
    """Points ``start .. start+n`` of ``split``: x float32 (n, 1, 28, 28) in [0, 1], y int64 (n,)."""
    if split not in SIZES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    size = SIZES[split]
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < size:
        raise ValueError(f"start: expected an int in [0, {size}), got {start!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0 or start + n > size):
        raise ValueError(f"n: expected a positive int with start + n <= {size}, or None; got {n!r}")
    xs, ys = arrays(split)
    stop = size if n is None else start + n
    x = torch.from_numpy(xs[start:stop].astype(np.float32) / 255.0).reshape(-1, *SHAPE)
    y = torch.from_numpy(ys[start:stop].astype(np.int64))
    return x, y
