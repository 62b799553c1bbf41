"""Certifiers: sound lower bounds on robustness, ``certifier(model, x, y, threat) -> CertResult``."""
from robustlab.certify.base import Certifier, LinearExact, certifier_name
from robustlab.certify.certifiers import CROWN, IBP, AlphaCROWN
from robustlab.certify.crown import bounds, margin_spec
from robustlab.certify.graph import Residual

__all__ = [
           "CROWN",
           "IBP",
           "AlphaCROWN",
           "Certifier",
           "LinearExact",
           "Residual",
           "bounds",
           "certifier_name",
           "margin_spec",
]
