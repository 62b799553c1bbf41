"""Certifiers: sound lower bounds on robustness, ``certifier(model, x, y, threat) -> CertResult``."""
from robustlab.certify.base import Certifier, LinearExact, certifier_name
from robustlab.certify.crown import bounds, margin_spec
from robustlab.certify.graph import Residual
from robustlab.certify.certifiers import CERTIFIERS, CROWN, IBP, AlphaCROWN, make_certifier

__all__ = ["Certifier", "LinearExact", "certifier_name", "bounds", "margin_spec", "Residual", "IBP", "CROWN",
           "AlphaCROWN", "CERTIFIERS", "make_certifier"]
