"""robustlab: adversarial robustness in plain PyTorch: attacks, defenses, honest evaluation."""
from robustlab import attacks, certify, data, defenses, evaluation, models, threats
from robustlab.evaluation import Store, curves, evaluate
from robustlab.results import AttackResult, AttackSummary, CertResult, EvalReport
from robustlab.threats import DbBall, LpBall, SnrBall, WordBudget, parse_threat

__version__ = "0.1.0"

__all__ = ["attacks", "certify", "data", "defenses", "evaluation", "models", "threats", "curves", "parse_threat",
           "LpBall", "DbBall", "SnrBall", "WordBudget", "AttackResult", "AttackSummary", "EvalReport", "CertResult",
           "evaluate", "Store", "__version__"]
