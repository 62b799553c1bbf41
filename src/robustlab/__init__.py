"""robustlab: adversarial robustness in plain PyTorch: attacks, defenses, honest evaluation."""
from robustlab import attacks, data, evaluation, models
from robustlab.evaluation import Store, evaluate
from robustlab.evaluation.episodes import EpisodeStats, PolicyReport, evaluate_policy
from robustlab.results import AttackResult, AttackSummary, CertResult, EvalReport
from robustlab.threats import LpBall, StateBall

__version__ = "0.1.0"

__all__ = ["attacks", "data", "evaluation", "models", "LpBall", "AttackResult", "AttackSummary", "EvalReport",
           "CertResult", "evaluate", "Store", "__version__", "StateBall", "evaluate_policy", "PolicyReport",
           "EpisodeStats"]
