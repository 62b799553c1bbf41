"""``robustlab runs``, ``report`` and ``leaderboard``: the commands that read a result store
(opened read-only). Registered on the app by ``register`` (one line in ``cli.COMMAND_MODULES``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from robustlab.cli_tables import console, fail


def runs(store: Path = typer.Argument(..., help="SQLite result store")) -> None:
    """List the runs in a result store."""
    import datetime

    from robustlab.evaluation.store import Store
    from robustlab.report.html import data_label, model_label

    if not store.is_file():
        fail(f"store: no such file {str(store)!r}")
    try:
        with Store(store, readonly=True) as db:
            rows = db.runs()
    except ValueError as e:
        fail(str(e))
        return
    t = Table()
    for c in ("run", "kind", "created", "status", "model", "data", "threat", "attacks", "points", "clean", "certified",
              "robust"):
        t.add_column(c)
    for r in rows:
        s = r.summary or {}
        status = {"interrupted": "interrupted (rerun to resume)", "failed": "failed (rerun to resume)"}.get(
            r.status, r.status)
        t.add_row(r.run_id, r.kind, datetime.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"), status,
                  escape(model_label(r)), escape(data_label(r)), r.threat,
                  escape(", ".join(r.attacks)),
                  f"{r.points_done}/{r.n}",
                  f"{100 * s['clean_accuracy']:.2f}%" if "clean_accuracy" in s else "-",
                  f"{100 * s['certified_accuracy']:.2f}%" if s.get("certified_accuracy") is not None else "-",
                  f"{100 * s['robust_accuracy']:.2f}%" if "robust_accuracy" in s else "-")
    console.print(t)


def report(
    run: str = typer.Argument(..., help="Run id (or a unique prefix; see `robustlab runs STORE`)"),
    store: Path = typer.Option(..., "--store", help="SQLite result store holding the run"),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file to write [default: report-<run>.html]"),
) -> None:
    """Write a self-contained HTML report of a stored run: plots, diagnostics, the config."""
    from robustlab.report.html import load_run, write_report

    try:
        data = load_run(store, run)
        path = out if out is not None else Path(f"report-{data.info.run_id}.html")
        if not path.parent.exists():
            fail(f"out: folder {str(path.parent)!r} does not exist")
        write_report(store, data.info.run_id, path)  # every section (gallery, per class, ...), written atomically
    except ValueError as e:
        fail(str(e))
        return
    warns = sum(d.status == "warn" for d in data.diagnostics)
    console.print(f"report of run {data.info.run_id} written to {escape(str(path))} "
                  f"({len(data.diagnostics)} diagnostics, {warns} warning(s))", highlight=False)


def leaderboard(
    store: Path = typer.Argument(..., help="SQLite result store"),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the leaderboard as an HTML page here"),
) -> None:
    """Rank the stored runs per (data, threat) by robust accuracy."""
    from robustlab.report.leaderboard import leaderboard as build, rich_tables, write_leaderboard

    try:
        groups, unfinished = build(store)
        if out is not None:
            write_leaderboard(store, out)
    except ValueError as e:
        fail(str(e))
        return
    if not groups:
        console.print("no finished run in this store yet", highlight=False)
    for t in rich_tables(groups):
        console.print(t)
    if unfinished:
        console.print(f"{unfinished} unfinished run(s) left out", highlight=False)
    if out is not None:
        console.print(f"leaderboard written to {escape(str(out))}", highlight=False)


def register(app: typer.Typer) -> None:
    for fn in (runs, report, leaderboard):
        app.command()(fn)
