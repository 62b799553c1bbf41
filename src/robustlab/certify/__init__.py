"""Certifiers: sound lower bounds on robustness, ``certifier(model, x, y, threat) -> CertResult``.

Bound propagation (``bounds``, ``IBP``, ``CROWN``, ``AlphaCROWN``), randomized smoothing
(``Smoothed``, ``Smoothing``), 1-Lipschitz networks (``Lipschitz``), and ``LinearExact``.
"""
from robustlab.certify.base import Certifier, LinearExact, certifier_name
from robustlab.certify.certifiers import CERTIFIERS, CROWN, IBP, AlphaCROWN, make_certifier
from robustlab.certify.crown import bounds, margin_spec
from robustlab.certify.graph import Residual
from robustlab.certify.lipschitz import Lipschitz
from robustlab.certify.smoothing import Smoothed, Smoothing

__all__ = ["Certifier", "LinearExact", "certifier_name", "bounds", "margin_spec", "Residual", "IBP", "CROWN",
           "AlphaCROWN", "CERTIFIERS", "make_certifier", "Smoothed", "Smoothing", "Lipschitz"]
