"""Threat models: the sets of perturbations an attacker may apply (``base`` has the protocol).

lp.py: Lp balls on images; audio.py: dB and SNR budgets relative to each clip; text.py: word
budgets with a similarity floor; obs.py: state-scaled balls on policy observations. This package imports nothing of robustlab's own outside itself
(see DESIGN.md).
"""
from robustlab.threats.audio import DbBall, SnrBall
from robustlab.threats.base import (DIST_TOL, Ball, Threat, check_threat, parse_threat, register_threat, spec_of,
                                    threat_prefixes, within)
from robustlab.threats.lp import NORMS, LpBall, Norm, check_lp, project_l1_ball
from robustlab.threats.obs import StateBall
from robustlab.threats.text import WordBudget

for _norm in NORMS:
    register_threat(_norm, LpBall.parse)
register_threat("words", WordBudget.parse)
register_threat("db", DbBall.parse)
register_threat("snr", SnrBall.parse)
register_threat("state", StateBall.parse)

__all__ = ["Threat", "Ball", "LpBall", "DbBall", "SnrBall", "WordBudget", "StateBall", "Norm", "NORMS", "DIST_TOL", "check_threat",
           "check_lp", "parse_threat", "register_threat", "threat_prefixes", "spec_of", "within", "project_l1_ball"]
