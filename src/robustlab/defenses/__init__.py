"""Defenses: training recipes and defended models. Adversarial training:
``rl.defenses.train(model, (x, y), recipe, ...)`` with the recipes of
:mod:`robustlab.defenses.training` (Standard, PGDAT, TRADES, FastAT) and certified training
(IBPTraining, CROWNIBP) through the same recipe contract."""
from robustlab.defenses.certified_training import CROWNIBP, IBPTraining
from robustlab.defenses.training import PGDAT, TRADES, Cyclic, FastAT, Monitor, Piecewise, Standard, train

__all__ = ["train", "Standard", "PGDAT", "TRADES", "FastAT", "Piecewise", "Cyclic", "Monitor",
           "IBPTraining", "CROWNIBP"]
