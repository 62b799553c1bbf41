"""Shipped defended configurations: ``<base>+<defense>`` in the model zoo.

    rl.models.load("mnist-cnn+squeeze")      # Detected(mnist-cnn, FeatureSqueezing, fpr=0.05)
    rl.models.load("mnist-cnn-at+jpeg")      # JPEG(mnist-cnn-at, quality=50)

``load_defended`` is the zoo loader of these entries: it loads the base model by name and wraps
it. Detector statistics live in ``models/weights/<name>.safetensors`` with a card beside them,
written by ``scripts/fit_detectors.py``; transforms have no statistics.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from robustlab.defenses.detected import Detected
from robustlab.defenses.detectors import LID, BinaryDetector, Detector, FeatureSqueezing, Mahalanobis
from robustlab.defenses.transforms import JPEG, BitDepth, GaussianNoise, MedianFilter, RandomResizePad, TVDenoise

FPR = 0.05

TRANSFORMS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "bitdepth": lambda m: BitDepth(m, 1),
    "median": lambda m: MedianFilter(m, 2),
    "jpeg": lambda m: JPEG(m, 50),
    "tv": lambda m: TVDenoise(m, weight=0.1, iters=30),
    "resizepad": lambda m: RandomResizePad(m, min_size=24, eot_samples=10),
    "noise": lambda m: GaussianNoise(m, 0.3, eot_samples=10),
}

DETECTORS: dict[str, Callable[[], Detector]] = {
    "squeeze": lambda: FeatureSqueezing(bits=1, median_size=2),
    "mahalanobis": lambda: Mahalanobis(layers="relu"),
    "lid": lambda: LID(k=20, n_ref=300),
    "binary": lambda: BinaryDetector(channels=1, epochs=5),
}

BASES = ("mnist-cnn", "mnist-cnn-at")


def split_name(name: str) -> tuple[str, str]:
    """"mnist-cnn+squeeze" -> ("mnist-cnn", "squeeze"), with both parts checked."""
    base, sep, kind = name.partition("+")
    if not sep or base not in BASES or kind not in {**TRANSFORMS, **DETECTORS}:
        raise ValueError(f"name: expected '<base>+<defense>' with base in {BASES} and defense in "
                         f"{sorted({**TRANSFORMS, **DETECTORS})}, got {name!r}")
    return base, kind


def build(base_model: nn.Module, kind: str, detector_state: dict[str, Tensor] | None = None) -> nn.Module:
    """The defended model ``kind`` around ``base_model``; a detector needs its fitted state."""
    if kind in TRANSFORMS:
        return TRANSFORMS[kind](base_model)
    if kind not in DETECTORS:
        raise ValueError(f"kind: unknown defense {kind!r}")
    if detector_state is None:
        raise FileNotFoundError(f"detector_state: the statistics of {kind!r} are missing; fit them with "
                                "scripts/fit_detectors.py")
    return Detected(base_model, DETECTORS[kind]().load_state(detector_state), fpr=FPR)


def load_defended(entry, state: dict[str, Tensor] | None) -> nn.Module:
    """Zoo loader (``ZooEntry.loader``): the base model by name, wrapped by the entry's defense."""
    from robustlab.models.loading import load

    base, kind = split_name(entry.name)
    return build(load(base), kind, state).eval()


__all__ = ["TRANSFORMS", "DETECTORS", "BASES", "FPR", "split_name", "build", "load_defended"]
