"""Defenses: adversarial training, certified training, input transforms and detectors that wrap
a model.

Training: ``rl.defenses.train(model, (x, y), recipe, ...)`` with the recipes of
:mod:`robustlab.defenses.training` (Standard, PGDAT, TRADES, FastAT) and the certified ones
(IBPTraining, CROWNIBP). Every wrapper is judged by its deployed forward and attacked through
``attack_view()`` (BPDA / EOT / classifier + detector logits); ``naive_view()`` is the bare
classifier.
"""
from robustlab.defenses.certified_training import CROWNIBP, IBPTraining
from robustlab.defenses.detected import Detected
from robustlab.defenses.detectors import LID, BinaryDetector, Detector, FeatureSqueezing, Mahalanobis
from robustlab.defenses.metrics import (CombinedAccuracy, DetectionSummary, combined_accuracy, detection_summary,
                                        roc_auc)
from robustlab.defenses.training import PGDAT, TRADES, Cyclic, FastAT, Monitor, Piecewise, Standard, train
from robustlab.defenses.transforms import (JPEG, BitDepth, GaussianNoise, InputTransform, MedianFilter,
                                           RandomResizePad, TVDenoise)

__all__ = ["train", "Standard", "PGDAT", "TRADES", "FastAT", "Piecewise", "Cyclic", "Monitor", "IBPTraining",
           "CROWNIBP", "BitDepth", "MedianFilter", "JPEG", "TVDenoise", "RandomResizePad", "GaussianNoise",
           "InputTransform", "Detector", "FeatureSqueezing", "Mahalanobis", "LID", "BinaryDetector", "Detected",
           "DetectionSummary", "CombinedAccuracy", "roc_auc", "detection_summary", "combined_accuracy"]
