"""ART's input-transform defenses and binary detector next to robustlab's, same model and points.

    PYTHONPATH=src /work/venvs/defenses/bin/python benchmarks/defenses_art.py [--n 1000] [--save F.json]

Needs adversarial-robustness-toolbox==1.20.1 (a benchmark-only peer, own venv). On the shipped
``mnist-cnn`` and the first ``n`` MNIST test points, Linf 0.3 (and 0.5 for 1-bit depth):

- transforms: ART's ``FeatureSqueezing(bit_depth=1)``, ``SpatialSmoothing(window_size=2)`` and
  ``JpegCompression(quality=50)`` as preprocessing defences of a ``PyTorchClassifier``, attacked
  by ART's ``ProjectedGradientDescent`` (40 steps of 2.5 * eps / 40, one random start): its
  gradient passes these NumPy preprocessors as the identity (BPDA). Robust accuracy is ART's
  defended prediction on the returned points. Next to it robustlab's adaptive evaluation of the
  same transform (``BitDepth(1)``, ``MedianFilter(2)``, ``JPEG(50)``; PGD-40 then APGD-CE-100
  on ``attack_view()``, judged by the deployed wrapper; from ``benchmarks/defenses.py``).
- detector: ART's ``BinaryInputDetector`` with the same small CNN and the same training data as
  robustlab's ``BinaryDetector`` (MNIST train 0-9999 plus their PGD-10 examples, 5 epochs),
  scored on PGD-40 examples of the bare model (non-adaptive; ART has no adaptive attack on a
  detector): detection rate and clean false-positive rate.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import robustlab as rl
from robustlab.attacks import PGD
from robustlab.defenses.detectors import _detector_net
from robustlab.defenses.metrics import roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defenses import library_adaptive, summarise  # noqa: E402

ZOO_NAME = {"bit depth 1": "bitdepth", "median 2x2": "median", "JPEG q50": "jpeg"}


def ours_from(path: str | None, n: int) -> dict[tuple[str, float], dict]:
    """robustlab's rows for mnist-cnn from ``benchmarks/defenses.py --out`` records (same
    points), keyed by (zoo name, eps); only rows covering exactly ``n`` points."""
    if not path or not Path(path).exists():
        return {}
    with open(path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    rows = summarise([r for r in recs if r["base"] == "mnist-cnn" and r["start"] < n])
    return {(r["defense"].split("+")[-1], r["eps"]): r for r in rows if r["n"] == n}


class Float32(nn.Module):
    """ART's FeatureSqueezing hands the model float64 (see shared/DATA.md): cast it back."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float())


def art_transform_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       ours_known: dict[tuple[str, float], dict] | None = None,
                       only: list[str] | None = None) -> list[dict]:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.defences.preprocessor import FeatureSqueezing, JpegCompression, SpatialSmoothing
    from art.estimators.classification import PyTorchClassifier

    configs = [
        ("bit depth 1", 0.3, FeatureSqueezing(clip_values=(0, 1), bit_depth=1), rl.defenses.BitDepth(model, 1)),
        ("bit depth 1", 0.5, FeatureSqueezing(clip_values=(0, 1), bit_depth=1), rl.defenses.BitDepth(model, 1)),
        ("median 2x2", 0.3, SpatialSmoothing(window_size=2, channels_first=True, clip_values=(0, 1)),
         rl.defenses.MedianFilter(model, 2)),
        ("JPEG q50", 0.3, JpegCompression(clip_values=(0, 1), quality=50, channels_first=True),
         rl.defenses.JPEG(model, 50)),
    ]
    if only:
        configs = [c for c in configs if f"{ZOO_NAME[c[0]]}@{c[1]:g}" in only]
    xn, yn = x.numpy(), y.numpy()
    rows = []
    for label, eps, pre, ours in configs:
        clf = PyTorchClassifier(model=Float32(model), loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                                clip_values=(0.0, 1.0), preprocessing_defences=[pre])
        t0 = time.time()
        attack = ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=2.5 * eps / 40, max_iter=40,
                                          num_random_init=1, batch_size=500, verbose=False)
        x_adv = attack.generate(xn, y=yn).astype(np.float32)
        art_clean = float((clf.predict(xn).argmax(1) == yn).mean())
        art_robust = float(((clf.predict(x_adv).argmax(1) == yn) & (clf.predict(xn).argmax(1) == yn)).mean())
        t_art = time.time() - t0
        known = (ours_known or {}).get((ZOO_NAME[label], eps))
        t0 = time.time()
        if known is not None:  # the same evaluation, already run by benchmarks/defenses.py on these points
            ours_clean, ours_adaptive = known["clean"], known["adaptive"]
        else:
            with torch.no_grad():
                ok = ours(x).argmax(1) == y
            ours_clean = round(100 * float(ok.float().mean()), 1)
            ours_adaptive = round(100 * float(library_adaptive(ours, x, y, eps, ok).float().mean()), 1)
        rows.append({"defense": label, "eps": eps, "art_clean": round(100 * art_clean, 1), "ours_clean": ours_clean,
                     "art_pgd40_bpda": round(100 * art_robust, 1), "ours_adaptive": ours_adaptive,
                     "ours_from": "records" if known is not None else "computed",
                     "art_seconds": round(t_art, 1), "ours_seconds": round(time.time() - t0, 1)})
        print(rows[-1], flush=True)
    return rows


def art_detector_row(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    from art.defences.detector.evasion import BinaryInputDetector
    from art.estimators.classification import PyTorchClassifier

    x_fit, y_fit = rl.data.load("mnist", "train", n=10000)
    fit_attack = PGD(rl.LpBall("linf", 0.3), steps=10, seed=0, early_stop=False)
    x_fit_adv = torch.cat([fit_attack(model, x_fit[i : i + 500], y_fit[i : i + 500]).x_adv for i in range(0, 10000, 500)])
    torch.manual_seed(0)
    net = _detector_net(1)
    net[-1] = nn.Linear(64, 2)  # ART's detector is a 2-class classifier
    det_clf = PyTorchClassifier(model=net, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=2,
                                clip_values=(0.0, 1.0), optimizer=torch.optim.Adam(net.parameters(), lr=1e-3))
    detector = BinaryInputDetector(det_clf)
    data = torch.cat([x_fit, x_fit_adv]).numpy()
    labels = np.concatenate([np.tile([1, 0], (10000, 1)), np.tile([0, 1], (10000, 1))]).astype(np.float32)
    t0 = time.time()
    detector.fit(data, labels, batch_size=100, nb_epochs=5)
    fit_seconds = time.time() - t0
    naive = PGD(rl.LpBall("linf", 0.3), steps=40, seed=0)(model, x, y)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    keep = (naive.success & ok).numpy()
    rep_adv, flag_adv = detector.detect(naive.x_adv.numpy())
    rep_clean, flag_clean = detector.detect(x.numpy())
    ours = rl.models.load("mnist-cnn+binary")
    with torch.no_grad():
        rej_adv, rej_clean = ours.is_rejected(naive.x_adv).numpy(), ours.is_rejected(x).numpy()
        s_adv, s_clean = ours.detector.score(model, naive.x_adv), ours.detector.score(model, x)
    # ART's score: the detector's "adversarial" logit minus its "clean" one.
    pc, pa = rep_clean["predictions"], rep_adv["predictions"]
    art_auc = roc_auc(torch.tensor(pc[:, 1] - pc[:, 0]), torch.tensor(pa[:, 1] - pa[:, 0])[torch.from_numpy(keep)])
    return {"art_detection": round(100 * float(flag_adv[keep].mean()), 1),
            "art_fpr": round(100 * float(flag_clean.mean()), 1), "art_auc": round(art_auc, 4),
            "ours_detection": round(100 * float(rej_adv[keep].mean()), 1),
            "ours_fpr": round(100 * float(rej_clean.mean()), 1),
            "ours_auc": round(roc_auc(s_clean, s_adv[torch.from_numpy(keep)]), 4),
            "n_adversarial": int(keep.sum()), "art_fit_seconds": round(fit_seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-detector", action="store_true")
    ap.add_argument("--configs", default=None,
                    help="comma-separated subset of bitdepth@0.3,bitdepth@0.5,median@0.3,jpeg@0.3 (default: all)")
    ap.add_argument("--save", default=None)
    ap.add_argument("--ours-from", default="benchmarks/results/defenses/std-1000.jsonl",
                    help="records of benchmarks/defenses.py on the same points (robustlab's adaptive rows)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import art

    model = rl.models.load("mnist-cnn")
    x, y = rl.data.load("mnist", "test", n=a.n)
    rows = art_transform_rows(model, x, y, ours_from(a.ours_from, a.n), a.configs.split(",") if a.configs else None)
    print("| defense | eps | clean ART / ours % | ART PGD-40 (BPDA) robust % | robustlab adaptive robust % | s ART / ours |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['defense']} | {r['eps']} | {r['art_clean']} / {r['ours_clean']} | {r['art_pgd40_bpda']} | "
              f"{r['ours_adaptive']} | {r['art_seconds']} / {r['ours_seconds']} |")
    det = None if a.skip_detector else art_detector_row(model, x, y)
    if det:
        print(det)
    if a.save:
        with open(a.save, "w") as f:
            json.dump({"transforms": rows, "detector": det, "n": a.n, "art": art.__version__,
                       "torch": torch.__version__, "threads": a.threads, "platform": platform.platform()}, f, indent=1)


if __name__ == "__main__":
    main()
