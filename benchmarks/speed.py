"""PGD speed against the model's own forward+backward limit and against the peer libraries.

    python benchmarks/speed.py --threads 1 --repeats 5
    python benchmarks/speed.py --models mnist --steps 10 --compile
    python benchmarks/speed.py --autoattack          # needs mnist-cnn-at and the "standard" preset

In one process, on the same model, batch and points, with torch's thread count fixed:

- limit:       k x (forward + backward w.r.t. the input only; parameters' requires_grad off),
               the model's own cost for k gradient steps, measured directly;
- limit + f:   the limit plus one forward (the last iterate's check; robustlab pays it to know
               the success of the point it returns, the peers return it unchecked);
- robustlab PGD-k (Linf, no random start, early stop off: the same work as the peers);
- torchattacks PGD, foolbox LinfPGD, ART ProjectedGradientDescentPytorch (all without random
  start), each timed as the library does it end to end (ART's generate() includes its NumPy
  round trip and its own success check);
- optionally (--bf16) the opt-in reduced-precision path: robustlab PGD on ``models.Autocast``
  (bfloat16 autocast, fp32 values near a decision), its own bf16 limit, and torchattacks PGD
  handed the same wrapper; success is recomputed with the fp32 model;
- optionally (--compile) robustlab's PGD loop with a torch.compile'd step (first call reported
  as compile time, wall clock).

Every repeat runs every entry once, in a rotated order, and ratios are taken against the limit
measured in the same repeat; the table shows medians over repeats. Wall time and process CPU
time are both recorded: on a shared machine CPU time at 1 thread is the steadier of the two.
The work is checked: x_adv agreement with torchattacks (fraction of samples bit-identical and
the largest difference) and the success rate recomputed here from each returned x_adv.
"""
from __future__ import annotations

import argparse
import platform
import statistics as st
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import robustlab  # noqa: E402
from robustlab.attacks.gradient import PGD  # noqa: E402
from robustlab.threats import LpBall  # noqa: E402
from resnet_cifar import resnet18_cifar  # noqa: E402

Run = Callable[[], Tensor | None]


# -- the model's own limit ---------------------------------------------------------------------
class _InputOnly:
    """Parameters' requires_grad off inside, restored on exit (the peers get the model as-is)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.saved = [(p, p.requires_grad) for p in self.model.parameters()]
        for p, _ in self.saved:
            p.requires_grad_(False)

    def __exit__(self, *a: object) -> None:
        for p, r in self.saved:
            p.requires_grad_(r)


def limit_run(model: nn.Module, x: Tensor, y: Tensor, k: int) -> Run:
    def run() -> None:
        with _InputOnly(model):
            for _ in range(k):
                xr = x.detach().requires_grad_(True)
                loss = F.cross_entropy(model(xr), y, reduction="none").sum()
                torch.autograd.grad(loss, xr)
    return run


def forward_run(model: nn.Module, x: Tensor) -> Run:
    def run() -> None:
        with torch.no_grad():
            model(x)
    return run


# -- the libraries -----------------------------------------------------------------------------
def robustlab_run(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, k: int,
                  early_stop: bool = False) -> Run:
    atk = PGD(LpBall("linf", eps), steps=k, step_size=alpha, random_start=False, early_stop=early_stop)
    return lambda: atk(model, x, y).x_adv


def robustlab_compiled_run(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, k: int) -> Run:
    """PGD's loop with each step as one torch.compile'd torch.func.grad function (the private
    _FusedCounter; not exposed on PGD because it has not won on a CPU). Same counting."""
    from robustlab.attacks.base import ModelGuard, make_generator, prepare
    from robustlab.attacks.gradient import _FusedCounter, run_pgd

    threat = LpBall("linf", eps)

    def run() -> Tensor:
        prepare(model, x, y, None)
        with ModelGuard(model):
            best, _ = run_pgd(_FusedCounter(model, "ce", False), threat, x, y, None, steps=k, restarts=1,
                              step_size=alpha, random_start=False, loss="ce", early_stop=False,
                              l1_sparsity=0.95, generator=make_generator(0, x.device))
        return best
    return run


def torchattacks_run(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, k: int) -> Run:
    import torchattacks

    atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=k, random_start=False)
    return lambda: atk(x, y)


def foolbox_run(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, k: int) -> Run:
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0))
    atk = fb.attacks.LinfPGD(abs_stepsize=alpha, steps=k, random_start=False)

    def run() -> Tensor:
        _, clipped, _ = atk(fmodel, x, y, epsilons=eps)
        return clipped
    return run


def art_run(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, k: int, n_classes: int) -> Run:
    from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_pytorch import (
        ProjectedGradientDescentPyTorch,
    )
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                            nb_classes=n_classes, clip_values=(0.0, 1.0), device_type="cpu")
    atk = ProjectedGradientDescentPyTorch(clf, norm=np.inf, eps=eps, eps_step=alpha, max_iter=k,
                                          targeted=False, num_random_init=0, batch_size=x.shape[0],
                                          verbose=False)
    xn, yn = x.numpy(), y.numpy()
    return lambda: torch.from_numpy(atk.generate(x=xn, y=yn))


# -- measurement -------------------------------------------------------------------------------
def timed(fn: Run) -> tuple[float, float, Tensor | None]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def success_rate(model: nn.Module, x_adv: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) != y).float().mean())


def bench_model(name: str, model: nn.Module, x: Tensor, y: Tensor, eps: float, args) -> list[dict]:
    rows: list[dict] = []
    n_classes = 10
    for k in args.steps:
        alpha = 2.5 * eps / k
        entries: dict[str, Run] = {
            "limit k(f+b)": limit_run(model, x, y, k),
            "forward f": forward_run(model, x),
            "robustlab PGD": robustlab_run(model, x, y, eps, alpha, k),
        }
        libs = set(args.libs)
        if "torchattacks" in libs:
            entries["torchattacks PGD"] = torchattacks_run(model, x, y, eps, alpha, k)
        if "foolbox" in libs:
            entries["foolbox LinfPGD"] = foolbox_run(model, x, y, eps, alpha, k)
        if "art" in libs:
            entries["ART PGD"] = art_run(model, x, y, eps, alpha, k, n_classes)
        compile_s = None
        if args.compile:
            fn = robustlab_compiled_run(model, x, y, eps, alpha, k)
            w, _, _ = timed(fn)  # the first call compiles (or hits the cache of an earlier k)
            compile_s = w
            entries["robustlab PGD, compiled step"] = fn
        if args.bf16:
            # The opt-in reduced-precision path: the same model under bfloat16 autocast, logits
            # near a decision recomputed in fp32 (models.Autocast). Success below is recomputed
            # with the fp32 model. The same wrapper handed to torchattacks shows what part of
            # the gain is the model's arithmetic rather than the library.
            fast = robustlab.models.Autocast(model)
            entries["limit k(f+b), bf16 autocast"] = limit_run(fast, x, y, k)
            entries["robustlab PGD, bf16 (Autocast)"] = robustlab_run(fast, x, y, eps, alpha, k)
            if "torchattacks" in libs:
                entries["torchattacks PGD on the same Autocast model"] = torchattacks_run(fast, x, y, eps, alpha, k)
        if args.early_stop_row:
            entries["robustlab PGD early_stop=True*"] = robustlab_run(model, x, y, eps, alpha, k, early_stop=True)

        outs: dict[str, Tensor | None] = {}
        for key, fn in entries.items():  # warm-up; keeps each library's x_adv for the checks
            outs[key] = fn()
        wall: dict[str, list[float]] = {key: [] for key in entries}
        cpu: dict[str, list[float]] = {key: [] for key in entries}
        keys = list(entries)
        for rep in range(args.repeats):
            order = keys[rep % len(keys):] + keys[:rep % len(keys)]
            for key in order:
                w, c, _ = timed(entries[key])
                wall[key].append(w)
                cpu[key].append(c)
            print(f"  {name} k={k} repeat {rep + 1}/{args.repeats}: "
                  + ", ".join(f"{kk.split()[0]}={wall[kk][-1]:.2f}s" for kk in keys), file=sys.stderr)

        ref = outs.get("torchattacks PGD")
        for key in keys:
            if key.startswith(("limit", "forward")) and key != "limit k(f+b), bf16 autocast":
                continue
            r = {"model": name, "k": k, "entry": key, "n": x.shape[0]}
            for clock, tab in (("wall", wall), ("cpu", cpu)):
                lim = tab["limit k(f+b)"]
                f = tab["forward f"]
                r[f"{clock}_s"] = st.median(tab[key])
                r[f"{clock}_ratio"] = st.median(t / l for t, l in zip(tab[key], lim))
                r[f"{clock}_ratio_f"] = st.median(t / (l + ff) for t, l, ff in zip(tab[key], lim, f))
            xa = outs[key]
            if xa is None:  # a limit row: no points to check
                rows.append(r)
                continue
            r["success"] = success_rate(model, xa, y)
            if ref is not None:
                same = (xa.flatten(1) == ref.flatten(1)).all(1).float().mean().item()
                r["same_x_adv"] = same
                r["max_diff"] = (xa - ref).abs().max().item()
            if key.endswith("compiled step"):
                r["compile_s"] = compile_s
            rows.append(r)
        rows.append({"model": name, "k": k, "entry": "limit k(f+b)", "n": x.shape[0],
                     "wall_s": st.median(wall["limit k(f+b)"]), "cpu_s": st.median(cpu["limit k(f+b)"]),
                     "fwd_wall_s": st.median(wall["forward f"]), "fwd_cpu_s": st.median(cpu["forward f"])})
    return rows


def print_table(rows: list[dict], clock: str) -> None:
    print(f"\n| model | k | entry | median {clock} s | / limit k(f+b) | / limit + f | success | same x_adv as torchattacks (max diff) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["entry"] == "limit k(f+b)":
            print(f"| {r['model']} (n={r['n']}) | {r['k']} | **limit k(f+b)** | {r[clock + '_s']:.3f} | 1 | "
                  f"(f = {r['fwd_' + clock + '_s']:.3f} s) | | |")
            continue
        same = f"{r['same_x_adv']:.3f} ({r['max_diff']:.1e})" if "same_x_adv" in r else ""
        succ = f"{r['success']:.3f}" if "success" in r else ""
        extra = f" (compile {r['compile_s']:.0f} s)" if r.get("compile_s") is not None else ""
        print(f"| {r['model']} (n={r['n']}) | {r['k']} | {r['entry']}{extra} | {r[clock + '_s']:.3f} | "
              f"{r[clock + '_ratio']:.3f} | {r[clock + '_ratio_f']:.3f} | {succ} | {same} |")


# -- the standard ensemble vs AutoAttack at its reference budget ---------------------------------
def autoattack_section(args) -> None:
    import torchattacks
    from robustlab.models.zoo import weights_path

    if not weights_path("mnist-cnn-at").is_file():
        print("\nAutoAttack comparison skipped: mnist-cnn-at weights are not in the package yet.")
        return
    try:
        from robustlab.evaluation.presets import build_attacks

        build_attacks("standard", LpBall("linf", 0.3))
    except Exception as e:  # noqa: BLE001
        print(f"\nAutoAttack comparison skipped: the 'standard' preset is not available ({e}).")
        return
    model = robustlab.models.load("mnist-cnn-at")
    x, y = robustlab.data.load("mnist", split="test", n=args.n_aa)
    eps = 0.3
    with torch.no_grad():
        clean = model(x).argmax(1) == y

    def theirs() -> float:
        # AutoAttack "standard" at its reference budget: 100 steps for APGD, APGD-T and FAB
        # (torchattacks' AutoAttack defaults to 10), Square 5000 queries.
        atk = torchattacks.MultiAttack([
            torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=0),
            torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=0),
            torchattacks.FAB(model, norm="Linf", eps=eps, steps=100, n_restarts=1, multi_targeted=True,
                             n_classes=10, seed=0),
            torchattacks.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, seed=0),
        ])
        xa = atk(x, y)
        with torch.no_grad():
            return float(((model(xa).argmax(1) == y) & clean).float().mean())

    def ours() -> float:
        rep = robustlab.evaluate(model, x, y, LpBall("linf", eps), attacks="standard", batch_size=len(x))
        return float(rep.robust_accuracy)

    res: dict[str, list[tuple[float, float, float]]] = {"torchattacks AutoAttack (100 steps)": [],
                                                         'robustlab evaluate(attacks="standard")': []}
    fns = dict(zip(res, (theirs, ours)))
    for rep in range(args.aa_repeats):
        for key in (list(fns) if rep % 2 == 0 else list(fns)[::-1]):
            w, c, acc = timed(fns[key])  # type: ignore[arg-type]
            res[key].append((w, c, acc))
    base = res["torchattacks AutoAttack (100 steps)"]
    print(f"\nStandard ensemble vs AutoAttack, mnist-cnn-at, Linf 0.3, n={len(x)}, clean acc {clean.float().mean():.3f}")
    print("| entry | median wall s | median cpu s | speed-up vs AutoAttack (cpu) | robust acc |")
    print("|---|---|---|---|---|")
    for key, v in res.items():
        sp = st.median(b[1] / a[1] for a, b in zip(v, base))
        print(f"| {key} | {st.median(a[0] for a in v):.1f} | {st.median(a[1] for a in v):.1f} | {sp:.2f} | "
              f"{st.median(a[2] for a in v):.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mnist,resnet", help="comma list of mnist, resnet")
    ap.add_argument("--steps", default="10,40", help="comma list of k")
    ap.add_argument("--libs", default="torchattacks,foolbox,art")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-mnist", type=int, default=500)
    ap.add_argument("--n-cifar", type=int, default=16)
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64 = standard)")
    ap.add_argument("--compile", action="store_true", help="add robustlab PGD with a compiled step")
    ap.add_argument("--bf16", action="store_true",
                    help="add the opt-in bfloat16 autocast path (models.Autocast) and its own limit")
    ap.add_argument("--early-stop-row", action="store_true",
                    help="add robustlab's default early stop (not the same work: broken points leave)")
    ap.add_argument("--autoattack", action="store_true", help="only the ensemble vs AutoAttack comparison")
    ap.add_argument("--n-aa", type=int, default=200)
    ap.add_argument("--aa-repeats", type=int, default=1)
    args = ap.parse_args()
    args.steps = [int(s) for s in args.steps.split(",")]
    args.libs = [s.strip() for s in args.libs.split(",") if s.strip()]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
          f"command: python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}")
    if args.autoattack:
        autoattack_section(args)
        return
    rows: list[dict] = []
    for name in args.models.split(","):
        if name == "mnist":
            model = robustlab.models.load("mnist-cnn")
            x, y = robustlab.data.load("mnist", split="test", n=args.n_mnist)
            rows += bench_model("mnist-cnn", model, x, y, 0.3, args)
            print_table(rows, "cpu")  # as it goes: a long run killed later still leaves figures
            sys.stdout.flush()
        elif name == "resnet":
            model = resnet18_cifar(args.width)
            g = torch.Generator().manual_seed(0)
            x = torch.rand(args.n_cifar, 3, 32, 32, generator=g)
            with torch.no_grad():
                y = model(x).argmax(1)  # clean-correct by construction
            rows += bench_model(f"resnet18-w{args.width}", model, x, y, 8 / 255, args)
            if args.models.split(",") == ["resnet"]:
                print_table(rows, "cpu")
        else:
            raise SystemExit(f"--models: unknown model {name!r}")
    if len(args.models.split(",")) > 1:
        print_table(rows, "cpu")  # the whole run (mnist's rows were printed as they came)
    print_table(rows, "wall")


if __name__ == "__main__":
    main()
