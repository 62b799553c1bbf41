"""What the command line prints (rich): the consoles, the one-line error, and the tables of
``robustlab evaluate`` (the evaluation and its diagnostics). Every command module imports these
from here, so none has to import ``robustlab.cli`` itself."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "120") or 120))
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr, then exit (2 for bad arguments)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_diagnostics(console: Console, diags: list) -> None:
    """The diagnostics table and its one-line verdict."""
    if not diags:
        return
    t = Table(title="diagnostics (gradient masking and evaluation strength)", title_justify="left")
    for c, j in (("check", "left"), ("status", "left"), ("figure", "right"), ("explanation", "left"), ("cost", "right")):
        t.add_column(c, justify=j)  # type: ignore[arg-type]
    for d in diags:
        colour = "green" if d.status == "pass" else "yellow"
        t.add_row(d.name, f"[{colour}]{d.status}[/]", f"{d.figure:.3g}", escape(d.explanation),
                  f"{d.seconds:.1f}s {d.forward_calls:,}f {d.backward_calls:,}b")
    console.print(t)
    warns = [d.name for d in diags if d.status == "warn"]
    if warns:
        console.print(f"[yellow]diagnostics: {len(warns)} warning(s) ({', '.join(warns)}): the robust accuracy "
                      "above is likely an overestimate[/]", highlight=False)
    else:
        console.print(f"diagnostics: all {len(diags)} checks pass", highlight=False)


def print_report(console: Console, report: Any, store: Optional[Path]) -> None:
    """The evaluation table: clean, certified, each attack, robust; then the summary lines."""
    t = Table(title=escape(f"{report.n} points, threat {report.threat}"), title_justify="left")
    t.add_column("stage")
    t.add_column("accuracy", justify="right")
    t.add_column("broken", justify="right")
    t.add_column("attacked", justify="right")
    t.add_column("forward (per point)", justify="right")
    t.add_column("backward (per point)", justify="right")
    t.add_column("seconds", justify="right")
    t.add_row("clean", f"{100 * report.clean_accuracy:.2f}%", "", "", "", "", "")

    def per(total: int, points: int) -> str:
        return f"{total:,} ({total / points:.1f})" if points else f"{total:,}"

    for c in report.certificates:
        t.add_row(f"certified: {escape(c.name)}", f"{100 * c.certified_accuracy:.2f}%", "", str(c.attempted),
                  f"{c.forward_calls:,}", "", f"{c.seconds:.1f}")
    for s in report.attacks:
        t.add_row(escape(s.name), f"{100 * s.robust_accuracy:.2f}%", str(s.broken), str(s.attacked),
                  per(s.forward_calls, s.attacked), per(s.backward_calls, s.attacked), f"{s.seconds:.1f}")
    t.add_row("[bold]robust[/]", f"[bold]{100 * report.robust_accuracy:.2f}%[/]", "", str(report.n),
              per(report.forward_calls, report.n), per(report.backward_calls, report.n), f"{report.seconds:.1f}")
    console.print(t)
    tail = f"wall time {report.seconds:.1f}s"
    if report.run_id:
        tail += f"; run {report.run_id} stored in {store}"
        if report.resumed_points:
            tail += f" (resumed: {report.resumed_points} points were already stored)"
    console.print(tail, highlight=False)
    cert = "" if report.certified_accuracy is None else f"certified accuracy {100 * report.certified_accuracy:.2f}%, "
    console.print(f"clean accuracy {100 * report.clean_accuracy:.2f}%, {cert}robust accuracy "
                  f"{100 * report.robust_accuracy:.2f}%", highlight=False)
