"""Rotten Tomatoes sentence polarity (Pang & Lee 2005): 0 negative, 1 positive; 3400 train / 600 test.

    texts, y = robustlab.data.load("mr", split="test", n=200)   # list[str], int64 (n,)
"""
from __future__ import annotations

from torch import Tensor

from robustlab.data.textfiles import load_split

N_CLASSES = 2
SIZES = {"train": 3400, "test": 600}
SHAPE = None  # text: a list of strings


def load(split: str = "test", n: int | None = None, start: int = 0) -> tuple[list[str], Tensor]:
    """Texts start .. start+n of split ("train" or "test") and their int64 labels."""
    return load_split("mr", split, n, start)
