"""Fit the shipped detectors of the defended zoo entries (``<base>+<detector>``).

    python scripts/fit_detectors.py                       # every base x every detector
    python scripts/fit_detectors.py mnist-cnn+squeeze     # one entry

Each detector is fitted on MNIST train points 0-9999 (with labels), its threshold table comes
from the held-out train points 55000-59999, and the card records what it measured on test points
5000-9999 (never the benchmark's first 1000): the false-positive rate at the shipped 5%
threshold, and detection rate / ROC AUC against PGD-40 (Linf 0.3) examples of the bare model on
test points 5000-5499 (non-adaptive). Writes src/robustlab/models/weights/<name>.safetensors and
<name>.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import robustlab as rl
from robustlab.defenses import Detected, detection_summary
from robustlab.defenses.zoo import BASES, DETECTORS, FPR

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "models" / "weights"
SEED = 0


def fit_one(name: str) -> dict:
    base, kind = name.split("+")
    torch.manual_seed(SEED)
    model = rl.models.load(base)
    x_fit, y_fit = rl.data.load("mnist", "train", n=10000)
    x_cal, _ = rl.data.load("mnist", "train", n=5000, start=55000)
    t0 = time.time()
    det = DETECTORS[kind]().fit(model, x_fit, y_fit, x_calib=x_cal, seed=SEED)
    seconds = time.time() - t0
    defended = Detected(model, det, fpr=FPR)

    x_te, y_te = rl.data.load("mnist", "test", n=5000, start=5000)
    with torch.no_grad():
        clean = torch.cat([det.score(model, x_te[i : i + 500]) for i in range(0, 5000, 500)])
    adv = rl.attacks.PGD(rl.LpBall("linf", 0.3), steps=40, seed=SEED)(model, x_te[:500], y_te[:500])
    with torch.no_grad():
        adv_scores = det.score(model, adv.x_adv)
    summ = detection_summary("PGD-40", clean, adv_scores, adv.success, defended.threshold)

    state = {k: v.detach().contiguous() for k, v in det.state_dict().items()}
    save_file(state, str(WEIGHTS / f"{name}.safetensors"))
    card = {
        "name": name,
        "base_model": base,
        "detector": det.spec(),
        "spec": defended.spec(),
        "script": f"scripts/fit_detectors.py {name}",
        "fit": {"data": "mnist train 0-9999 (labels)", "calibration": "mnist train 55000-59999 (clean)",
                "seed": SEED, "fpr_target": FPR, "seconds": round(seconds, 1)},
        "threshold": defended.threshold,
        "measured_test_5000_9999": {
            "clean_false_positive_rate": round(summ.false_positive_rate, 4),
            "pgd40_linf0.3_nonadaptive_points_5000_5499": {
                "successful_examples": summ.n_adversarial,
                "detection_rate": round(summ.detection_rate, 4),
                "roc_auc": round(summ.auc, 4),
            },
        },
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    (WEIGHTS / f"{name}.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="entries to fit (default: all)")
    names = ap.parse_args().names or [f"{b}+{k}" for b in BASES for k in DETECTORS]
    for name in names:
        card = fit_one(name)
        m = card["measured_test_5000_9999"]
        print(name, "fpr", m["clean_false_positive_rate"], m["pgd40_linf0.3_nonadaptive_points_5000_5499"],
              f"fit {card['fit']['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
