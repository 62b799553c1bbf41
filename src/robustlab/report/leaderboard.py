"""The leaderboard of a result store: finished runs ranked by robust accuracy within each
(data, threat) group, as rich tables for the terminal and as a self-contained HTML page.

Runs compete only on exactly the same points (the data's sha256) under the same threat. A run
whose diagnostics warn keeps its place but carries the warning next to its number.
"""
from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from robustlab.evaluation.diagnostics import Diagnostic
from robustlab.evaluation.store import RunInfo, Store
from robustlab.report import plots
from robustlab.report.html import write_page, _template_source, data_label, environment, model_label


@dataclass
class Entry:
    rank: int
    run_id: str
    model: str
    attacks: list[str]
    n: int
    clean_accuracy: float
    robust_accuracy: float
    warnings: list[str]
    diagnosed: bool
    created: str
    certified_accuracy: float | None = None


@dataclass
class Group:
    data: str
    threat: str
    entries: list[Entry] = field(default_factory=list)


def leaderboard(store: str | Path) -> tuple[list[Group], int]:
    """(groups, unfinished): finished runs ranked per (data, threat); the number of unfinished
    runs left out."""
    p = Path(store)
    if not p.is_file():
        raise ValueError(f"store: no such file {str(p)!r}")
    with Store(p, readonly=True) as db:
        runs = db.runs()
        diags = {r.run_id: [Diagnostic.from_dict(d) for d in db.diagnostics(r.run_id)] for r in runs}
    buckets: dict[tuple[str, str], list[RunInfo]] = defaultdict(list)
    labels: dict[tuple[str, str], str] = {}
    unfinished = 0
    for r in runs:
        if r.status != "done" or not r.summary or "robust_accuracy" not in r.summary:
            unfinished += 1
            continue
        key = (str(r.data.get("sha256", r.run_id)), r.threat)
        buckets[key].append(r)
        labels[key] = data_label(r)
    groups = []
    for key in sorted(buckets, key=lambda k: (labels[k], k[1])):
        rs = sorted(buckets[key], key=lambda r: (-r.summary["robust_accuracy"], -r.summary["clean_accuracy"], r.created))
        g = Group(labels[key], key[1])
        for i, r in enumerate(rs, 1):
            ds = diags[r.run_id]
            # A reduced-precision search is part of how the number was reached: say so in the row.
            prec = r.config.get("precision", "fp32")
            attacks = list(r.attacks) + ([f"(searched in {prec}, decided in fp32)"] if prec != "fp32" else [])
            kinds = [a.get("type") for a in r.config.get("attacks", []) if isinstance(a, dict)]
            if kinds[:3] == ["APGD", "APGDT", "FAB"] and len(kinds) >= 3:
                attacks = ["[standard evaluation]"] + attacks
            elif "FastEval" in kinds:
                attacks = ["[fast evaluation, self-audited]"] + attacks
            g.entries.append(Entry(i, r.run_id, model_label(r), attacks, r.n, float(r.summary["clean_accuracy"]),
                                   float(r.summary["robust_accuracy"]), [d.name for d in ds if d.status == "warn"],
                                   bool(ds), datetime.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"),
                                   r.summary.get("certified_accuracy")))
        groups.append(g)
    return groups, unfinished


def _diag_text(e: Entry) -> str:
    if not e.diagnosed:
        return "not run"
    return f"{len(e.warnings)} warn: {', '.join(e.warnings)}" if e.warnings else "all pass"


def rich_tables(groups: list[Group]) -> list[Table]:
    """One rich Table per group."""
    out = []
    for g in groups:
        t = Table(title=escape(f"{g.data}, threat {g.threat}"), title_justify="left")
        for c, j in (("#", "right"), ("model", "left"), ("clean", "right"), ("certified", "right"), ("robust", "right"),
                     ("attacks", "left"), ("points", "right"), ("diagnostics", "left"), ("run", "left")):
            t.add_column(c, justify=j)  # type: ignore[arg-type]
        for e in g.entries:
            diag = _diag_text(e)
            style = "yellow" if e.warnings or not e.diagnosed else "green"
            cert = "-" if e.certified_accuracy is None else f"{100 * e.certified_accuracy:.2f}%"
            t.add_row(str(e.rank), escape(e.model), f"{100 * e.clean_accuracy:.2f}%", cert,
                      f"{100 * e.robust_accuracy:.2f}%", escape(", ".join(e.attacks)), str(e.n),
                      f"[{style}]{escape(diag)}[/]", e.run_id)
        out.append(t)
    return out


def render_leaderboard(groups: list[Group], unfinished: int, store_name: str) -> str:
    """The leaderboard page as HTML text."""
    ctx = {
        "css": _template_source("base.css"),
        "store": store_name,
        "groups": [{"data": g.data, "threat": g.threat,
                    "plot": plots.leaderboard_bars([f"{e.rank}. {e.model}" for e in g.entries],
                                                   [e.clean_accuracy for e in g.entries],
                                                   [e.robust_accuracy for e in g.entries]),
                    "tradeoff": plots.tradeoff([f"{e.rank}. {e.model}" for e in g.entries],
                                               [e.clean_accuracy for e in g.entries],
                                               [e.robust_accuracy for e in g.entries]),
                    "entries": [{**e.__dict__, "diag": _diag_text(e)} for e in g.entries]} for g in groups],
        "unfinished": unfinished,
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    return environment().get_template("leaderboard.html.j2").render(**ctx)


def write_leaderboard(store: str | Path, out: str | Path) -> Path:
    """Write the HTML leaderboard of ``store`` to ``out``; returns its path."""
    out = Path(out)
    if not out.parent.exists():
        raise ValueError(f"out: folder {str(out.parent)!r} does not exist")
    groups, unfinished = leaderboard(store)
    return write_page(out, render_leaderboard(groups, unfinished, Path(store).name))


__all__ = ["leaderboard", "rich_tables", "render_leaderboard", "write_leaderboard", "Group", "Entry"]
