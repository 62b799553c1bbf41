"""Threat models: the sets of perturbations an attacker may apply (``base`` has the protocol).

This package imports nothing of robustlab's own outside itself (see DESIGN.md).
"""
from robustlab.threats.base import (DIST_TOL, Ball, Threat, check_threat, parse_threat, register_threat, spec_of,
                                    threat_prefixes, within)
from robustlab.threats.lp import NORMS, LpBall, Norm, check_lp, project_l1_ball
from robustlab.threats.obs import StateBall

for _norm in NORMS:
    register_threat(_norm, LpBall.parse)
register_threat("state", StateBall.parse)

__all__ = ["Threat", "Ball", "LpBall", "Norm", "NORMS", "DIST_TOL", "check_threat", "check_lp", "parse_threat",
           "register_threat", "threat_prefixes", "spec_of", "within", "project_l1_ball", "StateBall"]
