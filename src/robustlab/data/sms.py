"""SMS Spam Collection v.1 (Almeida & Gomez Hidalgo 2011): 0 ham, 1 spam; 3862 train / 1000 test.

    texts, y = robustlab.data.load("sms", split="test", n=200)   # list[str], int64 (n,)
"""
from __future__ import annotations

from torch import Tensor

from robustlab.data.textfiles import load_split

N_CLASSES = 2
SIZES = {"train": 3862, "test": 1000}
SHAPE = None  # text: a list of strings


def load(split: str = "test", n: int | None = None, start: int = 0) -> tuple[list[str], Tensor]:
    """Texts start .. start+n of split ("train" or "test") and their int64 labels."""
    return load_split("sms", split, n, start)
