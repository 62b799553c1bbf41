"""robustlab: adversarial robustness in plain PyTorch: attacks, defenses, honest evaluation."""
from robustlab import attacks, certify, data, defenses, evaluation, models, threats
from robustlab.evaluation import Store, evaluate
from robustlab.results import AttackResult, AttackSummary, CertResult, EvalReport
from robustlab.evaluation import curves
from robustlab.threats import LpBall, parse_threat

__version__ = "0.1.0"

__all__ = ["attacks", "certify", "data", "defenses", "evaluation", "models", "threats", "curves", "parse_threat", "LpBall",
           "AttackResult", "AttackSummary", "EvalReport",
           "CertResult", "evaluate", "Store", "__version__"]
