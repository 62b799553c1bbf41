"""Attacks: callables configured in the constructor, ``attack(model, x, y, target=None) -> AttackResult``."""
from robustlab.attacks.base import Attack
from robustlab.attacks.gradient import FGSM, PGD
from robustlab.attacks.square import Square

__all__ = ["Attack", "FGSM", "PGD", "Square"]
