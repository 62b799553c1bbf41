"""Defended MNIST models: what a naive attack reports next to what an adaptive one does.

    python benchmarks/defenses.py [--base mnist-cnn] [--n 1000] [--eps 0.3] [--defenses all]
        [--save F.json]

For each shipped defense ``<base>+<name>`` (transforms and detectors of ``defenses.zoo``), on
the first ``n`` MNIST test points, every robust accuracy judged by the deployed model (a
detector's reject counts as defended; a clean point rejected counts as an error):

- undefended: the bare model under PGD-40 then APGD-CE-100 (the reference);
- naive: the undefended model's adversarial examples (PGD-40 on the bare model, not seeing the
  defense), shown to the deployed model; for detectors also the detection rate at the shipped
  5% FPR threshold and the ROC AUC of those examples;
- adaptive (ours): robustlab's PGD-40 then APGD-CE-100 (PGD-40-margin then APGD-DLR-100 for
  detectors) on ``attack_view()`` (BPDA / EOT /
  detector logits), success decided by the deployed model on the returned points;
- plain BPDA/EOT: an independent PGD-40 written below (identity backward through every
  transform, EOT by averaging gradients over 10 draws for the random ones; for detectors the
  sum of a classifier hinge and a detector hinge), judged the same way.

Library attacks on robustlab d0c311d do not yet read the reject column (``attacks.losses`` is
the seam); until they do, a detector's view is attacked through ``defenses.detected.FoldReject``, which folds the
reject logit into the true class of the batch (logit_y <- max(logit_y, reject)): the margin
and success rule are then exactly the reject-aware ones of ``attacks.losses``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import robustlab as rl
from robustlab.attacks import APGD, PGD
from robustlab.attacks.losses import is_success
from robustlab.defenses import Detected, InputTransform, detection_summary
from robustlab.defenses.detected import FoldReject
from robustlab.defenses.zoo import DETECTORS, TRANSFORMS


def judge(deployed: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
    """(N,) bool: the deployed model classifies correctly (or rejects, for a detector)."""
    rej = bool(getattr(deployed, "rejects", False))
    with torch.no_grad():
        out = torch.cat([deployed(x_adv[i : i + 500]) for i in range(0, len(x_adv), 500)])
    return ~is_success(out, y, None, reject=rej)


def clean_ok(deployed: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """(N,) bool: accepted and classified correctly."""
    with torch.no_grad():
        out = torch.cat([deployed(x[i : i + 500]) for i in range(0, len(x), 500)])
    return out.argmax(1) == y


def library_adaptive(defended: nn.Module, x: Tensor, y: Tensor, eps: float, robust: Tensor) -> Tensor:
    """PGD-40 then APGD-100 (CE; margin and DLR for a detector) on the attack view, on the points
    still robust; judged by the deployed model."""
    threat = rl.LpBall("linf", eps)
    # A random view's success is not the deployed one's, and FoldReject needs the whole batch in
    # order: no early stop for either.
    early = not getattr(defended, "random", False) and not getattr(defended, "rejects", False)
    robust = robust.clone()
    # A detector's combined logits jump when it fires, which saturates cross-entropy: margin
    # losses there (C&W 2017's choice), PGD-margin then APGD-DLR.
    rej = bool(getattr(defended, "rejects", False))
    for attack in (PGD(threat, steps=40, early_stop=early, seed=0, loss="margin" if rej else "ce"),
                   APGD(threat, steps=100, early_stop=early, seed=0, loss="dlr" if rej else "ce")):
        idx = robust.nonzero().squeeze(1)
        for i in range(0, len(idx), 500):
            b = idx[i : i + 500]
            view = defended.attack_view()
            if getattr(view, "rejects", False):
                view = FoldReject(view, y[b]).eval()
            res = attack(view, x[b], y[b])
            robust[b] &= judge(defended, res.x_adv, y[b])
    return robust


def plain_bpda_eot(defended: nn.Module, x: Tensor, y: Tensor, eps: float, robust: Tensor,
                   steps: int = 40, eot: int = 10, seed: int = 1) -> Tensor:
    """An independent Linf PGD with BPDA (identity backward through the whole transform) and EOT
    (gradients averaged over ``eot`` draws) or, for a detector, a two-hinge C&W objective."""
    bare = defended.naive_view()
    g = torch.Generator().manual_seed(seed)
    step = 2.5 * eps / steps
    x_adv = (x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps).clamp(0, 1)
    for p in bare.parameters():
        p.requires_grad_(False)
    for t in range(steps):
        x_adv.requires_grad_(True)
        if isinstance(defended, InputTransform):
            k = eot if defended.random else 1
            loss = 0.0
            for j in range(k):
                with torch.no_grad():
                    xt = defended.apply(x_adv.detach(), salt=f"plain{t}.{j}")
                loss = loss + F.cross_entropy(bare(xt + x_adv - x_adv.detach()), y, reduction="sum")
        elif isinstance(defended, Detected):
            det = defended.detector
            z = bare(x_adv)
            other = z.scatter(1, y[:, None], float("-inf")).amax(1)
            cls = F.relu(z.gather(1, y[:, None]).squeeze(1) - other + 1.0)
            s = (det.attack_score(bare, x_adv) - defended.threshold) * defended.scale
            loss = -(cls + F.relu(s + 0.5)).sum()
        else:
            raise TypeError(type(defended).__name__)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = torch.min(torch.max(x_adv + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return robust & judge(defended, x_adv.detach(), y)


def pct(t: Tensor) -> float:
    return round(100.0 * float(t.double().mean()), 1)


def run(base: str, names: list[str], n: int, eps: float) -> list[dict]:
    x, y = rl.data.load("mnist", "test", n=n)
    model = rl.models.load(base)
    threat = rl.LpBall("linf", eps)
    t0 = time.time()
    naive_adv = PGD(threat, steps=40, seed=0)(model, x, y)
    bare_ok = clean_ok(model, x, y)
    bare_rob = bare_ok & judge(model, naive_adv.x_adv, y)
    if bool(bare_rob.any()):
        apgd = APGD(threat, steps=100, seed=0)(model, x[bare_rob], y[bare_rob])
        bare_rob[bare_rob.clone()] = judge(model, apgd.x_adv, y[bare_rob])
    rows = [{"defense": f"{base} (undefended)", "eps": eps, "clean": pct(bare_ok), "naive": pct(bare_rob),
             "adaptive": pct(bare_rob), "plain": None, "seconds": round(time.time() - t0, 1)}]
    print(rows[-1], flush=True)
    for name in names:
        t0 = time.time()
        defended = rl.models.load(f"{base}+{name}")
        ok = clean_ok(defended, x, y)
        naive = ok & judge(defended, naive_adv.x_adv, y)
        row = {"defense": f"{base}+{name}", "spec": defended.spec(), "eps": eps, "clean": pct(ok), "naive": pct(naive)}
        if isinstance(defended, Detected):
            det = defended.detector
            with torch.no_grad():
                sc, sa = det.score(model, x), det.score(model, naive_adv.x_adv)
            summ = detection_summary("PGD-40", sc, sa, naive_adv.success & bare_ok, defended.threshold)
            row.update(detection=round(100 * summ.detection_rate, 1), fpr=round(100 * summ.false_positive_rate, 1),
                       auc=round(summ.auc, 4), n_adv=summ.n_adversarial)
        row["adaptive"] = pct(library_adaptive(defended, x, y, eps, ok))
        row["plain"] = pct(plain_bpda_eot(defended, x, y, eps, ok))
        row["seconds"] = round(time.time() - t0, 1)
        print(row, flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = ("| defense | eps | clean % | naive robust % | adaptive (ours) % | plain BPDA/EOT % | "
            "naive detection % @ FPR % (AUC) | s |\n|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        det = f"{r['detection']} @ {r['fpr']} ({r['auc']})" if "detection" in r else ""
        plain = "" if r["plain"] is None else r["plain"]
        lines.append(f"| {r['defense']} | {r['eps']} | {r['clean']} | {r['naive']} | {r['adaptive']} | {plain} | "
                     f"{det} | {r['seconds']} |")
    return head + "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="mnist-cnn", choices=["mnist-cnn", "mnist-cnn-at"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--defenses", default="all", help="comma-separated names of defenses.zoo, or 'all'")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    names = list(TRANSFORMS) + list(DETECTORS) if a.defenses == "all" else a.defenses.split(",")
    rows = run(a.base, names, a.n, a.eps)
    print(table(rows))
    if a.save:
        with open(a.save, "w") as f:
            json.dump({"rows": rows, "n": a.n, "eps": a.eps, "base": a.base, "torch": torch.__version__,
                       "threads": a.threads, "platform": platform.platform()}, f, indent=1)


if __name__ == "__main__":
    main()
