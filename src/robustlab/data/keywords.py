"""Spoken keywords: 1 s clips at 8 kHz, synthesised offline with espeak-ng (scripts/make_keywords.py).

Twelve classes, in label order: the ten Speech Commands keywords yes, no, up, down, left, right,
on, off, stop, go (0-9), then "silence" (10, background noise only) and "unknown" (11, other
Speech Commands words). Train and test come from disjoint espeak-ng voice variants (81 train,
20 held out for test, each over 8 English accents), speeds 110-210 wpm, pitches 20-80, a random
placement in the clip and Gaussian background noise 25-45 dB below the word's peak.

    x, y = robustlab.data.load("keywords", split="test")   # x: (N, 1, 8000) float32 in [0, 1]

A waveform w in [-1, 1] is stored in x as (w + 1) / 2, so the core's [0, 1] box holds; models
map it back inside (``robustlab.models.kws.Waveform``). A waveform change of d is d / 2 in x.
"""
from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import numpy as np
import torch
from torch import Tensor

LABELS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "silence", "unknown")
N_CLASSES = len(LABELS)
RATE = 8000  # Hz
SHAPE = (1, RATE)
SIZES = {"train": 1200, "test": 480}
MU = 255


def label_index(name: str) -> int:
    """The class index of a label name ("stop" -> 8)."""
    if name not in LABELS:
        raise ValueError(f"name: expected one of {LABELS}, got {name!r}")
    return LABELS.index(name)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """float64 waveform in [-1, 1] from int8 mu-law codes (mu = 255, 127 levels a side)."""
    c = codes.astype(np.float64) / 127.0
    return np.sign(c) * np.expm1(np.abs(c) * np.log1p(MU)) / MU


@lru_cache(maxsize=1)
def _file() -> dict[str, np.ndarray]:
    path = files("robustlab.data") / "files" / "keywords.npz"
    with path.open("rb") as f, np.load(f, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def waveforms(split: str, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 waveforms (n, T) in [-1, 1] and int64 labels (n,) of clips ``start .. stop``.

    Each clip's noise comes from its own seeded generator (split seed, clip index), so any
    slice gives the same clips as the whole split.
    """
    d = _file()
    stop = SIZES[split] if stop is None else stop
    seed = int(d["noise_seed"][0 if split == "train" else 1])
    clean = mulaw_decode(d[f"codes_{split}"][start:stop]) * d[f"peak_{split}"][start:stop, None]
    noise = np.stack([np.random.default_rng([seed, i]).standard_normal(clean.shape[1]) for i in range(start, stop)])
    w = np.clip(clean + noise * d[f"noise_{split}"][start:stop, None], -1.0, 1.0)
    return w.astype(np.float32), d[f"y_{split}"][start:stop].astype(np.int64)


def load(split: str = "test", n: int | None = None, start: int = 0) -> tuple[Tensor, Tensor]:
    """Clips ``start .. start+n`` of a split.

    Returns:
        x: float32 (n, 1, 8000) in [0, 1], the waveform w mapped as (w + 1) / 2.
        y: int64 (n,) class indices into ``LABELS``.
    """
    if split not in SIZES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    size = SIZES[split]
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < size:
        raise ValueError(f"start: expected an int in [0, {size}), got {start!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        raise ValueError(f"n: expected a positive int or None, got {n!r}")
    stop = size if n is None else start + n
    if stop > size:
        raise ValueError(f"n: keywords {split} has {size} clips; start={start} + n={n} exceeds it")
    w, y = waveforms(split, start, stop)
    x = torch.from_numpy((w + 1.0) / 2.0).unsqueeze(1)
    return x, torch.from_numpy(y)


__all__ = ["LABELS", "N_CLASSES", "RATE", "SHAPE", "SIZES", "load", "label_index", "waveforms", "mulaw_decode"]
