"""Curves of a training run over epochs, for the HTML report of a ``training`` run.

    rows = store.metrics(run_id)            # [(epoch, {"clean_acc": ..., "pgd_acc": ...}), ...]
    png_b64 = training_curves(rows)         # <img src="data:image/png;base64,{png_b64}">
"""
from __future__ import annotations

import base64
import io
from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SERIES = (("clean_acc", "clean", "#1f77b4"), ("pgd_acc", "PGD-10", "#d62728"), ("fgsm_acc", "FGSM", "#ff7f0e"))


def training_curves(rows: Sequence[tuple[int, dict[str, Any]]]) -> str:
    """A PNG (base64) of held-out clean / PGD-10 / FGSM accuracy (left axis, %) and the training
    loss (right axis) per epoch; epochs with a monitor flag are marked with a dashed line."""
    if not rows:
        raise ValueError("rows: a training run with no finished epoch has no curves")
    fig = Figure(figsize=(6.0, 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    epochs = [int(e) for e, _ in rows]
    for key, label, color in SERIES:
        pts = [(e, 100 * m[key]) for e, m in rows if m.get(key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=color, label=label)
    for e, m in rows:
        if m.get("flags"):
            ax.axvline(e, color="#555555", linestyle="--", linewidth=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(epochs)
    ax2 = ax.twinx()
    ax2.plot(epochs, [m["loss"] for _, m in rows], color="#2ca02c", linestyle=":", label="train loss")
    ax2.set_ylabel("training loss")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")
