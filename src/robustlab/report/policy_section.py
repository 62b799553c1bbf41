"""The report's section for a policy: return vs eps for each attack against same-budget noise,
and a strip of frames of one clean episode above the same episode under attack.

    html = policy_section(curves, strip=episode_strip(policy, "CartPole-v1", 0, ball, ObsPGD()))

Figures are PNG (matplotlib Agg, no display), base64-embedded, so the fragment is
self-contained. Frames come from gymnasium's ``render_mode="rgb_array"`` (needs pygame).
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from robustlab.attacks.policy import ObsAttack
from robustlab.envs import GymBatch
from robustlab.evaluation.episodes import rollout
from robustlab.report.plots import COLORS as _COLORS, png
from robustlab.threats.obs import StateBall


def _png(fig: Figure) -> str:
    return png(fig, dpi=100)


def return_curves(curves: Mapping[str, Mapping[float, float]], clean: float | None = None, title: str = "") -> str:
    """PNG (base64) of mean return vs state-scaled eps, one line per setting.

    Args:
        curves: {setting name: {eps: mean return}}; a setting named "noise" is drawn dashed grey.
        clean: the clean mean return (a horizontal line).
    """
    if not curves:
        raise ValueError("curves: expected at least one setting")
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, pts) in enumerate(curves.items()):
        eps = sorted(pts)
        style = dict(color="grey", linestyle="--") if name.startswith("noise") else dict(color=_COLORS[i % len(_COLORS)])
        ax.plot(eps, [pts[e] for e in eps], marker="o", markersize=3, label=name, **style)
    if clean is not None:
        ax.axhline(clean, color="black", linewidth=0.8, linestyle=":", label="clean")
    ax.set_xlabel("eps (state std per dimension)")
    ax.set_ylabel("mean return")
    values = [v for pts in curves.values() for v in pts.values()] + ([clean] if clean is not None else [])
    if min(values) >= 0:  # CartPole: returns from 0; Acrobot-v1's are negative, let matplotlib scale them
        ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def episode_strip(policy: nn.Module, env_id: str, seed: int, ball: StateBall, attack: ObsAttack,
                  frames: int = 8, stream: int = 0) -> tuple[str, int, int]:
    """PNG (base64) of two rows of frames, the clean episode ``seed`` above the same episode with
    every observation attacked, each row at evenly spaced steps of its own episode (first and
    last frame included). Returns (png, clean steps, attacked steps).

    The actions are taken from the batched rollout and replayed in gymnasium with rendering:
    the replay retraces the same states (the batched dynamics are bit-exact).
    """
    rows, lengths = [], []
    for a in (None, attack):
        _, actions = rollout(policy, env_id, [seed], ball, a, stream=stream, record=True)
        env = GymBatch(env_id, render_mode="rgb_array")
        env.reset([seed])
        shots = [env.render(0)]
        for act in actions[0]:
            env.step(np.array([act]))
            shots.append(env.render(0))
        env.close()
        rows.append(shots)
        lengths.append(len(actions[0]))
    fig = Figure(figsize=(1.6 * frames, 2.6))
    for r, (shots, label) in enumerate(zip(rows, ("clean", f"under {attack.name}, {ball.spec()}"))):
        # each row spans its own episode, so a short attacked episode is shown step by step
        at = np.linspace(0, len(shots) - 1, frames).round().astype(int)
        for c, t in enumerate(at):
            ax = fig.add_subplot(2, frames, r * frames + c + 1)
            ax.imshow(shots[t])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t={t}" + (" (end)" if t == len(shots) - 1 else ""), fontsize=7)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    return _png(fig), lengths[0], lengths[1]


def policy_section(curves: Mapping[str, Mapping[str, Mapping[float, float]]], clean: Mapping[str, float] | None = None,
                   strip: tuple[str, int, int] | None = None, strip_caption: str = "",
                   notes: Sequence[str] = ()) -> str:
    """The HTML fragment: one return-vs-eps figure per policy and the episode strip.

    Args:
        curves: {policy name: {setting: {eps: mean return}}}.
        clean: {policy name: clean mean return}.
        strip: ``episode_strip``'s result.
    """
    parts = ['<section class="policy">', "<h2>Policy under observation attacks</h2>"]
    for note in notes:
        parts.append(f"<p>{html.escape(note)}</p>")
    for name, per in curves.items():
        png = return_curves(per, (clean or {}).get(name), title=name)
        parts.append(f'<figure><img alt="return vs eps, {html.escape(name)}" src="data:image/png;base64,{png}">'
                     f"<figcaption>{html.escape(name)}: mean return vs eps, each attack against same-budget "
                     "noise</figcaption></figure>")
    if strip is not None:
        png, n_clean, n_adv = strip
        parts.append(f'<figure><img alt="episode strip" src="data:image/png;base64,{png}"><figcaption>'
                     f"{html.escape(strip_caption)} clean episode: {n_clean} steps; attacked: {n_adv} steps"
                     "</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)
