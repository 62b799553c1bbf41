"""Reuters-21578 R8 topics (8 classes, alphabetical: acq, crude, earn, grain, interest, money-fx, ship, trade); 5485 train / 2189 test.

    texts, y = robustlab.data.load("r8", split="test", n=200)   # list[str], int64 (n,)
"""
from __future__ import annotations

from torch import Tensor

from robustlab.data.textfiles import load_split

N_CLASSES = 8
SIZES = {"train": 5485, "test": 2189}
SHAPE = None  # text: a list of strings


def load(split: str = "test", n: int | None = None, start: int = 0) -> tuple[list[str], Tensor]:
    """Texts start .. start+n of split ("train" or "test") and their int64 labels."""
    return load_split("r8", split, n, start)
