"""The report's sections that depend on what a run holds: a gallery of adversarial images, the
changed sentences of a text run, listenable clips of an audio run, certified accuracy against
the radius, the naive vs adaptive blocks of a defended model, training curves, policy episodes.

Each builder takes the stored run (``html.RunData``) and the store, and returns an HTML string
(empty when it does not apply). Originals are reloaded from the run's data description when it
names a dataset robustlab can load; adversarial inputs come from the store's ``examples``.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from robustlab.evaluation.store import Store


def _originals(info: Any, idx: list[int]) -> Any | None:
    """The clean inputs at run positions ``idx`` (a tensor or a list of str), or None."""
    import robustlab as rl

    d = info.data
    name = d.get("name")
    if not isinstance(name, str):
        return None
    try:
        x, _ = rl.data.load(name, split=d.get("split") or "test", n=info.n, start=int(d.get("start") or 0))
    except (ValueError, TypeError, OSError):
        return None
    return [x[i] for i in idx] if isinstance(x, list) else x[idx]


def _examples(db: Store, run_id: str) -> list[tuple[int, int, int, Any]]:
    """(idx, attack, adv_pred, x_adv) of the stored examples (x_adv a tensor or a string)."""
    from safetensors.torch import load

    out = []
    for idx, attack, pred, payload in db.examples(run_id):
        try:
            value = load(bytes(payload))["x"]
        except Exception:  # noqa: BLE001 - text examples are JSON strings
            value = json.loads(bytes(payload).decode("utf-8"))
        out.append((int(idx), int(attack), int(pred) if pred is not None else -1, value))
    return out


def _png(fig: Any) -> str:
    from robustlab.report.plots import png

    return png(fig, dpi=96)


def gallery(run: Any, db: Store, limit: int = 8) -> str:
    """Images: clean | perturbation (amplified to the full range) | adversarial, with the true
    and adversarial labels and the attack that broke the point."""
    ex = [e for e in _examples(db, run.info.run_id) if hasattr(e[3], "dim") and e[3].dim() == 3
          and e[3].shape[0] in (1, 3) and e[3].shape[1] > 1][:limit]
    if not ex:
        return ""
    x = _originals(run.info, [e[0] for e in ex])
    if x is None or not hasattr(x, "shape") or tuple(x.shape[1:]) != tuple(ex[0][3].shape):
        return ""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.0 * len(ex), 6.3))
    for k, (idx, attack, pred, xa) in enumerate(ex):
        clean, adv = x[k].float(), xa.float()
        delta = adv - clean
        amp = 0.5 + 0.5 * delta / max(float(delta.abs().max()), 1e-12)
        for row, (img, title) in enumerate(((clean, f"#{idx} true {int(run.label[idx])}"),
                                            (amp, "perturbation (x{:.0f})".format(0.5 / max(float(delta.abs().max()), 1e-12))),
                                            (adv, f"pred {pred}\n{run.info.attacks[attack]}"))):
            ax = fig.add_subplot(3, len(ex), row * len(ex) + k + 1)
            arr = img.permute(1, 2, 0).numpy()
            ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap="gray" if arr.shape[2] == 1 else None,
                      vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    return (f'<section id="gallery"><h2>Adversarial examples</h2><figure><img class="plot wide" alt="gallery" '
            f'src="data:image/png;base64,{_png(fig)}"><figcaption>Clean input, perturbation amplified to the full '
            "range (grey = no change), adversarial input with the deployed model's prediction and the attack that "
            "found it.</figcaption></figure></section>")


def per_class(run: Any, db: Store) -> str:
    """Robust accuracy per class, and the confusion of the adversarial predictions."""
    rows = db.outcomes(run.info.run_id, with_prediction=True)
    if not rows:
        return ""
    labels = np.array([r[1] for r in rows])
    robust = np.array([bool(r[3]) for r in rows])
    clean = np.array([bool(r[2]) for r in rows])
    pred = np.array([-1 if r[6] is None else int(r[6]) for r in rows])
    classes = sorted(set(labels.tolist()))
    body = "".join(
        f"<tr><td>{c}</td><td class='num'>{int((labels == c).sum())}</td>"
        f"<td class='num'>{100 * clean[labels == c].mean():.1f}%</td>"
        f"<td class='num'>{100 * robust[labels == c].mean():.1f}%</td>"
        f"<td>{html.escape(_top_confusions(pred[(labels == c) & ~robust & clean], c))}</td></tr>" for c in classes)
    return ("<section id='per-class'><h2>Per class</h2><table id='per-class-table'><tr><th>class</th><th>points</th>"
            "<th>clean</th><th>robust</th><th>broken into (adversarial predictions)</th></tr>"
            f"{body}</table></section>")


def _top_confusions(pred: np.ndarray, true: int) -> str:
    pred = pred[pred >= 0]
    if not pred.size:
        return "-"
    vals, counts = np.unique(pred, return_counts=True)
    order = np.argsort(-counts)[:3]
    return ", ".join(f"{int(vals[i])} ({int(counts[i])})" for i in order)


def text_examples(run: Any, db: Store) -> str:
    ex = [e for e in _examples(db, run.info.run_id) if isinstance(e[3], str)]
    if not ex:
        return ""
    originals = _originals(run.info, [e[0] for e in ex])
    if originals is None:
        return ""
    from robustlab.report.text_section import text_section

    return text_section(list(originals), [e[3] for e in ex], [int(run.label[e[0]]) for e in ex],
                        predictions=[e[2] for e in ex], distance=[float(run.distance[e[0]]) for e in ex])


def audio_examples(run: Any, db: Store) -> str:
    ex = [e for e in _examples(db, run.info.run_id) if hasattr(e[3], "dim") and e[3].dim() == 2]
    if not ex:
        return ""
    x = _originals(run.info, [e[0] for e in ex])
    if x is None or not hasattr(x, "shape"):
        return ""
    import torch

    from robustlab.report.audio_section import audio_section

    labels = None
    try:
        from robustlab.data.keywords import LABELS as labels  # type: ignore[no-redef]
    except ImportError:
        pass
    return audio_section(x, torch.stack([e[3] for e in ex]), labels=labels, y=[int(run.label[e[0]]) for e in ex],
                         pred=[e[2] for e in ex])


def certified_radius(run: Any, db: Store) -> str:
    """Certified accuracy against the radius, from the stored per-sample certified radii."""
    certs = db.certificates(run.info.run_id)
    if not certs:
        return ""
    best: dict[int, float] = {}
    for idx, _, ok, radius, _, pred in certs:
        r = float(radius or 0.0) if pred is not None and int(pred) == int(run.label[int(idx)]) else 0.0
        best[int(idx)] = max(best.get(int(idx), 0.0), r if ok or r > 0 else 0.0)
    radii = np.array([best.get(i, 0.0) for i in range(len(run.label))])
    top = float(radii.max()) if radii.size else 0.0
    if top <= 0:
        return ""
    from matplotlib.figure import Figure

    grid = np.linspace(0, top * 1.05, 60)
    fig = Figure(figsize=(6.0, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(grid, [100 * float((radii >= r).mean()) for r in grid], color="#1b5e9a")
    ax.set_xlabel("radius")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    return ("<section id='certified-radius'><h2>Certified accuracy vs radius</h2><figure><img class='plot' "
            f"alt='certified accuracy vs radius' src='data:image/png;base64,{_png(fig)}'><figcaption>Fraction of "
            "points whose prediction is correct and certified at least to each radius (from the certifiers' stored "
            "per-sample radii).</figcaption></figure></section>")


def _same_setup(a: dict, b: dict) -> bool:
    """Two runs' configs (view removed) describe the same evaluation, up to the attacks a defense
    adds for itself to the adaptive run (``adaptive_attacks``: appended after the preset's)."""
    a, b = dict(a), dict(b)
    xa, xb = a.pop("attacks", []), b.pop("attacks", [])
    short, long = sorted((xa, xb), key=len)
    return a == b and long[: len(short)] == short


def defense_pair(run: Any, db: Store) -> str:
    """The naive and adaptive blocks side by side, when the store holds both runs of a defense."""
    cfg = dict(run.info.config)
    view = cfg.pop("view", "adaptive")
    twin = None
    for other in db.runs():
        oc = dict(other.config)
        ov = oc.pop("view", "adaptive")
        if other.run_id != run.info.run_id and ov != view and _same_setup(cfg, oc) \
                and other.model_hash == run.info.model_hash \
                and other.data.get("sha256") == run.info.data.get("sha256") and other.summary:
            twin = other
    if twin is None or not run.info.summary:
        return ""
    from robustlab.report.defense_section import render_defense_section

    naive, adaptive = (twin, run.info) if view == "adaptive" else (run.info, twin)
    return render_defense_section(_as_report(naive), _as_report(adaptive), defense=cfg.get("model_spec"))


def _as_report(info: Any) -> Any:
    import torch

    from robustlab.results import AttackSummary, EvalReport

    s = info.summary or {}
    empty = torch.zeros(0)
    return EvalReport(n=info.n, threat=info.threat, clean_accuracy=float(s.get("clean_accuracy", 0.0)),
                      robust_accuracy=float(s.get("robust_accuracy", 0.0)),
                      attacks=[AttackSummary(**a) for a in s.get("attacks", [])], clean_correct=empty, robust=empty,
                      broken_by=empty, distance=empty, forward_calls=int(s.get("forward_calls", 0)),
                      backward_calls=int(s.get("backward_calls", 0)), seconds=0.0, run_id=info.run_id)


def training(run: Any, db: Store) -> str:
    """Per-epoch figures of a training run: the curves and the table."""
    if run.info.kind != "training":
        return ""
    rows = db.metrics(run.info.run_id)
    if not rows:
        return ""
    from robustlab.defenses.training.curves import training_curves

    keys = sorted({k for _, m in rows for k, v in m.items() if isinstance(v, (int, float))})
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr><td>" + str(step) + "</td>" + "".join(
        f"<td class='num'>{m[k]:.4g}</td>" if isinstance(m.get(k), (int, float)) else "<td></td>" for k in keys)
        + "</tr>" for step, m in rows)
    return (f"<section id='training'><h2>Training</h2><figure><img class='plot' alt='training curves' "
            f"src='data:image/png;base64,{training_curves(rows)}'></figure><table><tr><th>epoch</th>{head}</tr>"
            f"{body}</table></section>")


def episodes(run: Any, db: Store) -> str:
    """Per-episode returns of a policy run (the metrics rows)."""
    if run.info.kind != "policy":
        return ""
    rows = db.metrics(run.info.run_id)
    if not rows:
        return ""
    keys = sorted({k for _, m in rows for k in m if k.endswith(".returns")})
    head = "".join(f"<th>{html.escape(k.removesuffix('.returns'))}</th>" for k in keys)
    mean = "".join(f"<td class='num'><b>{np.mean([float(m.get(k, np.nan)) for _, m in rows]):.1f}</b></td>" for k in keys)
    body = "".join("<tr><td>" + str(step) + "</td>" + "".join(
        f"<td class='num'>{float(m.get(k, np.nan)):.0f}</td>" for k in keys) + "</tr>" for step, m in rows[:50])
    return (f"<section id='episodes'><h2>Return per episode</h2><table><tr><th>episode</th>{head}</tr>"
            f"<tr><td>mean</td>{mean}</tr>{body}</table></section>")


def tradeoff(run: Any, db: Store) -> str:
    """Clean vs robust accuracy of every finished evaluation in the store on the same points
    under the same threat, this run starred."""
    from robustlab.report import plots
    from robustlab.report.html import model_label

    info = run.info
    sha = info.data.get("sha256")
    peers = [r for r in db.runs() if r.kind == "evaluation" and r.status == "done" and r.summary
             and r.threat == info.threat and r.data.get("sha256") == sha and "clean_accuracy" in r.summary]
    if not any(r.run_id == info.run_id for r in peers):
        return ""
    labels = [f"{model_label(r)} ({', '.join(r.attacks)[:24]})" for r in peers]
    png = plots.tradeoff(labels, [r.summary["clean_accuracy"] for r in peers],
                         [r.summary["robust_accuracy"] for r in peers],
                         highlight=[r.run_id for r in peers].index(info.run_id),
                         title=f"Clean vs robust accuracy, {info.threat}, {len(peers)} run(s) of this store")
    note = ("" if len(peers) > 1 else " Only this run so far: evaluate other models (or defenses) on the same "
            "points into this store to fill the plot.")
    return (f"<section id='tradeoff'><h2>Trade-off across the store</h2><p>Every finished evaluation in this store on the "
            f"same points under the same threat; this run is the star.{html.escape(note)}</p>"
            f"<img class='plot tradeoff' alt='clean vs robust accuracy across runs' src='data:image/png;base64,{png}'></section>")


def policy_curves(run: Any, db: Store) -> str:
    """A policy run: mean return against eps for each attack beside same-budget noise (from the
    stored episodes: eps 0 is the clean return), and the frames of one clean episode above the
    same episode under the strongest attack (the policy reloaded from the zoo, replayed)."""
    if run.info.kind != "policy":
        return ""
    rows = db.metrics(run.info.run_id)
    if not rows:
        return ""
    from robustlab.report.policy_section import episode_strip, policy_section
    from robustlab.threats import parse_threat

    cfg = run.info.config
    names = sorted({k.removesuffix(".returns") for _, m in rows for k in m if k.endswith(".returns")})
    means = {nm: float(np.mean([float(m[f"{nm}.returns"]) for _, m in rows if f"{nm}.returns" in m])) for nm in names}
    ball = parse_threat(cfg.get("threat", run.info.threat))
    eps = float(getattr(ball, "eps", 0.0))
    model = str(cfg.get("model", "policy"))
    attacks = [nm for nm in names if nm != "clean"]
    curves = {model: {nm: {0.0: means.get("clean", float("nan")), eps: means[nm]} for nm in attacks}}
    strip, caption = None, ""
    worst = min((nm for nm in attacks if not nm.startswith("noise")), key=lambda nm: means[nm], default=None)
    if worst is not None:
        try:
            import robustlab as rl
            from robustlab.attacks.policy import parse_policy_attack
            from robustlab.threats.obs import StateBall

            import os

            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames off-screen, no display probing
            os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
            bound = StateBall(eps, scale=tuple(cfg["scale"])) if cfg.get("scale") else ball
            strip = episode_strip(rl.models.load(model), cfg["env"], int(cfg.get("seed", 0)), bound,
                                  parse_policy_attack(worst))
            caption = f"Episode {int(cfg.get('seed', 0))} of {cfg['env']}, clean (top) and under {worst} (bottom)."
        except Exception:  # noqa: BLE001 - a builder-file policy or no renderer: the curves still show
            strip = None
    note = (f"Mean return over {len(rows)} episode(s) at eps 0 (clean) and the evaluated eps {eps:g} (state-scaled); "
            "`python benchmarks/rl.py curves` sweeps eps.")
    return policy_section(curves, {model: means.get("clean", float("nan"))}, strip, caption, notes=[note])


def all_sections(run: Any, store: str | Path) -> str:
    """Every section that applies to ``run``, in reading order."""
    with Store(store, readonly=True) as db:
        parts = [training(run, db), policy_curves(run, db), episodes(run, db), certified_radius(run, db),
                 defense_pair(run, db)]
        if run.info.kind == "evaluation" and run.info.n:
            parts += [gallery(run, db), text_examples(run, db), audio_examples(run, db), per_class(run, db),
                      tradeoff(run, db)]
    return "\n".join(p for p in parts if p)


__all__ = ["all_sections", "tradeoff", "policy_curves", "gallery", "per_class", "text_examples", "audio_examples", "certified_radius",
           "defense_pair", "training", "episodes"]
