"""The audio part of an evaluation report: success against the dB budget, and clips to listen to.

    html = audio_section(x, x_adv, labels=("yes", ...), y=y, pred=pred, curve={"PGD": [(-40, .3), ...]})

Returns an HTML fragment (a string) for the report page: a success-rate-vs-dB plot and, per
example, three ``<audio controls>`` players (clean, adversarial, and the perturbation amplified
to the clean clip's peak so it can be heard), each beside its waveform and spectrogram. Clips are
embedded as base64 16-bit PCM WAV data URLs, so the page stays self-contained. Inputs follow the
audio convention: x in [0, 1] of shape (N, 1, T) or (N, T) holding the waveform w = 2x - 1.

Matplotlib's object API with the Agg canvas only, like ``report.plots``.
"""
from __future__ import annotations

import base64
import html
import io
import wave
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from robustlab.report.plots import COLORS as _COLORS, png


def _waveform(x: object, name: str) -> np.ndarray:
    """(N, T) float64 waveform in [-1, 1] from x in [0, 1] shaped (N, 1, T) or (N, T)."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)  # type: ignore[attr-defined]
    if a.ndim == 3 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected audio shaped (N, 1, T) or (N, T), got {a.shape}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{name}: expected finite values in [0, 1]")
    return 2.0 * a - 1.0


def wav_bytes(w: np.ndarray, rate: int) -> bytes:
    """A mono 16-bit PCM WAV file of waveform ``w`` (T,) in [-1, 1] at ``rate`` Hz."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"w: expected a 1-D waveform, got shape {w.shape}")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"rate: expected a positive int (Hz), got {rate!r}")
    pcm = np.round(np.clip(w, -1.0, 1.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return buf.getvalue()


def wav_data_url(w: np.ndarray, rate: int) -> str:
    """``data:audio/wav;base64,...`` for an ``<audio src>``."""
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(w, rate)).decode("ascii")


def _png(fig: Figure) -> str:
    return png(fig, dpi=90)


def success_vs_db(curve: Mapping[str, Sequence[tuple[float, float]]], title: str = "Attack success vs budget") -> str:
    """base64 PNG: success rate (%) against the budget in dB (relative to each clip's peak), one
    line per attack. ``curve`` maps an attack's name to (dB, success in [0, 1]) pairs."""
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, pts) in enumerate(curve.items()):
        pts = sorted((float(d), float(s)) for d, s in pts)
        if pts:
            ax.plot([d for d, _ in pts], [100 * s for _, s in pts], "o-", color=_COLORS[i % len(_COLORS)], label=name)
    ax.set_xlabel("perturbation peak relative to the clip's peak (dB)")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    if curve:
        ax.legend(fontsize=8, loc="best")
    ax.set_title(title)
    return _png(fig)


def curve_from_distances(clean_correct: np.ndarray, robust: np.ndarray, distance_db: np.ndarray, db: float,
                         low: float = -60.0, points: int = 25) -> list[tuple[float, float]]:
    """(dB, success rate) for budgets ``low .. db`` implied by one run at ``db``: a clip broken
    at distance d dB counts as broken for every budget >= d. A lower bound on the success below
    ``db`` (smaller budgets were not attacked on their own). Rates are over the clips the model
    got right; arrays are (N,) as an ``EvalReport`` holds them."""
    ok = np.asarray(clean_correct, dtype=bool)
    broken = ok & ~np.asarray(robust, dtype=bool)
    d = np.where(broken, np.nan_to_num(np.asarray(distance_db, dtype=np.float64), nan=np.inf), np.inf)
    n = max(int(ok.sum()), 1)
    return [(float(b), float((d <= b + 1e-3).sum() / n)) for b in np.linspace(min(low, db), db, points)]


def clip_figure(w: np.ndarray, rate: int, title: str) -> str:
    """base64 PNG: the waveform above its spectrogram (Hann frames of 32 ms, dB)."""
    fig = Figure(figsize=(3.4, 2.6))
    ax1, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    t = np.arange(len(w)) / rate
    ax1.plot(t, w, lw=0.5, color=_COLORS[0])
    ax1.set_xlim(0, t[-1] if len(t) else 1)
    ax1.set_ylim(-1.05, 1.05)
    ax1.set_xticks([])
    ax1.set_title(title, fontsize=9)
    n_fft = max(16, int(0.032 * rate))
    ax2.specgram(w, NFFT=n_fft, Fs=rate, noverlap=n_fft // 2, cmap="magma", scale="dB")
    ax2.set_xlabel("s", fontsize=8)
    ax2.set_ylabel("Hz", fontsize=8)
    ax2.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def _cell(w: np.ndarray, rate: int, title: str, note: str) -> str:
    return (f'<td><div class="clip-title">{html.escape(title)}</div>'
            f'<audio controls preload="none" src="{wav_data_url(w, rate)}"></audio>'
            f'<div><img alt="{html.escape(title)}: waveform and spectrogram" '
            f'src="data:image/png;base64,{clip_figure(w, rate, title)}"></div>'
            f'<div class="clip-note">{html.escape(note)}</div></td>')


def audio_section(x: object, x_adv: object, *, rate: int = 8000, labels: Sequence[str] | None = None,
                  y: Sequence[int] | None = None, pred: Sequence[int] | None = None,
                  curve: Mapping[str, Sequence[tuple[float, float]]] | None = None, max_examples: int = 4,
                  title: str = "Audio: listen to the attack") -> str:
    """The report's audio fragment (an HTML string).

    Args:
        x, x_adv: (N, 1, T) clean and adversarial clips in [0, 1] (same shape).
        rate: sample rate in Hz.
        labels: class names, for the captions.
        y, pred: (N,) true labels and the model's predictions on ``x_adv``, for the captions.
        curve: attack name -> (dB, success rate) pairs, plotted as success vs dB.
        max_examples: how many clips to embed (each adds ~3 x 2 T bytes of base64 WAV).
    """
    w, wa = _waveform(x, "x"), _waveform(x_adv, "x_adv")
    if w.shape != wa.shape:
        raise ValueError(f"x_adv: expected the shape of x {w.shape}, got {wa.shape}")
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 0:
        raise ValueError(f"max_examples: expected an int >= 0, got {max_examples!r}")

    def name(i: Sequence[int] | None, k: int) -> str:
        if i is None:
            return "?"
        c = int(i[k])
        return labels[c] if labels is not None and 0 <= c < len(labels) else str(c)

    parts = [f'<section class="audio"><h2>{html.escape(title)}</h2>']
    if curve:
        parts.append(f'<img alt="success rate vs dB" src="data:image/png;base64,{success_vs_db(curve)}">')
    rows = []
    for k in range(min(max_examples, w.shape[0])):
        d = wa[k] - w[k]
        peak, dpeak = np.abs(w[k]).max(), np.abs(d).max()
        db = 20 * np.log10(dpeak / peak) if dpeak > 0 and peak > 0 else float("-inf")
        gain = peak / dpeak if dpeak > 0 else 1.0
        rows.append("<tr>"
                    + _cell(w[k], rate, f"clean: {name(y, k)}", "the original clip")
                    + _cell(wa[k], rate, f"adversarial: heard as {name(pred, k)}", f"perturbation {db:.1f} dB")
                    + _cell(d * gain, rate, f"perturbation x{gain:.0f}", "amplified to the clip's peak")
                    + "</tr>")
    if rows:
        parts.append('<table class="audio-examples">' + "".join(rows) + "</table>")
    parts.append("</section>")
    return "\n".join(parts)


__all__ = ["audio_section", "success_vs_db", "curve_from_distances", "clip_figure", "wav_bytes", "wav_data_url"]
