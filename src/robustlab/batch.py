"""A batch of inputs is a tensor (N, ...) or, for text models, a list of N strings: the few
operations the harness needs on either. Imports nothing of robustlab's own."""
from __future__ import annotations

import hashlib
from typing import Any, Union

import torch
from torch import Tensor

Inputs = Union[Tensor, list]


def count(x: Inputs) -> int:
    """N, the number of inputs."""
    return int(x.shape[0]) if isinstance(x, Tensor) else len(x)


def take(x: Inputs, idx: Tensor | slice) -> Inputs:
    """The inputs at ``idx`` (an int64 index tensor or a slice), same kind as ``x``."""
    if isinstance(x, Tensor):
        return x[idx.to(x.device)] if isinstance(idx, Tensor) else x[idx]
    if isinstance(idx, slice):
        return x[idx]
    return [x[i] for i in idx.tolist()]


def device_of(x: Inputs) -> torch.device:
    return x.device if isinstance(x, Tensor) else torch.device("cpu")


def data_hash(x: Inputs, y: Tensor) -> str:
    """sha256 of the inputs' bytes (tensors) or their UTF-8 text, then the labels'."""
    h = hashlib.sha256()
    if isinstance(x, Tensor):
        h.update(x.detach().cpu().contiguous().numpy().tobytes())
    else:
        for s in x:
            h.update(str(s).encode("utf-8"))
            h.update(b"\0")
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def is_inputs(x: Any) -> bool:
    return isinstance(x, Tensor) or (isinstance(x, list) and all(isinstance(s, str) for s in x))


__all__ = ["Inputs", "count", "take", "device_of", "data_hash", "is_inputs"]
