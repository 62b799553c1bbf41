"""Text classifiers that take strings: the tokenizer lives inside the model, as ``Normalize`` does
for images, so ``model(["a fine film", ...])`` returns (N, K) logits and attacks never see ids.

The word vectors are the GloVe 6B 50d rows of the shipped vocabulary
(``data/files/glove50_vocab.npz``, converted by scripts/convert_text.py); the word-CNN keeps them
frozen, so its weights file holds only the convolutions and the output layer.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
PAD, UNK = 0, 1


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (the vocabulary's own tokenization)."""
    return TOKEN.findall(text.lower())


@lru_cache(maxsize=1)
def glove() -> tuple[list[str], Tensor]:
    """The shipped vocabulary (sorted words) and its GloVe 50d vectors, float32 (V, 50)."""
    with (files("robustlab.data") / "files" / "glove50_vocab.npz").open("rb") as f:
        z = np.load(f, allow_pickle=False)
        words, vectors = [str(w) for w in z["words"]], torch.from_numpy(z["vectors"].astype(np.float32))
    return words, vectors


class WordCNN(nn.Module):
    """Kim (2014) convolutional sentence classifier on frozen GloVe vectors.

    Input: a list of N strings. Output: (N, n_classes) logits. Ids: 0 padding, 1 unknown word,
    2.. the GloVe vocabulary (``glove()``). Sentences are cut at ``max_len`` tokens.
    """

    def __init__(self, n_classes: int, filters: int = 100, widths: tuple[int, ...] = (3, 4, 5),
                 dropout: float = 0.5, max_len: int = 64) -> None:
        super().__init__()
        words, vectors = glove()
        self.index = {w: i + 2 for i, w in enumerate(words)}
        table = torch.cat([torch.zeros(2, vectors.shape[1]), vectors])
        # The shipped GloVe rows, frozen (a local tensor: nothing is fetched).
        self.embedding = nn.Embedding(table.shape[0], table.shape[1], padding_idx=PAD)
        with torch.no_grad():
            self.embedding.weight.copy_(table)
        self.embedding.weight.requires_grad_(False)
        self.convs = nn.ModuleList(nn.Conv1d(vectors.shape[1], filters, w) for w in widths)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(filters * len(widths), n_classes)
        self.max_len = max_len
        self.min_len = max(widths)

    def ids(self, texts: list[str]) -> Tensor:
        """(N, L) int64 token ids, padded with 0 to the longest sentence (at least the widest filter)."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts: expected a list of strings, got {type(texts).__name__}")
        rows = [[self.index.get(t, UNK) for t in tokenize(s)][: self.max_len] for s in texts]
        length = max([self.min_len] + [len(r) for r in rows])
        out = torch.zeros(len(rows), length, dtype=torch.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        return out.to(self.embedding.weight.device)

    def forward_ids(self, ids: Tensor) -> Tensor:
        """(N, L) ids -> (N, K) logits. Windows that reach into the padding are masked out, so a
        sentence's logits do not depend on what it is batched with."""
        h = self.embedding(ids).transpose(1, 2)  # (N, 50, L)
        length = (ids != PAD).sum(1, keepdim=True)  # (N, 1)
        pooled = []
        for conv in self.convs:
            a = torch.relu(conv(h))  # (N, F, L - w + 1), >= 0
            t = torch.arange(a.shape[2], device=ids.device)
            valid = t[None, :] <= (length - conv.kernel_size[0]).clamp(min=0)  # (N, L - w + 1)
            pooled.append((a * valid[:, None, :]).amax(dim=2))
        return self.out(self.dropout(torch.cat(pooled, dim=1)))

    def forward(self, texts: list[str]) -> Tensor:
        return self.forward_ids(self.ids(texts))

    def state_to_save(self) -> dict[str, Tensor]:
        """The trained weights (the frozen GloVe table is shipped once, not per model)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("embedding.")}


def load_wordcnn(entry: Any, state: dict[str, Tensor] | None) -> WordCNN:
    """Zoo loader: a ``WordCNN`` for ``entry.dataset`` with the shipped weights."""
    from robustlab.data import info

    model = WordCNN(info(entry.dataset).n_classes)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("embedding.") for k in missing):
            raise ValueError(f"state: weights do not fit a WordCNN: missing {missing}, unexpected {unexpected}")
    return model.eval()
