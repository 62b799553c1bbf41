"""Evaluate a text classifier under a ``WordBudget``: clean accuracy, then each attack in order on
the points still robust, every returned sentence checked with ``threat.admits`` (an attack
that returns an inadmissible sentence raises), per-sample distance and queries.

This is the text path of ``robustlab.evaluate`` written against the current core, until the
runner takes lists of strings itself (see NEEDS-text.md); it returns the same ``EvalReport``.

    report, x_adv = evaluate_text(model, texts, y, "words:0.2,sim:0.8", ["textfooler-like"])
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor

from robustlab.attacks.text import TextAttack, recipe
from robustlab.results import AttackSummary, EvalReport
from robustlab.threats import parse_threat
from robustlab.threats.text import WordBudget


def evaluate_text(model: object, texts: list[str], y: Tensor, threat: WordBudget | str,
                  attacks: Sequence[TextAttack | str] | str, batch_size: int = 256
                  ) -> tuple[EvalReport, list[str], Tensor]:
    """Run ``attacks`` (names or ``TextAttack`` objects) on ``model`` over ``texts``.

    Returns the ``EvalReport`` (per-sample tensors (N,)), the final sentences (the first
    successful attack's, else the original) and the queries spent per sentence (N,).
    """
    threat = parse_threat(threat) if isinstance(threat, str) else threat
    if not isinstance(threat, WordBudget):
        raise TypeError(f"threat: expected a text threat ('words:...'), got {type(threat).__name__}")
    threat.validate(texts)
    if isinstance(attacks, str):
        attacks = [a.strip() for a in attacks.split(",") if a.strip()]
    built = [recipe(a, threat) if isinstance(a, str) else a for a in attacks]
    t0 = time.perf_counter()
    n = len(texts)
    with torch.no_grad():
        logits = torch.cat([model(texts[i: i + batch_size]).float().cpu() for i in range(0, n, batch_size)])  # type: ignore[operator]
    clean = logits.argmax(1) == y
    robust = clean.clone()
    broken_by = torch.where(clean, -1, -2)
    distance = torch.zeros(n)
    queries = torch.ones(n, dtype=torch.int64)  # the clean query
    x_adv = list(texts)
    summaries, forward = [], n
    for k, attack in enumerate(built):
        idx = robust.nonzero()[:, 0].tolist()
        if not idx:
            summaries.append(AttackSummary(attack.name, 0.0, 0, 0, 0, 0, 0.0))
            continue
        ta = time.perf_counter()
        res = attack(model, [texts[i] for i in idx], y[idx])
        seconds = time.perf_counter() - ta
        sub = [texts[i] for i in idx]
        admitted = threat.admits(res.x_adv, sub)  # type: ignore[arg-type]
        if not bool(admitted.all()):
            bad = (~admitted).nonzero()[:, 0].tolist()[:3]
            raise ValueError(f"attacks: {attack.name} returned sentences outside {threat.spec()} "
                             f"(e.g. {[res.x_adv[b] for b in bad]})")
        broken = 0
        for j, i in enumerate(idx):
            queries[i] += int(res.queries[j]) if res.queries is not None else 0
            if bool(res.success[j]):
                robust[i], broken_by[i], x_adv[i] = False, k, res.x_adv[j]
                distance[i] = float(res.distance[j])
                broken += 1
        forward += res.forward_calls
        summaries.append(AttackSummary(attack.name, float(robust.float().mean()), broken, len(idx),
                                       res.forward_calls, 0, seconds))
    report = EvalReport(n=n, threat=threat.spec(), clean_accuracy=float(clean.float().mean()),
                        robust_accuracy=float(robust.float().mean()), attacks=summaries, clean_correct=clean,
                        robust=robust, broken_by=broken_by, distance=distance, forward_calls=forward,
                        backward_calls=0, seconds=time.perf_counter() - t0,
                        config={"threat": threat.spec(), "attacks": [a.name for a in built]})
    return report, x_adv, queries
