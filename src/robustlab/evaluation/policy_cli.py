"""What the command line does for a policy: ``robustlab evaluate --env CartPole-v1 --model
cartpole-dqn --threat linf:0.5 --attacks pgd,timed-pgd --min-return 400`` calls
``run_policy_evaluation`` and exits with the code it returns; ``print_policy_report`` is the table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from robustlab.evaluation.episodes import PolicyReport, check_min_return, evaluate_policy


def print_policy_report(console: Console, report: PolicyReport) -> None:
    """One row per setting: mean / min return, steps attacked, model passes per step, seconds."""
    table = Table(title=f"{report.model} on {report.env}, {report.episodes} episodes from seed {report.seed}, "
                        f"threat {report.threat} (std units: {', '.join(f'{v:.3g}' for v in report.scale)})")
    for col, just in (("setting", "left"), ("mean return", "right"), ("min", "right"), ("steps attacked", "right"),
                      ("fwd/step", "right"), ("bwd/step", "right"), ("seconds", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    rows = [report.clean] + ([report.noise] if report.noise else []) + list(report.attacks)
    for s in rows:
        steps = max(sum(s.steps), 1)
        table.add_row(s.name, f"{s.mean_return:.1f}", f"{min(s.returns):.0f}",
                      "-" if s.name == "clean" else f"{100 * s.attacked_fraction:.0f}%",
                      f"{sum(s.forward) / steps:.1f}", f"{sum(s.backward) / steps:.1f}", f"{s.seconds:.1f}")
    console.print(table)
    if report.run_id:
        console.print(f"stored as run {report.run_id}")


def run_policy_evaluation(console: Console, env: str, model: str, threat: str, attacks: str, episodes: int = 100,
                          seed: int = 0, store: Path | None = None, min_return: float | None = None,
                          noise: bool = True) -> int:
    """Load a shipped policy (or a builder file), evaluate it, print the table, apply the gate.

    ``threat`` "linf:EPS" and "state:EPS" both mean the state-scaled Linf ball (observations are
    raw units: eps is in standard deviations of the policy's own states). Returns the exit code:
    0, or 1 when ``min_return`` is given and the worst attack's mean return is below it.
    """
    import robustlab as rl
    from robustlab.evaluation.store import Store

    policy = rl.models.load(model) if not model.endswith(".py") else rl.models.load_from_file(model)
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    opened: Any = Store(store) if store is not None else None
    try:
        with console.status("rolling out episodes"):
            report = evaluate_policy(policy, env, threat, names, episodes=episodes, seed=seed, store=opened,
                                     noise=noise, model_name=model)
    finally:
        if opened is not None:
            opened.close()
    print_policy_report(console, report)
    if min_return is None:
        return 0
    ok, line = check_min_return(report, min_return)
    console.print(line, style="green" if ok else "bold red")
    return 0 if ok else 1
