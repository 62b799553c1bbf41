"""robustlab: adversarial robustness in plain PyTorch: attacks, defenses, honest evaluation."""
from robustlab import attacks, data, evaluation, models
from robustlab.evaluation import Store, evaluate
from robustlab.results import AttackResult, AttackSummary, CertResult, EvalReport
from robustlab.threats import DbBall, LpBall, SnrBall

__version__ = "0.1.0"

__all__ = ["attacks", "data", "evaluation", "models", "LpBall", "DbBall", "SnrBall", "AttackResult", "AttackSummary", "EvalReport",
           "CertResult", "evaluate", "Store", "__version__"]
