"""Measure a certified MNIST model and write its zoo card (and weights) into the package.

    PYTHONPATH=src nice -n 10 python scripts/eval_crownibp.py --eps 0.3 --attacks "" --tag cert03
    PYTHONPATH=src nice -n 10 python scripts/eval_crownibp.py --eps 0.1 --attacks "" --tag cert01
    PYTHONPATH=src nice -n 10 python scripts/eval_crownibp.py --eps 0.3 --certify "" --tag attack
    PYTHONPATH=src python scripts/eval_crownibp.py --card

(the three measuring runs may go in parallel). Clean accuracy on the 10k test set; on the first
1000 test points: IBP- and CROWN-certified accuracy at each --eps, and the empirical robust
accuracy under --attacks (robustlab.evaluate) at the first eps, into RUN/figures-TAG.json.
--card copies RUN/model.safetensors to src/robustlab/models/weights/NAME.safetensors and writes
NAME.json beside it: recipe, seed and wall time from RUN/train.json, and every figures file.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import robustlab as rl
from robustlab.certify import CROWN, IBP, AlphaCROWN
from robustlab.models.certified import ARCHITECTURES

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "models" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="/work/runs_bounds/crownibp_bn8")
    ap.add_argument("--arch", default="mnist_cnn_bn", choices=sorted(ARCHITECTURES))
    ap.add_argument("--name", default="mnist-cnn-crownibp")
    ap.add_argument("--eps", type=float, nargs="+", default=[0.3, 0.1])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0, help="first test point (to split a long run)")
    ap.add_argument("--attacks", default="standard")
    ap.add_argument("--certify", default="ibp,crown", help="comma-separated certifiers ('' for none)")
    ap.add_argument("--tag", default="all", help="figures go to RUN/figures-TAG.json")
    ap.add_argument("--card", action="store_true", help="only merge RUN/figures-*.json into the card")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    if args.card:
        return write_card(run, args.name)
    model = ARCHITECTURES[args.arch]()
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    model.eval()
    xt, yt = rl.data.load("mnist", "test")
    with torch.no_grad():
        clean10k = float(torch.cat([model(xt[i:i + 1000]).argmax(1) for i in range(0, len(xt), 1000)]).eq(yt)
                         .float().mean())
    x, y = xt[args.start:args.start + args.n], yt[args.start:args.start + args.n]
    with torch.no_grad():
        clean = float(model(x).argmax(1).eq(y).float().mean())
    figures: dict[str, float] = {"clean_accuracy_test_10k": clean10k, f"clean_accuracy_first{args.n}": clean}
    for eps in args.eps:
        ball = rl.LpBall("linf", eps)
        for cert in [{"ibp": IBP(), "crown": CROWN(), "alpha-crown": AlphaCROWN()}[c] for c in args.certify.split(",") if c]:
            t0 = time.time()
            res = cert(model, x, y, ball)
            part = f"first{args.n}" if args.start == 0 else f"points{args.start}-{args.start + args.n}"
            figures[f"{cert.name}_certified_accuracy_linf{eps:g}_{part}"] = float(res.certified.float().mean())
            figures[f"{cert.name}_seconds_linf{eps:g}"] = round(time.time() - t0, 1)
            print(json.dumps({k: v for k, v in figures.items() if f"{eps:g}" in k}), flush=True)
    if args.attacks:
        t0 = time.time()
        rep = rl.evaluate(model, x, y, rl.LpBall("linf", args.eps[0]), attacks=args.attacks, diagnostics=False)
        figures[f"empirical_robust_accuracy_{args.attacks}_linf{args.eps[0]:g}_first{args.n}"] = float(
            rep.robust_accuracy)
        figures["attack_seconds"] = round(time.time() - t0, 1)
    print(json.dumps(figures, indent=1), flush=True)
    (run / f"figures-{args.tag}.json").write_text(json.dumps(figures, indent=1))


def write_card(run: Path, name: str) -> None:
    figures: dict[str, float] = {}
    for f in sorted(run.glob("figures-*.json")):
        figures.update(json.loads(f.read_text()))
    train = json.loads((run / "train.json").read_text())
    arch = train.get("architecture", "mnist_cnn_small")
    card = {"name": name, "architecture": f"{arch} (robustlab.models.certified)",
            "dataset": "mnist (60k train, the last 2000 held out for model selection / 10k test)",
            "defense": "CROWN-IBP recipe (Zhang et al. 2020) with BatchNorm and IBP initialisation (Shi et al. 2021)",
            "script": "scripts/train_crownibp.py " + " ".join(train.get("argv", [])),
            "eval_script": "scripts/eval_crownibp.py", "seed": train["seed"], "train_seconds": train["train_seconds"],
            "train_cpu_seconds_rank0": train.get("cpu_seconds_this_call"),
            "training": {k: v for k, v in train.items()
                         if k not in ("log", "train_seconds", "seed", "argv", "cpu_seconds_this_call")},
            "epoch_log": train["log"], "measured": figures, "torch": torch.__version__,
            "clean_accuracy_test_10k": figures.get("clean_accuracy_test_10k"),  # shown by `robustlab models`
            "platform": platform.platform(), "threads": 1}
    shutil.copyfile(run / "model.safetensors", WEIGHTS / f"{name}.safetensors")
    (WEIGHTS / f"{name}.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
