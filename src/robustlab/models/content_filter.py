"""A content filter: the all-MiniLM-L6-v2 sentence encoder (frozen) and a trained two-layer head.
``filter(texts)`` returns (N, 2) logits, class 0 benign (ham), class 1 flagged (spam).

An optional ``normalizer`` (``robustlab.defenses.text_normalize.Normalizer``) runs on the text
first: the defended filter of ``filter-minilm-norm``. Needs the extra ``robustlab[text]``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from robustlab.models.minilm import encoder


class Head(nn.Module):
    """384 -> hidden -> n_classes on unit-norm sentence embeddings."""

    def __init__(self, dim: int = 384, hidden: int = 128, n_classes: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ContentFilter(nn.Module):
    """MiniLM encoder + ``Head``; input a list of N strings, output (N, 2) logits."""

    def __init__(self, head: Head, normalizer: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.head = head
        self.normalizer = normalizer
        self.encoder = encoder()  # shared, frozen

    def forward(self, texts: list[str]) -> Tensor:
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts: expected a list of strings, got {type(texts).__name__}")
        if self.normalizer is not None:
            texts = [self.normalizer(t) for t in texts]
        z = self.encoder.encode(list(texts)).to(next(self.head.parameters()).device)
        return self.head(z)

    def spec(self) -> str:
        return "normalizer=on" if self.normalizer is not None else "normalizer=off"


def load_filter(entry: Any, state: dict[str, Tensor] | None) -> ContentFilter:
    """Zoo loader for ``filter-minilm`` (and ``filter-minilm-norm``: the same head behind the
    normalizing front end)."""
    head = Head()
    if state is None and entry.name.endswith("-norm"):
        state = filter_weights(entry.name)
    if state is not None:
        head.load_state_dict(state)
    norm = None
    if entry.name.endswith("-norm"):
        from robustlab.defenses.text_normalize import Normalizer

        norm = Normalizer()
    return ContentFilter(head, norm).eval()


def filter_weights(name: str) -> dict[str, Tensor]:
    """The head weights shipped for ``name`` (the -norm variants reuse their base head)."""
    from safetensors.torch import load as load_bytes

    from robustlab.models.zoo import weights_path

    with open(weights_path(name.removesuffix("-norm")), "rb") as f:
        return load_bytes(f.read())


__all__ = ["ContentFilter", "Head", "load_filter", "filter_weights"]
