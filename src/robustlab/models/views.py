"""A defended model is judged by its deployed forward and attacked through its attack view.

    model.attack_view() -> nn.Module   # optional: what gradient attacks should differentiate
                                       # (BPDA around a non-differentiable step, EOT over a
                                       # random one, classifier + detector logits)
    model.spec() -> str                # optional: the defense's settings ("jpeg:q75"), part of
                                       # the run identity, so two settings never share a run

``evaluate`` attacks ``attack_view_of(model)`` and decides every success with ``model`` itself.
"""
from __future__ import annotations

from torch import nn


def attack_view_of(model: object) -> object:
    """``model.attack_view()`` when the model defines one, else the model itself."""
    view = getattr(model, "attack_view", None)
    if callable(view):
        out = view()
        if not callable(out):
            raise TypeError(f"model: attack_view() returned {type(out).__name__}, expected a callable nn.Module")
        return out
    return model


def model_spec(model: object) -> str | None:
    """The settings a wrapper declares through ``spec()`` (None for a plain model). Wrappers
    of wrappers compose: a wrapper's spec should include its inner model's."""
    if isinstance(model, nn.Module) or callable(model):
        spec = getattr(model, "spec", None)
        if callable(spec):
            return str(spec())
    return None


__all__ = ["attack_view_of", "model_spec"]
