"""Shipped text corpora (converted once by scripts/convert_text.py): a list of strings and int64
labels per split, read from ``files/text_<name>.json.gz``. Nothing downloads."""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib.resources import files
from typing import Any

import torch
from torch import Tensor


@lru_cache(maxsize=None)
def corpus(name: str) -> dict[str, Any]:
    """The converted corpus ``name`` ("mr", "r8", "sms"): classes, train/test texts and labels,
    source and licence."""
    with (files("robustlab.data") / "files" / f"text_{name}.json.gz").open("rb") as f:
        return json.loads(gzip.decompress(f.read()).decode("utf-8"))  # type: ignore[no-any-return]


def load_split(name: str, split: str, n: int | None, start: int) -> tuple[list[str], Tensor]:
    """Texts ``start .. start+n`` of a split in its fixed order, and their labels (int64)."""
    data = corpus(name)
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    size = len(data[split]["text"])
    if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start < size:
        raise ValueError(f"start: expected an int in [0, {size}), got {start!r}")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n <= 0):
        raise ValueError(f"n: expected a positive int or None, got {n!r}")
    stop = size if n is None else start + n
    if stop > size:
        raise ValueError(f"n: {name} {split} has {size} texts; start={start} + n={n} exceeds it")
    texts = list(data[split]["text"][start:stop])
    return texts, torch.tensor(data[split]["label"][start:stop], dtype=torch.int64)
