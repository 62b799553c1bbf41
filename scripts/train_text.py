"""Train the shipped word-CNN text classifiers from a seed (CPU, one thread, about a minute).

    python scripts/train_text.py --name mr-wordcnn --data mr
    python scripts/train_text.py --name mr-wordcnn-at --data mr --adversarial textfooler-like,pwws-like,deepwordbug-like

``--adversarial RECIPES`` is adversarial training for text (augment and retrain): train the plain
model, attack a random slice of the training set with each recipe, add the adversarial sentences with their
true labels, and retrain from scratch on the union; repeated ``--rounds`` times (each round
attacks the latest model).

Writes src/robustlab/models/weights/<name>.safetensors and the card <name>.json (recipe, seed,
wall time, test accuracy).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import robustlab as rl
from robustlab.models.text import WordCNN

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "models" / "weights"


def fit(texts: list[str], y: torch.Tensor, n_classes: int, epochs: int, seed: int, lr: float = 1e-3,
        batch: int = 50) -> WordCNN:
    torch.manual_seed(seed)
    model = WordCNN(n_classes)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    ids = model.ids(texts)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(texts), generator=g).split(batch):
            loss = torch.nn.functional.cross_entropy(model.forward_ids(ids[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: WordCNN, texts: list[str], y: torch.Tensor) -> float:
    return float((model(texts).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--data", default="mr")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--adversarial", default=None, help="recipe for adversarial augmentation (e.g. pwws-like)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n-adv", type=int, default=1500, help="training sentences attacked per round")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    texts, y = rl.data.load(args.data, split="train")
    xt, yt = rl.data.load(args.data, split="test")
    k = rl.data.info(args.data).n_classes
    model = fit(texts, y, k, args.epochs, args.seed)
    rounds = []
    aug_texts, aug_y = list(texts), y.clone()
    if args.adversarial:
        from robustlab.attacks.text import recipe

        attacks = [recipe(name) for name in args.adversarial.split(",")]
        g = torch.Generator().manual_seed(args.seed + 1)
        for r in range(args.rounds):
            found = 0
            for attack in attacks:
                idx = torch.randperm(len(texts), generator=g)[: args.n_adv]
                sub, ys = [texts[i] for i in idx], y[idx]
                res = attack(model, sub, ys)
                keep = [ok and s != orig for s, ok, orig in zip(res.x_adv, res.success.tolist(), sub)]
                aug_texts += [s for s, kp in zip(res.x_adv, keep) if kp]
                aug_y = torch.cat([aug_y, ys[torch.tensor(keep, dtype=torch.bool)]])
                found += sum(keep)
            model = fit(aug_texts, aug_y, k, args.epochs, args.seed)
            rounds.append({"round": r + 1, "attacked": args.n_adv * len(attacks), "added": found,
                           "test_accuracy": accuracy(model, xt, yt)})
            print(rounds[-1], flush=True)
    acc = accuracy(model, xt, yt)
    wall = time.time() - t0
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_to_save().items()}, str(WEIGHTS / f"{args.name}.safetensors"))
    card = {"name": args.name, "architecture": "WordCNN (Kim 2014): frozen GloVe 6B 50d, filters 3/4/5 x 100, "
            "dropout 0.5, max 64 tokens", "dataset": args.data, "seed": args.seed, "epochs": args.epochs,
            "optimizer": "Adam lr 1e-3, weight decay 1e-4, batch 50", "adversarial": args.adversarial,
            "adversarial_rounds": rounds, "train_size": len(aug_texts), "test_accuracy": round(acc, 4),
            "test_size": len(xt), "wall_seconds": round(wall, 1),
            "command": f"python scripts/train_text.py --name {args.name} --data {args.data}"
                       + (f" --adversarial {args.adversarial} --rounds {args.rounds} --n-adv {args.n_adv}"
                          if args.adversarial else "")}
    (WEIGHTS / f"{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
