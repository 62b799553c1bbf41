"""The HTML report of one stored run: a single self-contained page (jinja2 template, CSS inline,
matplotlib plots embedded as base64 PNG), readable offline and safe to mail around.

    path = write_report("runs.db", "3f2a9c", "report.html")

Everything that comes from a user (model names, data descriptions, attack names, config
values) goes through jinja2's autoescaping.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, FunctionLoader, StrictUndefined

from robustlab.evaluation.config import EvalConfig, dumps_config
from robustlab.evaluation.diagnostics import Diagnostic
from robustlab.evaluation.store import RunInfo, Store
from robustlab.report import plots
from robustlab.threats import parse_threat


def _template_source(name: str) -> str:
    return (files("robustlab.report") / "templates" / name).read_text(encoding="utf-8")


def environment() -> Environment:
    """The jinja2 environment of robustlab's pages: autoescape on for every template."""
    return Environment(loader=FunctionLoader(_template_source), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def _pct(v: Any) -> str:
    return f"{100 * float(v):.2f}%" if v is not None else "-"


def data_label(info: RunInfo) -> str:
    d = info.data
    if d.get("env"):  # a policy run: episodes of an environment
        return f"{d['env']}, {d.get('episodes', info.n)} episode(s) from seed {d.get('seed', 0)}"
    name, split = d.get("name"), d.get("split")
    if name is None:
        return f"{info.n} points (data sha256 {str(d.get('sha256', '?'))[:12]})"
    start = int(d.get("start", 0) or 0)
    return f"{name}/{split or '?'}[{start}:{start + info.n}]"


def model_label(info: RunInfo) -> str:
    """The model's name; for a builder file, its file name and the weights' hash (two runs of one
    file with other weights are other models)."""
    name = info.data.get("model") or (info.config or {}).get("model")
    if not name:
        return f"model {info.model_hash[:12]}"
    name = str(name)
    if name.endswith(".py"):
        return f"{Path(name).name} (weights {info.model_hash[:10]})"
    return name


@dataclass
class RunData:
    """A stored run read back: its row, per-sample outcomes and diagnostics."""

    info: RunInfo
    label: np.ndarray
    clean_correct: np.ndarray
    robust: np.ndarray
    broken_by: np.ndarray
    distance: np.ndarray
    diagnostics: list[Diagnostic]
    certified: np.ndarray | None = None

    @property
    def threat(self) -> object | None:
        """The run's threat, parsed back from its spec (None when this robustlab cannot parse it)."""
        try:
            return parse_threat(self.info.threat)
        except ValueError:
            return None

    @property
    def eps(self) -> float | None:
        """The threat's radius where it has one number (an Lp ball); None otherwise."""
        e = getattr(self.threat, "eps", None)
        return float(e) if isinstance(e, (int, float)) else None

    @property
    def norm(self) -> str:
        return str(getattr(self.threat, "norm", None) or self.info.threat.split(":", 1)[0])


def load_run(store: str | Path, run: str) -> RunData:
    """Read run ``run`` (id or unique prefix) from a store. ValueError if missing."""
    p = Path(store)
    if not p.is_file():
        raise ValueError(f"store: no such file {str(p)!r}")
    with Store(p, readonly=True) as db:
        info = db.run(run)
        rows = db.outcomes(info.run_id)
        certs = db.certificates(info.run_id)
        diags = [Diagnostic.from_dict(d) for d in db.diagnostics(info.run_id)]
    arr = np.array([(r[1], r[2], r[3], r[4], np.nan if r[5] is None else r[5]) for r in rows],
                   dtype=float).reshape(-1, 5)
    certified = None
    if certs:
        certified = np.zeros(len(rows), dtype=bool)
        pos = {int(r[0]): i for i, r in enumerate(rows)}
        for idx, _, ok, *_ in certs:
            if int(idx) in pos:
                certified[pos[int(idx)]] |= bool(ok)
    return RunData(info, arr[:, 0].astype(int), arr[:, 1].astype(bool), arr[:, 2].astype(bool),
                   arr[:, 3].astype(int), arr[:, 4], diags, certified)


def config_text(info: RunInfo) -> tuple[str, str]:
    """(TOML text, a note) that reproduce the run: the CLI's config when the run came from the
    CLI, else the library call's settings."""
    cfg = info.data.get("config")
    if isinstance(cfg, dict):
        try:
            text = dumps_config(EvalConfig(**cfg))
            return text, "The config this run was made with (written next to the store by the CLI). Rerun it with: robustlab evaluate --config FILE"
        except (TypeError, ValueError):
            pass
    text = json.dumps({"run": info.config, "data": {k: v for k, v in info.data.items() if k != "config"},
                       "model_sha256": info.model_hash, "code_version": info.code_version}, indent=2, sort_keys=True)
    return text, ("This run was made through the Python API; these are its settings (pass the same model, "
                  "points, threat, attacks, batch_size and seed to robustlab.evaluate).")


def render_report(run: RunData, sections: str = "") -> str:
    """The report page of a run, as HTML text; ``sections``: extra HTML (``report.sections``)."""
    info = run.info
    s = info.summary or {}
    k_attacks = len(info.attacks)
    attacks = []
    if s.get("attacks"):
        attacks = [dict(a) for a in s["attacks"]]
    else:  # an unfinished run: what the stored points say
        remaining = int(run.clean_correct.sum())
        for j, name in enumerate(info.attacks):
            b = int((run.broken_by == j).sum())
            remaining -= b
            attacks.append({"name": name, "robust_accuracy": remaining / max(len(run.label), 1), "broken": b,
                            "attacked": 0, "forward_calls": 0, "backward_calls": 0, "seconds": 0.0})
    n_pts = max(len(run.label), 1)
    clean = s.get("clean_accuracy", float(run.clean_correct.sum()) / n_pts)
    robust = s.get("robust_accuracy", float(run.robust.sum()) / n_pts)

    sweep = next((d.details.get("curve") for d in run.diagnostics if d.name == "accuracy_vs_eps"), None)
    eps = run.eps
    plot_list = []
    eps_rows: list[tuple[float, float]] = []
    if eps is not None:  # a curve over the radius needs a threat with one radius
        curve = plots.distance_curve(run.clean_correct, run.robust, run.distance, eps) if len(run.label) else None
        if curve and eps > 0:
            eps_rows = plots.distance_curve(run.clean_correct, run.robust, run.distance, eps, points=13)[1:]
        plot_list.append(
            {"title": "Robust accuracy vs eps", "png": plots.accuracy_vs_eps(eps, run.norm, robust, sweep, curve),
             "caption": "Robust accuracy against eps: the curve implied by the distances of the adversarial examples "
                        "found at the evaluated eps (an upper bound below it), the diagnostics' PGD sweep on a "
                        "subsample (up to the whole input range), and this evaluation's figure."})
    plot_list += [
        {"title": "Per-attack breakdown",
         "png": plots.attack_breakdown(info.attacks, [int((run.broken_by == j).sum()) for j in range(k_attacks)],
                                       int(run.robust.sum()), int((run.broken_by == -2).sum())),
         "caption": "Where each point ended: misclassified without attack, broken first by an attack, or robust."},
        {"title": "Adversarial distances",
         "png": plots.distance_histograms({name: run.distance[run.broken_by == j] for j, name in enumerate(info.attacks)},
                                          eps if eps is not None else float(np.nanmax(run.distance, initial=0.0)),
                                          run.norm),
         "caption": f"Distance ({run.norm}) of each adversarial example, by the attack that found it."},
    ]
    text, note = config_text(info)
    kinds = [a.get("type") for a in (info.config or {}).get("attacks", []) if isinstance(a, dict)]
    audit = next((d for d in run.diagnostics if d.name == "fast_audit"), None)
    fast_note = None
    if "FastEval" in kinds:
        fast_note = ("fast evaluation: AutoAttack-strength attacks on an adaptive budget (attacks/fast.py); "
                     "self-audit: " + (f"{audit.status}: {audit.explanation}" if audit is not None
                                       else "not run (diagnostics off)"))
    ctx = {
        "css": _template_source("base.css"),
        "run": {"model": model_label(info), "data_label": data_label(info), "threat": info.threat,
                "attacks": info.attacks, "run_id": info.run_id, "status": info.status,
                "created": datetime.datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M"),
                "clean": _pct(clean), "robust": _pct(robust), "n": info.n, "points_done": info.points_done,
                "certified": None if run.certified is None else _pct(s.get("certified_accuracy",
                                                                       float(run.certified.sum()) / n_pts)),
                "kind": info.kind, "error": info.error, "fast_note": fast_note,
                "model_hash": info.model_hash[:16], "data_sha": str(info.data.get("sha256", ""))[:16]},
        "diagnostics": run.diagnostics,
        "n_warn": sum(d.status == "warn" for d in run.diagnostics),
        "plots": plot_list,
        "eps_rows": eps_rows,
        "norm": run.norm,
        "attacks": attacks,
        "sections": sections,
        "config_text": text,
        "config_note": note,
        "version": info.code_version,
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }
    return environment().get_template("report.html.j2").render(**ctx)


def write_report(store: str | Path, run: str, out: str | Path) -> Path:
    """Render run ``run`` of ``store`` to the HTML file ``out``; returns its path."""
    out = Path(out)
    if not out.parent.exists():
        raise ValueError(f"out: folder {str(out.parent)!r} does not exist")
    from robustlab.report.sections import all_sections

    data = load_run(store, run)
    return write_page(out, render_report(data, all_sections(data, store)))


def write_page(out: Path, page: str) -> Path:
    """Write ``page`` to ``out`` atomically (a temporary file, then a rename); a ValueError
    naming ``out`` when the folder is missing or not writable."""
    if not out.parent.exists():
        raise ValueError(f"out: folder {str(out.parent)!r} does not exist")
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
    except OSError as e:
        raise ValueError(f"out: cannot write {str(out)!r} ({e.strerror or e})") from None
    return out


__all__ = ["load_run", "render_report", "write_report", "write_page", "environment", "RunData", "data_label", "model_label"]
