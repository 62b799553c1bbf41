"""Plots of an evaluation as PNG bytes, base64-encoded for embedding in a self-contained page.

Matplotlib's object API with the Agg canvas only: no pyplot global state, no display needed.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
_COLORS = COLORS


def png(fig: Figure, dpi: int = 110) -> str:
    """The figure as base64 PNG (Agg canvas, tight box), for a ``data:image/png;base64,`` URL."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


_png = png


def distance_curve(clean_correct: np.ndarray, robust: np.ndarray, distance: np.ndarray, eps: float,
                   points: int = 60) -> list[tuple[float, float]]:
    """Robust accuracy at radii 0..eps implied by the adversarial points found at ``eps``: a
    point broken at distance d counts as broken for every radius >= d. An upper bound below
    eps (smaller radii were not attacked on their own)."""
    n = max(len(clean_correct), 1)
    broken = clean_correct.astype(bool) & ~robust.astype(bool)
    d = np.where(broken, np.nan_to_num(distance, nan=0.0), np.inf)
    grid = np.linspace(0.0, eps, points) if eps > 0 else np.array([0.0])
    return [(float(e), float((clean_correct.astype(bool) & ~(d <= e + 1e-5)).sum() / n)) for e in grid]


def accuracy_vs_eps(threat_eps: float, norm: str, robust_accuracy: float,
                    sweep: Sequence[Sequence[float]] | None,
                    from_distances: Sequence[tuple[float, float]] | None,
                    sweep_label: str = "PGD sweep (diagnostics subsample)") -> str:
    """Robust accuracy against eps: the diagnostics' sweep, the curve implied by stored
    distances, and the evaluation's own figure at its eps."""
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    if from_distances:
        e, a = zip(*from_distances)
        ax.plot(e, [100 * v for v in a], color=_COLORS[0], lw=2, label="from found adversarial distances (upper bound)")
    if sweep:
        e, a = zip(*[(float(p[0]), float(p[1])) for p in sweep])
        ax.plot(e, [100 * v for v in a], "o--", color=_COLORS[2], label=sweep_label)
    ax.plot([threat_eps], [100 * robust_accuracy], "*", ms=16, color=_COLORS[1], label="this evaluation")
    ax.axvline(threat_eps, color="#999", lw=0.8, ls=":")
    ax.set_xlabel(f"eps ({norm})")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-3, 103)
    if sweep and max(float(p[0]) for p in sweep) > 4 * max(threat_eps, 1e-12):
        ax.set_xscale("symlog", linthresh=max(threat_eps / 4, 1e-6))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax.set_title("Robust accuracy vs eps")
    return _png(fig)


def attack_breakdown(names: Sequence[str], broken: Sequence[int], robust: int, clean_wrong: int) -> str:
    """Where every evaluated point ended: misclassified clean, broken by each attack (first
    to break it), or still robust."""
    labels = ["misclassified clean", *[f"broken by {s}" for s in names], "robust"]
    values = [clean_wrong, *broken, robust]
    colors = ["#7f7f7f", *[_COLORS[(i + 1) % len(_COLORS)] for i in range(len(names))], "#2ca02c"]
    fig = Figure(figsize=(6.4, 0.6 + 0.42 * len(labels)))
    ax = fig.add_subplot(1, 1, 1)
    ypos = np.arange(len(labels))[::-1]
    ax.barh(ypos, values, color=colors)
    total = max(sum(values), 1)
    for yp, v in zip(ypos, values):
        ax.text(v, yp, f" {v} ({100 * v / total:.1f}%)", va="center", fontsize=8)
    ax.set_yticks(ypos, labels, fontsize=8)
    ax.set_xlabel("points")
    ax.set_xlim(0, total * 1.25)
    ax.set_title("Per-attack breakdown")
    return _png(fig)


def distance_histograms(per_attack: dict[str, np.ndarray], eps: float, norm: str) -> str:
    """Histogram of the adversarial distance of the points each attack broke."""
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    hi = eps if eps > 0 else 1.0
    bins = np.linspace(0, hi * 1.0001, 31)
    for i, (name, d) in enumerate(per_attack.items()):
        d = d[np.isfinite(d)]
        if d.size:
            ax.hist(d, bins=bins, alpha=0.6, color=_COLORS[(i + 1) % len(_COLORS)], label=f"{name} ({d.size})")
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no point was broken", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8)
    ax.axvline(eps, color="#999", lw=0.8, ls=":")
    ax.set_xlabel(f"{norm} distance of the adversarial example")
    ax.set_ylabel("points")
    ax.set_title("Adversarial distances")
    return _png(fig)


def leaderboard_bars(labels: Sequence[str], clean: Sequence[float], robust: Sequence[float]) -> str:
    """Clean and robust accuracy of ranked runs, side by side."""
    k = len(labels)
    fig = Figure(figsize=(6.4, 0.8 + 0.45 * max(k, 1)))
    ax = fig.add_subplot(1, 1, 1)
    ypos = np.arange(k)[::-1]
    bc = ax.barh(ypos + 0.2, [100 * c for c in clean], height=0.38, color="#aec7e8", label="clean")
    br = ax.barh(ypos - 0.2, [100 * r for r in robust], height=0.38, color=_COLORS[0], label="robust")
    for bars in (bc, br):  # every value labelled, so a 0% bar does not vanish
        ax.bar_label(bars, labels=[f"{b.get_width():.1f}%" for b in bars], fontsize=7, padding=2)
    ax.set_yticks(ypos, labels, fontsize=8)
    ax.set_xlim(0, 118)
    ax.set_xlabel("accuracy (%)")
    # Above the axes: the legend never covers a bar.
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return _png(fig)


def tradeoff(labels: Sequence[str], clean: Sequence[float], robust: Sequence[float],
             highlight: int | None = None, title: str = "Clean vs robust accuracy") -> str:
    """Clean against robust accuracy, one labelled point per run (the trade-off every defense
    paper draws); ``highlight``: the index of the run the page is about."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    cx, rx = [100 * c for c in clean], [100 * r for r in robust]
    for i, (c, r, name) in enumerate(zip(cx, rx, labels)):
        this = i == highlight
        ax.scatter([r], [c], s=90 if this else 40, color=_COLORS[1] if this else _COLORS[0], zorder=3,
                   edgecolor="black" if this else "none", marker="*" if this else "o")
        ax.annotate(name, (r, c), textcoords="offset points", xytext=(5, 4), fontsize=7)
    lo_c = min(cx + [90.0]) - 2
    ax.set_xlim(-2, 104)
    ax.set_ylim(lo_c, 101)
    ax.set_xlabel("robust accuracy (%)")
    ax.set_ylabel("clean accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return _png(fig)


__all__ = ["tradeoff", "accuracy_vs_eps", "attack_breakdown", "distance_histograms", "distance_curve", "leaderboard_bars"]
