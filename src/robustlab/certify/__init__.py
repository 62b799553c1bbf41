"""Certifiers: sound lower bounds on robustness, ``certifier(model, x, y, threat) -> CertResult``."""
from robustlab.certify.base import Certifier, LinearExact, certifier_name
from robustlab.certify.lipschitz import Lipschitz
from robustlab.certify.smoothing import Smoothed, Smoothing

__all__ = ["Certifier", "LinearExact", "certifier_name", "Smoothed", "Smoothing", "Lipschitz"]
