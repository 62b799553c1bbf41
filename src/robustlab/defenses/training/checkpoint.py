"""Atomic training checkpoints: write to a temporary file in the same directory, fsync, then
rename over the target, so a process killed at any moment leaves either the previous complete
checkpoint or the new complete one, never a torn file.

A checkpoint is a plain dict of tensors, numbers and strings (``torch.save`` format, loaded with
``weights_only=True``): model and optimiser state, the learning-rate schedule position, the RNG
states (global torch and the recipe's generator per process), the position in the data order
(epoch and step within it), the per-epoch history, and the run's spec (a resume with a
different recipe, data or schedule is refused).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temp file in the same directory + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None if there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def best_path(path: str | Path) -> Path:
    """Where the best epoch's weights (for a roll-back) live, beside the checkpoint."""
    path = Path(path)
    return path.with_name(path.name + ".best")
