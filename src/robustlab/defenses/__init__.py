"""Defenses. Adversarial training: ``rl.defenses.train(model, (x, y), recipe, ...)`` with the
recipes of :mod:`robustlab.defenses.training` (Standard, PGDAT, TRADES, FastAT)."""
from robustlab.defenses.training import PGDAT, TRADES, Cyclic, FastAT, Monitor, Piecewise, Standard, train

__all__ = ["train", "Standard", "PGDAT", "TRADES", "FastAT", "Piecewise", "Cyclic", "Monitor"]
