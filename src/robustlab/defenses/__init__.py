"""Defenses: training recipes and defended models."""
from robustlab.defenses.certified_training import CROWNIBP, IBPTraining

__all__ = ["IBPTraining", "CROWNIBP"]
