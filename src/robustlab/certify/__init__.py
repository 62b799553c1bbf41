"""Certifiers: sound lower bounds on robustness, ``certifier(model, x, y, threat) -> CertResult``."""
from robustlab.certify.base import Certifier, LinearExact, certifier_name

__all__ = ["Certifier", "LinearExact", "certifier_name"]
