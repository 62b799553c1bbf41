"""The report section of a defended model: the non-adaptive and the adaptive evaluation side by side.

    html = render_defense_section(naive_report, adaptive_report, defense="jpeg:q50")

``naive`` is the evaluation whose attacks ran on the bare classifier (``naive_view()``) and were
judged by the deployed model; ``adaptive`` the one whose attacks ran on ``attack_view()``. The
section states both robust accuracies, each attack's row, the gap, and warns when the naive
number is far above the adaptive one (the defense only hides the gradient). Detectors add their
detection rate and ROC AUC per non-adaptive attack. The fragment uses the report's CSS classes
(``base.css``: table, num, banner, badge, cards) and escapes everything through jinja2.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jinja2 import Environment, StrictUndefined

from robustlab.results import EvalReport

_TEMPLATE = """
<section class="defense" id="defense-section">
<h2>Defense{% if defense %}: <code>{{ defense }}</code>{% endif %}</h2>
{% if gap > gap_warn %}
<div class="banner warn" id="defense-gap">The non-adaptive evaluation reports {{ pct(naive.robust_accuracy) }} robust accuracy,
the adaptive one {{ pct(adaptive.robust_accuracy) }}: {{ "%.1f" | format(100 * gap) }} points of the naive number come from
attacks that did not see the defense. Only the adaptive number measures the defense.</div>
{% else %}
<div class="banner pass" id="defense-gap">The adaptive evaluation ({{ pct(adaptive.robust_accuracy) }}) is within
{{ "%.1f" | format(100 * gap_warn) }} points of the non-adaptive one ({{ pct(naive.robust_accuracy) }}).</div>
{% endif %}
<div class="cards" style="align-items: flex-start">
{% for title, rep, cls in blocks %}
<div class="card {{ cls }}">
<div class="label">{{ title }}</div>
<div class="big">{{ pct(rep.robust_accuracy) }}</div>
<table>
<tr><th>attack</th><th>robust accuracy</th><th>broken</th><th>attacked</th></tr>
<tr><td>clean</td><td class="num">{{ pct(rep.clean_accuracy) }}</td><td></td><td></td></tr>
{% for a in rep.attacks %}
<tr><td>{{ a.name }}</td><td class="num">{{ pct(a.robust_accuracy) }}</td><td class="num">{{ a.broken }}</td><td class="num">{{ a.attacked }}</td></tr>
{% endfor %}
</table>
<div class="label">{{ rep.n }} points, threat {{ rep.threat }}</div>
</div>
{% endfor %}
</div>
{% if detection %}
<table id="defense-detection">
<tr><th>non-adaptive attack</th><th>examples</th><th>detection rate</th><th>false-positive rate</th><th>ROC AUC</th></tr>
{% for d in detection %}
<tr><td>{{ d.attack }}</td><td class="num">{{ d.n_adversarial }}</td><td class="num">{{ pct(d.detection_rate) }}</td>
<td class="num">{{ pct(d.false_positive_rate) }}</td><td class="num">{{ "%.4f" | format(d.auc) }}</td></tr>
{% endfor %}
</table>
{% endif %}
</section>
"""


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}%"


def render_defense_section(naive: EvalReport, adaptive: EvalReport, *, defense: str | None = None,
                           detection: Sequence[Any] = (), gap_warn: float = 0.05) -> str:
    """HTML fragment (a ``<section>``) showing both evaluations of one defended model.

    Args:
        naive: the non-adaptive evaluation (attacks on the bare classifier, judged deployed).
        adaptive: the adaptive evaluation (attacks on the attack view, judged deployed).
        defense: the defense's spec, shown in the heading.
        detection: ``defenses.DetectionSummary`` rows (detectors only).
        gap_warn: warn when the naive robust accuracy exceeds the adaptive one by more than this
            fraction (0.05 = 5 points).
    """
    if not isinstance(naive, EvalReport) or not isinstance(adaptive, EvalReport):
        raise TypeError("naive, adaptive: expected two EvalReport objects")
    if naive.n != adaptive.n or naive.threat != adaptive.threat:
        raise ValueError(f"adaptive: expected the same points and threat as naive ({naive.n} points, "
                         f"{naive.threat}), got {adaptive.n} points, {adaptive.threat}")
    if not 0.0 <= gap_warn <= 1.0:
        raise ValueError(f"gap_warn: expected a fraction in [0, 1], got {gap_warn!r}")
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    blocks = [("non-adaptive (attacks on the bare model, transferred)", naive, "naive"),
              ("adaptive (attacks on the attack view)", adaptive, "adaptive")]
    return env.from_string(_TEMPLATE).render(
        naive=naive, adaptive=adaptive, defense=defense, detection=list(detection), blocks=blocks,
        gap=naive.robust_accuracy - adaptive.robust_accuracy, gap_warn=gap_warn, pct=_pct,
    )


__all__ = ["render_defense_section"]
