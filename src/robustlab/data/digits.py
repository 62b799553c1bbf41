"""scikit-learn's 8x8 digits (1797 images, shipped with scikit-learn): the tiny fallback set.

Split: a fixed seeded permutation, the first 1297 for train and the last 500 for test.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

N_CLASSES = 10
SHAPE = (1, 8, 8)
SIZES = {"train": 1297, "test": 500}


@lru_cache(maxsize=1)
def _all() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.RandomState(0).permutation(len(d.target))
    return d.images[perm].astype(np.float32) / 16.0, d.target[perm].astype(np.int64)


def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 images (N, 8, 8) in [0, 1] and int64 labels (N,)."""
    x, y = _all()
    cut = SIZES["train"]
    return (x[:cut], y[:cut]) if split == "train" else (x[cut:], y[cut:])
