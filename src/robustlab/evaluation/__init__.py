"""Evaluation: the runner (``evaluate``) and the result store."""
from robustlab.evaluation.runner import evaluate
from robustlab.evaluation.store import RunInfo, Store

__all__ = ["evaluate", "Store", "RunInfo"]
