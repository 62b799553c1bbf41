"""The shipped model zoo: weights as safetensors inside the package, each with a model card
(JSON next to the weights: how it was trained, from which seed, what it measured)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any


@dataclass(frozen=True)
class ZooEntry:
    name: str
    architecture: str  # key of robustlab.models.architectures.BUILDERS (or a label for ``loader``)
    dataset: str
    description: str
    # "module:function" building the whole model (wrappers, vocabularies, detector statistics)
    # from (entry, state_dict or None); None: BUILDERS[architecture]() plus the weights file.
    loader: str | None = None
    # Threat of the model's own evaluation (shown by ``robustlab models``), e.g. "linf:0.3".
    threat: str | None = None


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("mnist-cnn", "mnist_cnn", "mnist", "standard training (no defense)"),
        ZooEntry("mnist-cnn-at", "mnist_cnn", "mnist", "PGD adversarial training, Linf eps 0.3"),
        ZooEntry("mnist-cnn-trades", "mnist_cnn", "mnist", "TRADES (beta 6) fine-tuning of mnist-cnn-at, Linf eps 0.3", threat="linf:0.3"),
        ZooEntry("mnist-cnn-crownibp", "mnist_cnn_small", "mnist", "CROWN-IBP certified training, Linf eps 0.4",
                 loader="robustlab.models.certified:load_certified", threat="linf:0.3"),
        # One line per shipped model; modalities and defenses name their own loader.
    ]
}


def weights_path(name: str):
    return files("robustlab.models") / "weights" / f"{name}.safetensors"


def card(name: str) -> dict[str, Any]:
    """The model card of a shipped model (training config, seed, measured accuracy)."""
    p = files("robustlab.models") / "weights" / f"{name}.json"
    if not p.is_file():
        return {}
    return json.loads(p.read_text())
