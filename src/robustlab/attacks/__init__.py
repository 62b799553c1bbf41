"""Attacks: callables configured in the constructor, ``attack(model, x, y, target=None) -> AttackResult``."""
from robustlab.attacks.apgd import APGD, APGDT
from robustlab.attacks.base import Attack
from robustlab.attacks.cw import CarliniWagner
from robustlab.attacks.decision import Boundary, HopSkipJump
from robustlab.attacks.deepfool import DeepFool
from robustlab.attacks.fab import FAB
from robustlab.attacks.gradient import FGSM, PGD
from robustlab.attacks.policy import ObsAttack, ObsAttackResult, ObsNoise, ObsPGD, Steered, Timed
from robustlab.attacks.score import NES, SPSA
from robustlab.attacks.square import Square

__all__ = ["Attack", "APGD", "APGDT", "FAB", "CarliniWagner", "DeepFool", "FGSM", "PGD", "Square", "SPSA", "NES",
           "HopSkipJump", "Boundary", "ObsAttack", "ObsAttackResult", "ObsNoise", "ObsPGD", "Steered", "Timed"]
