"""Seed spread of Square-5000 (Linf 0.3) on the points of mnist-cnn-at that APGD-CE leaves robust,
robustlab vs torchattacks: is a gap between the two ensembles noise or strength?

    python benchmarks/square_seed_probe.py
"""
import torch, time, robustlab as rl, torchattacks
torch.set_num_threads(2)
x, y = rl.data.load("mnist", n=500); m = rl.models.load("mnist-cnn-at")
T = rl.LpBall("linf", 0.3)
r = rl.attacks.APGD(T, loss="ce", steps=100)(m, x, y)
keep = ~r.success
xs, ys = x[keep], y[keep]
print("points after APGD-CE", int(keep.sum()), flush=True)
from robustlab.evaluation.presets import _square
for seed in (0, 1, 2):
    import dataclasses
    sq = dataclasses.replace(_square(T), seed=seed)
    t = time.time(); res = sq(m, xs, ys)
    with torch.no_grad(): ok = (m(res.x_adv).argmax(1) != ys).sum().item()
    print("robustlab Square seed", seed, "broke", ok, f"{time.time()-t:.0f}s", flush=True)
for seed in (0, 1):
    atk = torchattacks.Square(m, norm="Linf", eps=0.3, n_queries=5000, n_restarts=1, p_init=0.8, loss="margin", seed=seed)
    t = time.time(); xa = atk(xs, ys)
    with torch.no_grad(): ok = (m(xa).argmax(1) != ys).sum().item()
    print("torchattacks Square seed", seed, "broke", ok, f"{time.time()-t:.0f}s", flush=True)
