"""Loading and saving models: shipped zoo names, or a user's builder file plus safetensors.

Weights are read with safetensors only; nothing a user hands us is unpickled.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robustlab.models.architectures import BUILDERS
from robustlab.models.zoo import ZOO, card, weights_path


def names() -> list[str]:
    """Names of the shipped models."""
    return sorted(ZOO)


def load(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """A shipped model by name (see ``names()``), weights loaded, in eval mode.

    Input (N, C, H, W) in [0, 1]; output (N, K) logits.
    """
    if name not in ZOO:
        raise ValueError(f"name: unknown model {name!r}; shipped models: {names()}")
    entry = ZOO[name]
    path = weights_path(name)
    if entry.loader is not None:
        import importlib

        mod, fn = entry.loader.split(":")
        state = None
        if path.is_file():
            with open(path, "rb") as f:
                from safetensors.torch import load as load_bytes

                state = load_bytes(f.read())
        model = getattr(importlib.import_module(mod), fn)(entry, state)
        return _named(model.to(device).eval(), name)
    if not path.is_file():
        raise FileNotFoundError(
            f"name: weights for {name!r} are missing from the package ({path}); "
            "train them with scripts/train_mnist.py"
        )
    model = BUILDERS[entry.architecture]()
    with open(path, "rb") as f:  # works for zip-imported resources too
        from safetensors.torch import load as load_bytes

        state = load_bytes(f.read())
    model.load_state_dict(state, strict=True)
    return _named(model.to(device).eval(), name)


def _named(model: nn.Module, name: str) -> nn.Module:
    """Give the model its zoo name (``model.name``, read by ``evaluate`` for the store, runs and
    leaderboard) unless it already has one."""
    if not getattr(model, "name", None):
        try:
            model.name = name
        except AttributeError:  # a read-only ``name`` of the model's own
            pass
    return model


def load_from_file(builder_file: str | Path, weights: str | Path | None = None,
                   builder: str = "build", device: str | torch.device = "cpu") -> nn.Module:
    """A user's model: ``builder_file`` is a Python file defining ``builder()`` -> nn.Module
    (taking [0, 1] inputs, normalisation inside); ``weights`` a .safetensors state dict."""
    path = Path(builder_file)
    if not path.is_file():
        raise ValueError(f"builder_file: no such file {str(path)!r}")
    spec = importlib.util.spec_from_file_location(f"robustlab_user_model_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"builder_file: cannot import {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ValueError(f"builder_file: {str(path)!r} has a syntax error at line {e.lineno}: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - a failing import in the user's file: say what and where
        raise ValueError(f"builder_file: importing {str(path)!r} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, builder, None)
    if not callable(fn):
        raise ValueError(f"builder: {str(path)!r} defines no callable {builder!r}")
    try:
        model = fn()
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"builder: {builder}() in {str(path)!r} raised {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise TypeError(f"builder: {builder}() returned {type(model).__name__}, expected an nn.Module")
    if weights is not None:
        wp = Path(weights)
        if wp.suffix != ".safetensors":
            raise ValueError(f"weights: expected a .safetensors file, got {str(wp)!r}")
        if not wp.is_file():
            raise ValueError(f"weights: no such file {str(wp)!r}")
        try:
            state = load_file(str(wp))
        except Exception as e:  # noqa: BLE001 - SafetensorError and friends: not a safetensors file
            raise ValueError(f"weights: {str(wp)!r} is not a readable safetensors file ({e})") from None
        missing, unexpected, shape = _mismatch(model, state)
        if missing or unexpected or shape:
            parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                     f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                     f"{len(shape)} of another shape (e.g. {shape[0]})" if shape else ""]
            raise ValueError(f"weights: {str(wp)!r} does not fit {builder}() of {str(path)!r}: "
                             + ", ".join(p for p in parts if p))
        model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _mismatch(model: nn.Module, state: dict) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, "key: (a) vs (b)" shape mismatches) of a state dict."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(state))
             if tuple(state[k].shape) != tuple(own[k].shape)]
    return missing, unexpected, shape


def save(model: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write a model's state dict as safetensors, and ``metadata`` (if any) as a JSON card beside it."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    if metadata is not None:
        path.with_suffix(".json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def fingerprint(model: object) -> str:
    """sha256 of a model's parameters and buffers (names, shapes, values); for a plain callable
    its own ``fingerprint()`` (an access-level wrapper: endpoint URL, wrapped model) or its
    qualified name. Part of a stored run's identity."""
    h = hashlib.sha256()
    own = getattr(model, "fingerprint", None)  # access-level wrappers know what identifies their target
    if callable(own) and not isinstance(model, nn.Module):
        h.update(str(own()).encode())
    elif isinstance(model, nn.Module):
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(str(tuple(v.shape)).encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    else:
        h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    return h.hexdigest()


__all__ = ["names", "load", "load_from_file", "save", "fingerprint", "card"]
