"""Fit the shipped detectors of the defended zoo entries (``<base>+<detector>``).

    python scripts/fit_detectors.py                       # every base x every detector
    python scripts/fit_detectors.py mnist-cnn+squeeze     # one entry
    python scripts/fit_detectors.py --recalibrate NAME    # keep the fitted statistics, redo
                                                          # the threshold table and the card

Each detector is fitted on MNIST train points 0-9999 (with labels). Its threshold table comes
from the even-numbered test points 1000-9998 (4500 clean points the classifier never saw: the
shipped classifiers were trained on all 60000 training points, which score lower than new data;
and the two halves of the MNIST test set differ, so both are sampled). The card records what it
measured on the odd-numbered test points 1001-9999 (neither the benchmark's first 1000 nor the
calibration points): the false-positive rate at the shipped 5% threshold, and the detection
rate / ROC AUC of PGD-40 (Linf 0.3) examples of the bare model on the first 500 of them
(non-adaptive). Writes
src/robustlab/models/weights/<name>.safetensors and <name>.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

import robustlab as rl
from robustlab.defenses import Detected, detection_summary
from robustlab.defenses.zoo import BASES, DETECTORS, FPR

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "models" / "weights"
SEED = 0


def fit_one(name: str, recalibrate: bool = False) -> dict:
    base, kind = name.split("+")
    torch.manual_seed(SEED)
    model = rl.models.load(base)
    x_test, y_test = rl.data.load("mnist", "test", n=9000, start=1000)
    x_cal, x_te, y_te = x_test[0::2], x_test[1::2], y_test[1::2]
    t0 = time.time()
    if recalibrate:
        with open(WEIGHTS / f"{name}.safetensors", "rb") as f:
            det = DETECTORS[kind]().load_state(load_bytes(f.read())).calibrate(model, x_cal)
        seconds = json.loads((WEIGHTS / f"{name}.json").read_text())["fit"]["seconds"]
    else:
        x_fit, y_fit = rl.data.load("mnist", "train", n=10000)
        det = DETECTORS[kind]().fit(model, x_fit, y_fit, x_calib=x_cal, seed=SEED)
        seconds = time.time() - t0
    defended = Detected(model, det, fpr=FPR)

    with torch.no_grad():
        clean = torch.cat([det.score(model, x_te[i : i + 500]) for i in range(0, len(x_te), 500)])
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
        "fit": {"data": "mnist train 0-9999 (labels)", "calibration": "mnist test 1000-9998, even indices (clean)",
                "seed": SEED, "fpr_target": FPR, "seconds": round(seconds, 1)},
        "threshold": defended.threshold,
        "measured_test_1001_9999_odd": {
            "clean_false_positive_rate": round(summ.false_positive_rate, 4),
            "pgd40_linf0.3_nonadaptive_first_500_of_them": {
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
    ap.add_argument("--recalibrate", action="store_true", help="load the shipped statistics, recalibrate only")
    a = ap.parse_args()
    names = a.names or [f"{b}+{k}" for b in BASES for k in DETECTORS]
    for name in names:
        card = fit_one(name, a.recalibrate)
        m = card["measured_test_1001_9999_odd"]
        print(name, "fpr", m["clean_false_positive_rate"], m["pgd40_linf0.3_nonadaptive_first_500_of_them"],
              f"fit {card['fit']['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
