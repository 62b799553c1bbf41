"""Defended MNIST models: what a naive attack reports next to what an adaptive one does.

    python benchmarks/defenses.py [--base mnist-cnn] [--n 1000] [--eps 0.3] [--defenses all]
        [--out F.jsonl] [--chunk 100] [--chunk-major] [--summarise] [--save F.json]

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

A detector's view is attacked through ``defenses.detected.FoldReject``, which folds the reject
logit into the true class of the batch (logit_y <- max(logit_y, reject)): the margin and success
rule are exactly the reject-aware ones of ``attacks.losses`` (which PGD-margin and APGD-DLR now
read directly); kept so that every record of this benchmark used one objective.

``--out F.jsonl`` appends one record per (defense, chunk of ``--chunk`` points) with the
per-point outcomes and detector scores, and a rerun skips the records already there;
``--chunk-major`` runs every defense on a chunk before the next chunk; ``--summarise`` prints the
table of the records present (each row says how many points it covers).
"""
from __future__ import annotations

import argparse
import json
import os
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


def chunk_records(base: str, names: list[str], n: int, eps: float, chunk: int, out: str | None,
                  chunk_major: bool = False) -> list[dict]:
    """Per-point results, ``chunk`` points at a time, appended to ``out`` (JSON lines) as each
    (defense, chunk) finishes; a record already in ``out`` (same base, eps, defense, chunk) is
    reused, so a killed run resumes where it stopped. Order: defense by defense, chunk by chunk,
    or (``chunk_major``) every defense on a chunk before the next chunk, so that a run stopped
    early has every defense on the same first points."""
    done: dict[tuple, dict] = {}
    if out and os.path.exists(out):
        with open(out) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    done[(r["base"], r["eps"], r["name"], r["start"], r["n"])] = r
    model = rl.models.load(base)
    threat = rl.LpBall("linf", eps)
    x_all, y_all = rl.data.load("mnist", "test", n=n)
    naive_cache: dict[int, tuple[Tensor, Tensor]] = {}

    def naive_for(s: int, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if s not in naive_cache:  # PGD-40 on the bare model: the transferred (non-adaptive) examples
            res = PGD(threat, steps=40, seed=0)(model, x, y)
            naive_cache[s] = (res.x_adv.detach(), res.success)
        return naive_cache[s]

    recs = []
    order = ([(name, s) for name in ["none"] + names for s in range(0, n, chunk)] if not chunk_major
             else [(name, s) for s in range(0, n, chunk) for name in ["none"] + names])
    loaded: dict[str, nn.Module] = {}
    for name, s in order:
        defended = loaded.get(name)
        key = (base, eps, name, s, min(chunk, n - s))
        if key in done:
            recs.append(done[key])
            continue
        x, y = x_all[s : s + chunk], y_all[s : s + chunk]
        t0, c0 = time.time(), time.process_time()
        x_naive, naive_success = naive_for(s, x, y)
        rec = {"base": base, "eps": eps, "name": name, "start": s, "n": len(y)}
        if name == "none":
            ok = clean_ok(model, x, y)
            rob = ok & judge(model, x_naive, y)
            if bool(rob.any()):
                apgd = APGD(threat, steps=100, seed=0)(model, x[rob], y[rob])
                rob[rob.clone()] = judge(model, apgd.x_adv, y[rob])
            rec.update(spec="undefended", clean=ok.int().tolist(), naive=rob.int().tolist(),
                       adaptive=rob.int().tolist(), plain=None)
        else:
            if defended is None:
                defended = loaded[name] = rl.models.load(f"{base}+{name}")
            ok = clean_ok(defended, x, y)
            rec.update(spec=defended.spec(), clean=ok.int().tolist(),
                       naive=(ok & judge(defended, x_naive, y)).int().tolist())
            if isinstance(defended, Detected):
                det = defended.detector
                with torch.no_grad():
                    rec.update(score_clean=det.score(model, x).tolist(), score_adv=det.score(model, x_naive).tolist(),
                               adv_success=(naive_success & clean_ok(model, x, y)).int().tolist(),
                               threshold=float(defended.threshold))
            rec["adaptive"] = library_adaptive(defended, x, y, eps, ok).int().tolist()
            rec["plain"] = plain_bpda_eot(defended, x, y, eps, ok).int().tolist()
        rec.update(wall_s=round(time.time() - t0, 1), cpu_s=round(time.process_time() - c0, 1))
        print({k: (sum(v) if isinstance(v, list) else v) for k, v in rec.items() if not k.startswith("score")},
              flush=True)
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(rec) + "\n")
        recs.append(rec)
    return recs


def summarise(recs: list[dict]) -> list[dict]:
    """One row per (base, eps, defense) over the chunks present (``n`` says how many points)."""
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(recs, key=lambda r: r["start"]):
        groups.setdefault((r["base"], r["eps"], r["name"]), []).append(r)
    rows = []
    for (base, eps, name), rs in groups.items():
        cat = lambda k: torch.tensor([v for r in rs for v in r[k]])  # noqa: E731
        row = {"defense": f"{base} (undefended)" if name == "none" else f"{base}+{name}", "spec": rs[0]["spec"],
               "eps": eps, "n": sum(r["n"] for r in rs), "clean": pct(cat("clean")), "naive": pct(cat("naive")),
               "adaptive": pct(cat("adaptive")), "plain": None if rs[0]["plain"] is None else pct(cat("plain")),
               "cpu_s": round(sum(r["cpu_s"] for r in rs), 1), "seconds": round(sum(r["wall_s"] for r in rs), 1)}
        if "score_clean" in rs[0]:
            summ = detection_summary("PGD-40", torch.tensor([v for r in rs for v in r["score_clean"]]),
                                     torch.tensor([v for r in rs for v in r["score_adv"]]), cat("adv_success").bool(),
                                     rs[0]["threshold"])
            row.update(detection=round(100 * summ.detection_rate, 1), fpr=round(100 * summ.false_positive_rate, 1),
                       auc=round(summ.auc, 4), n_adv=summ.n_adversarial)
        rows.append(row)
    return rows


def run(base: str, names: list[str], n: int, eps: float, chunk: int = 100, out: str | None = None,
        chunk_major: bool = False) -> list[dict]:
    return summarise(chunk_records(base, names, n, eps, chunk, out, chunk_major))


def table(rows: list[dict]) -> str:
    head = ("| defense | n | eps | clean % | naive robust % | adaptive (ours) % | plain BPDA/EOT % | "
            "naive detection % @ FPR % (AUC) | CPU s |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        det = f"{r['detection']} @ {r['fpr']} ({r['auc']})" if "detection" in r else ""
        plain = "" if r["plain"] is None else r["plain"]
        lines.append(f"| {r['defense']} | {r['n']} | {r['eps']} | {r['clean']} | {r['naive']} | {r['adaptive']} | "
                     f"{plain} | {det} | {r['cpu_s']} |")
    return head + "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="mnist-cnn", choices=["mnist-cnn", "mnist-cnn-at"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--defenses", default="all", help="comma-separated names of defenses.zoo, or 'all'")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", default=None, help="summary JSON")
    ap.add_argument("--out", default=None, help="per-chunk JSON lines, appended and resumed from")
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--chunk-major", action="store_true", help="all defenses on a chunk before the next chunk")
    ap.add_argument("--summarise", action="store_true", help="only summarise the records in --out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    names = list(TRANSFORMS) + list(DETECTORS) if a.defenses == "all" else a.defenses.split(",")
    if a.summarise:
        with open(a.out) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        rows = summarise([r for r in recs if r["base"] == a.base and r["eps"] == a.eps and r["start"] < a.n
                          and (a.defenses == "all" or r["name"] in ["none"] + names)])
    else:
        rows = run(a.base, names, a.n, a.eps, a.chunk, a.out, a.chunk_major)
    print(table(rows))
    if a.save:
        with open(a.save, "w") as f:
            json.dump({"rows": rows, "n": a.n, "eps": a.eps, "base": a.base, "torch": torch.__version__,
                       "threads": a.threads, "platform": platform.platform()}, f, indent=1)


if __name__ == "__main__":
    main()
