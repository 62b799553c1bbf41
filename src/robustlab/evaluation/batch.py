"""One batch of an evaluation: the clean pass, the certifiers, the attacks in order (judged by
the deployed model), and the batch's commit to the store in one transaction. The runner and the
Ray shards both go through ``run_batch`` and ``commit_batch``."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.attacks.sequence import attack_name, run_in_order
from robustlab.batch import Inputs, count
from robustlab.evaluation.store import Store
from robustlab.models.access import predict


class UnsoundCertificate(RuntimeError):
    """An attack broke a point a certifier had certified: the certifier (or the threat's
    ``admits``) is wrong. Never reported as a number."""


@dataclass
class BatchOutcome:
    """One batch's per-sample outcomes and costs, as committed to the store."""

    start: int
    labels: Tensor
    clean_correct: Tensor
    robust: Tensor
    broken_by: Tensor
    distance: Tensor
    adv_pred: Tensor
    attack_costs: list[tuple]  # per attack: (attacked, broken, forward, backward, seconds)
    cert_rows: list[tuple]  # (idx, certifier, certified, radius, bound, prediction)
    cert_costs: list[tuple]  # per certifier: (certifier, attempted, certified, forward, seconds)
    certified: Tensor | None
    examples: list[tuple]  # (idx, attack, adv_pred, payload)
    extra_forward: int
    seconds: float = 0.0


def _payload(x_adv: Inputs, i: int) -> bytes:
    if isinstance(x_adv, Tensor):
        from safetensors.torch import save

        return save({"x": x_adv[i].detach().cpu().contiguous().float()})
    return json.dumps(x_adv[i]).encode("utf-8")


def _reseed(model: object, seed: int) -> None:
    """Random defenses draw from a generator seeded per batch (``reseed(seed)``), so a batch's
    outcome does not depend on which process or shard ran it."""
    fn = getattr(model, "reseed", None)
    if callable(fn):
        fn(seed)


SHRINK_STEPS = 5  # bisection steps towards the clean point on each broken point (distance to 1/32)


def run_batch(model: object, attack_model: object, x: Inputs, y: Tensor, threat: object, attacks: list,
              certifiers: list, seed: int, start: int = 0, examples: int = 8,
              on_step: Callable[[str, int], None] | None = None) -> BatchOutcome:
    """Clean pass, certifiers, then each attack on the clean-correct unbroken points.

    ``model`` judges (clean accuracy, every returned point); ``attack_model`` is what the attacks
    query. ``examples``: how many broken points of the batch keep their adversarial input for the
    report's gallery. Each broken point is moved back along its perturbation to the closest
    point still misclassified (``sequence.shrink_along``, ``SHRINK_STEPS`` forward passes): the
    stored distance is that point's, so the report's accuracy-vs-eps curve has real radii.
    ``on_step``: see ``run_in_order``."""
    t_batch = time.time()
    nb = count(x)
    _reseed(model, seed)
    if attack_model is not model:
        _reseed(attack_model, seed)
    clean_pred = predict(model, x).to(y.device)
    clean_correct = clean_pred == y
    cert_rows: list[tuple] = []
    cert_costs: list[tuple] = []
    certified = None
    if certifiers:
        certified = torch.zeros(nb, dtype=torch.bool, device=y.device)
        for k, cert in enumerate(certifiers):
            t0 = time.time()
            res = cert(model, x, y, threat)
            ok = res.certified.to(y.device).bool() & clean_correct & (res.prediction.to(y.device) == y)
            new = ok & ~certified
            certified |= ok
            for i in range(nb):
                cert_rows.append((start + i, k, int(ok[i]), float(res.radius[i]),
                                  None if res.bound is None else float(res.bound[i]), int(res.prediction[i])))
            cert_costs.append((k, nb, int(new.sum()), int(res.forward_calls), time.time() - t0))
    seq = run_in_order(attacks, attack_model, model, x, y, threat, seed, active=clean_correct.clone(),
                       keep_points=examples > 0, shrink=SHRINK_STEPS, on_step=on_step)
    if certified is not None and bool((certified & (seq.broken_by >= 0)).any()):
        bad = (certified & (seq.broken_by >= 0)).nonzero().squeeze(1) + start
        raise UnsoundCertificate(f"certifiers: points {bad.tolist()[:10]} were certified and then broken by "
                                 f"{attack_name(attacks[int(seq.broken_by[bad[0] - start])])}: a certificate is wrong")
    broken_by = torch.where(clean_correct, seq.broken_by, torch.full_like(seq.broken_by, -2))
    distance = seq.distance  # NaN where not broken, and for points misclassified clean (no perturbation)
    adv_pred = torch.where(clean_correct, seq.adv_pred, clean_pred)
    rows: list[tuple] = []
    for j, (b, pts) in enumerate(seq.x_adv):
        if pts is None:
            continue
        for k in range(min(int(b.numel()), examples - len(rows))):
            rows.append((start + int(b[k]), j, int(seq.adv_pred[b[k]]), _payload(pts, k)))
    return BatchOutcome(start, y, clean_correct, clean_correct & (seq.broken_by < 0), broken_by, distance,
                        adv_pred, [c.row() for c in seq.costs], cert_rows, cert_costs, certified, rows,
                        nb + seq.judge_forward, time.time() - t_batch)


def commit_batch(db: Store, run_id: str, b: BatchOutcome) -> None:
    """Write one batch's outcomes, costs and certificates in one transaction."""
    n = int(b.labels.shape[0])
    rows = [(b.start + i, int(b.labels[i]), int(b.clean_correct[i]), int(b.robust[i]), int(b.broken_by[i]),
             None if torch.isnan(b.distance[i]) else float(b.distance[i]), int(b.adv_pred[i])) for i in range(n)]
    db.write_batch(run_id, b.start, n, b.seconds, rows, [(j, *c) for j, c in enumerate(b.attack_costs)],
                   certificates=b.cert_rows, cert_costs=b.cert_costs, examples=b.examples)
