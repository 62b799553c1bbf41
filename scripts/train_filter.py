"""Train the content filter's head (``filter-minilm``) on the SMS Spam Collection from a seed.

The all-MiniLM-L6-v2 encoder stays frozen: the training set is encoded once, then a 384-128-2
head is fit with Adam on class-balanced cross-entropy. Needs robustlab[text]. CPU, one thread:
a few minutes (the encoding).

    python scripts/train_filter.py --name filter-minilm

Writes src/robustlab/models/weights/<name>.safetensors and <name>.json (seed, wall time, the
test detection rate (spam flagged) and false-positive rate (ham flagged)).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import robustlab as rl
from robustlab.models.content_filter import Head
from robustlab.models.minilm import encoder

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "models" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="filter-minilm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--max-train", type=int, default=1500,
                    help="train messages used: every spam message, then ham in the split's order (CPU time)")
    ap.add_argument("--cache", default=None, help="optional .pt file caching the train/test embeddings")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    xtr, ytr = rl.data.load("sms", split="train")
    xte, yte = rl.data.load("sms", split="test")
    spam = [i for i in range(len(ytr)) if ytr[i] == 1]
    ham = [i for i in range(len(ytr)) if ytr[i] == 0][: max(0, args.max_train - len(spam))]
    keep = sorted(spam + ham)
    xtr, ytr = [xtr[i] for i in keep], ytr[keep]
    if args.cache and Path(args.cache).is_file():
        ztr, zte = torch.load(args.cache)
    else:
        ztr, zte = encoder().encode(xtr), encoder().encode(xte)
        if args.cache:
            torch.save((ztr, zte), args.cache)
    torch.manual_seed(args.seed)
    head = Head()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    weight = (len(ytr) / (2 * torch.bincount(ytr, minlength=2).float()))
    g = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        for idx in torch.randperm(len(ytr), generator=g).split(128):
            loss = torch.nn.functional.cross_entropy(head(ztr[idx]), ytr[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    with torch.no_grad():
        pred = head(zte).argmax(1)
    detection = float((pred[yte == 1] == 1).float().mean())
    fpr = float((pred[yte == 0] == 1).float().mean())
    acc = float((pred == yte).float().mean())
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(WEIGHTS / f"{args.name}.safetensors"))
    card = {"name": args.name, "architecture": "all-MiniLM-L6-v2 (frozen, mean pooling, L2) + 384-128-2 MLP head",
            "dataset": "sms", "seed": args.seed, "train_size": len(ytr), "train_spam": int(ytr.sum()), "epochs": args.epochs,
            "optimizer": "Adam lr 1e-3, weight decay 1e-4, batch 128, class-balanced cross-entropy",
            "test_accuracy": round(acc, 4), "test_detection_rate": round(detection, 4),
            "test_false_positive_rate": round(fpr, 4), "test_size": len(yte), "test_spam": int(yte.sum()),
            "wall_seconds": round(time.time() - t0, 1),
            "command": f"python scripts/train_filter.py --name {args.name} --seed {args.seed} --max-train {args.max_train}"}
    (WEIGHTS / f"{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
