"""robustlab: adversarial robustness in plain PyTorch: attacks, defenses, honest evaluation."""
from robustlab import attacks, certify, data, defenses, evaluation, models, threats
from robustlab.evaluation import Store, curves, evaluate
from robustlab.evaluation.episodes import EpisodeStats, PolicyReport, evaluate_policy
from robustlab.results import AttackResult, AttackSummary, CertResult, EvalReport
from robustlab.threats import DbBall, LpBall, SnrBall, StateBall, WordBudget, parse_threat

__version__ = "0.1.0"

__all__ = ["attacks", "certify", "data", "defenses", "evaluation", "models", "threats", "curves", "parse_threat",
           "LpBall", "DbBall", "SnrBall", "WordBudget", "StateBall", "AttackResult", "AttackSummary", "EvalReport",
           "CertResult", "evaluate", "evaluate_policy", "PolicyReport", "EpisodeStats", "Store", "__version__"]
