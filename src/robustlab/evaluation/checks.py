"""The gradient-masking checks, one function each, and the :class:`Diagnostic` they return.
``evaluation.diagnostics`` picks the applicable ones and runs them on a subsample; the module
docstring there lists what each check looks for.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from robustlab.attacks.base import Counter, make_generator, margin_loss
from robustlab.attacks.gradient import FGSM, PGD
from robustlab.attacks.sequence import run_in_order
from robustlab.models.access import predict
from robustlab.threats import LpBall
from robustlab.threats.lp import box_radius, surface_point

Status = Literal["pass", "warn"]

# Thresholds, in one place so the docs, the report and the tests agree.
MANY_BAD_GRADIENTS = 0.10  # fraction of points with zero/NaN/vanishing gradients that warns
VANISHING_GRAD_L1 = 1e-6  # L1 norm of d(margin)/dx below which a gradient counts as vanishing
LOSS_RISE_MIN = 0.75  # fraction of points whose loss must rise along the gradient
UNBOUNDED_SUCCESS_MIN = 0.98  # success PGD must reach at eps spanning the input range
EPS_RISE_TOL = 0.02  # robust accuracy may rise this much with eps (subsample noise) before warning
STEPS_DROP_TOL = 0.02  # robust accuracy drop under doubled steps/restarts tolerated
BLACKBOX_TOL = 0.02  # fraction of points noise/Square may break that gradient attacks missed
OUTPUT_DIFF_TOL = 1e-5  # relative output difference between identical calls that counts as random
NOISE_SAMPLES = 16  # random-noise draws per point
SQUARE_QUERIES = 100  # Square's query budget per point
PROBE_STEPS = 10  # steps of the PGD runs of the eps sweep


@dataclass
class Diagnostic:
    """One check's verdict.

    Attributes:
        name: stable identifier (see the module docstring).
        status: "pass" or "warn".
        figure: the number behind the verdict (its meaning is in ``explanation``).
        explanation: one line a reader understands without the docs.
        seconds, forward_calls, backward_calls: what the check cost (passes counted per sample).
        details: extra JSON-able figures (e.g. the eps sweep's curve) for the report.
    """

    name: str
    status: Status
    figure: float
    explanation: str
    seconds: float = 0.0
    forward_calls: int = 0
    backward_calls: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Diagnostic":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def warnings_of(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.status == "warn"]


# -- helpers -----------------------------------------------------------------------------------
class _Cost:
    """Times a check and counts the passes it spends through its own Counter and attacks."""

    def __init__(self, model: object) -> None:
        self.counter = Counter(model)
        self.fwd = 0
        self.bwd = 0
        self.t0 = time.perf_counter()

    def add(self, res: Any) -> None:
        self.fwd += int(getattr(res, "forward_calls", 0))
        self.bwd += int(getattr(res, "backward_calls", 0))

    def finish(self, name: str, status: Status, figure: float, explanation: str, **details: Any) -> Diagnostic:
        return Diagnostic(name, status, float(figure), explanation, time.perf_counter() - self.t0,
                          self.fwd + self.counter.forward, self.bwd + self.counter.backward, details)


def max_eps(threat: LpBall, x: Tensor) -> float:
    """The radius at which the threat's ball covers the whole [0, 1] input box."""
    return box_radius(threat.norm, x)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def uses_eot(attacks: Sequence[object]) -> bool:
    """True if any attack averages gradients over the model's randomness (an ``eot``,
    ``eot_samples``, ``eot_iter`` or ``eot_steps`` setting above 1, or True), on an attack or on
    the attacked view itself (a view that averages every forward over fresh draws)."""
    for a in attacks:
        for key in ("eot", "eot_samples", "eot_iter", "eot_steps", "eot_iters"):
            v = getattr(a, key, None)
            if v is True or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 1):
                return True
    return False


def _subsample(n: int, n_points: int, seed: int) -> Tensor:
    if n <= n_points:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:n_points].sort().values


def _margin_grad(counter: Counter, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Logits and the input gradient of the margin loss (best other logit minus the true one)."""
    return counter.logits_and_grad(x, lambda out: margin_loss(out, y))


def _run_attacks(attacks: Sequence[object], model: object, x: Tensor, y: Tensor, cost: _Cost,
                 seed: int, threat: object) -> Tensor:
    """(N,) bool: points broken by any of ``attacks`` (``run_in_order``: in order on the unbroken
    ones, every returned point admitted by the threat and re-checked by the model)."""
    seq = run_in_order(attacks, model, model, x, y, threat, seed)
    cost.fwd += sum(c.forward for c in seq.costs)
    cost.bwd += sum(c.backward for c in seq.costs)
    cost.counter.forward += seq.judge_forward
    return seq.broken_by >= 0


# -- the checks --------------------------------------------------------------------------------
def check_clean_accuracy(clean_correct: Tensor, n_classes: int) -> Diagnostic:
    t0 = time.perf_counter()
    acc = float(clean_correct.float().mean())
    chance = 1.0 / n_classes
    bad = acc <= chance
    expl = (f"clean accuracy {_pct(acc)} is at or below chance ({_pct(chance)}): the model or the "
            "labels are wrong, and no robust accuracy means anything" if bad else
            f"clean accuracy {_pct(acc)} is above chance ({_pct(chance)} for {n_classes} classes)")
    return Diagnostic("clean_accuracy", "warn" if bad else "pass", acc, expl, time.perf_counter() - t0,
                      details={"chance": chance})


def check_outputs(model: object, x: Tensor, attacks: Sequence[object]) -> list[Diagnostic]:
    """softmax_outputs and randomized_model, from two identical calls on ``x``."""
    cost = _Cost(model)
    out1 = cost.counter.logits(x).float()
    out2 = cost.counter.logits(x).float()
    # Probabilities: every row non-negative and summing to 1.
    rows = (out1 >= 0).all(dim=1) & ((out1.sum(dim=1) - 1).abs() < 1e-3)
    frac = float(rows.float().mean())
    soft = cost.finish(
        "softmax_outputs", "warn" if frac >= 0.5 else "pass", frac,
        f"{_pct(frac)} of output rows are probabilities (>= 0, sum 1): return logits, a softmax inside "
        "the model saturates and hides the gradient" if frac >= 0.5 else
        f"outputs look like logits ({_pct(frac)} of rows are probability vectors)")
    soft.seconds /= 2
    # Randomness: outputs differ between identical calls.
    scale = out1.abs().amax(dim=1).clamp_min(1e-12)
    diff = (out1 - out2).abs().amax(dim=1) / scale
    differ = float((diff > OUTPUT_DIFF_TOL).float().mean())
    eot = uses_eot([*attacks, model])  # an attack's EOT setting, or a view that averages its own randomness
    if differ > 0 and not eot:
        status: Status = "warn"
        expl = (f"outputs differ between identical calls on {_pct(differ)} of points and no attack uses "
                "EOT: a randomized model needs gradients averaged over its randomness (EOT)")
    elif differ > 0:
        status, expl = "pass", f"the model is randomized ({_pct(differ)} of outputs differ) and an attack uses EOT"
    else:
        status, expl = "pass", "outputs are identical across repeated calls (deterministic model)"
    rnd = Diagnostic("randomized_model", status, differ, expl, soft.seconds, 0, 0,
                     {"max_relative_difference": float(diff.max()), "eot": eot})
    soft.forward_calls //= 2
    rnd.forward_calls = soft.forward_calls
    return [soft, rnd]


def check_gradients(model: object, x: Tensor, y: Tensor, threat: LpBall) -> list[Diagnostic]:
    """gradients and loss_along_gradient on clean-correct points."""
    cost = _Cost(model)
    logits, g = _margin_grad(cost.counter, x, y)
    flat = g.reshape(g.shape[0], -1)
    nonfinite = ~torch.isfinite(flat).all(dim=1)
    l1 = flat.nan_to_num(0.0, 0.0, 0.0).abs().sum(dim=1)
    zero = ~nonfinite & (l1 == 0)
    vanishing = ~nonfinite & ~zero & (l1 < VANISHING_GRAD_L1)
    bad = float((nonfinite | zero | vanishing).float().mean())
    counts = {"zero": int(zero.sum()), "nonfinite": int(nonfinite.sum()), "vanishing": int(vanishing.sum()),
              "points": int(x.shape[0])}
    status: Status = "warn" if bad > MANY_BAD_GRADIENTS else "pass"
    expl = (f"input gradients are zero ({counts['zero']}), NaN/Inf ({counts['nonfinite']}) or vanishing "
            f"({counts['vanishing']}) on {_pct(bad)} of {counts['points']} points: gradient attacks are blind here"
            if status == "warn" else
            f"input gradients are usable on {_pct(1 - bad)} of {counts['points']} points")
    grads = cost.finish("gradients", status, bad, expl, **counts)
    t_grads = grads.seconds

    # Loss along the steepest-ascent direction of the gradient, at three step lengths.
    cost2 = _Cost(model)
    loss0 = margin_loss(logits, y)
    direction = threat.steepest_direction(g.nan_to_num(0.0, 0.0, 0.0), x)
    rose = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    gains = []
    for t in (1 / 16, 1 / 4, 1.0):
        xs = threat.project(x + t * threat.eps * direction, x)
        lt = margin_loss(cost2.counter.logits(xs), y)
        rose |= lt > loss0 + 1e-6 * loss0.abs().clamp_min(1.0)
        gains.append(float((lt - loss0).median()))
    frac = float(rose.float().mean())
    status = "warn" if frac < LOSS_RISE_MIN else "pass"
    expl = (f"the loss rises along the gradient direction on only {_pct(frac)} of points: the gradient "
            "does not point uphill (masked or shattered gradients)" if status == "warn" else
            f"the loss rises along the gradient direction on {_pct(frac)} of points")
    along = cost2.finish("loss_along_gradient", status, frac, expl,
                         steps=[1 / 16, 1 / 4, 1.0], median_gain=gains)
    along.seconds += t_grads / 2
    grads.seconds /= 2  # the shared forward/backward is split between both checks
    along.forward_calls += x.shape[0]
    return [grads, along]


# Radii of the full sweep, in units of the threat's eps (plus the whole input range): a curve of
# at least 10 radii for the report, where early stopping makes the large radii cheap.
SWEEP_MULTIPLIERS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 1.5, 2.0, 3.0)


def check_eps_sweep(model: object, x: Tensor, y: Tensor, clean: Tensor, threat: LpBall, seed: int,
                    steps: int = PROBE_STEPS, sweep: bool = True) -> list[Diagnostic]:
    """accuracy_vs_eps and unbounded_eps: PGD (margin loss, no random start) at growing eps.
    ``sweep=False``: only the unbounded radius (unbounded_eps alone)."""
    cost = _Cost(model)
    top = max_eps(threat, x)
    eps_list = sorted({min(top, threat.eps * m) for m in SWEEP_MULTIPLIERS} | {top}) if sweep else [top]
    eps_list = [e for e in eps_list if e > 0]
    curve: list[list[float]] = []
    n_sub = x.shape[0]
    idx = clean.nonzero().squeeze(1)
    success_top = 1.0
    for k, e in enumerate(eps_list):
        t = LpBall(threat.norm, e)
        if idx.numel():
            broken = _run_attacks([PGD(t, steps=steps, random_start=False, loss="margin")], model,
                                  x[idx], y[idx], cost, seed + 101 * k, t)
            robust = int((~broken).sum())
        else:
            broken, robust = torch.zeros(0, dtype=torch.bool), 0
        curve.append([e, robust / n_sub])
        if e == top and idx.numel():
            success_top = float(broken.float().mean())
    if not sweep:
        status0: Status = "warn" if success_top < UNBOUNDED_SUCCESS_MIN else "pass"
        return [cost.finish(
            "unbounded_eps", status0, success_top,
            (f"with eps {top:g} ({threat.norm}, the whole input range) PGD succeeds on only {_pct(success_top)} of "
             "points: the attack, not the model, is failing" if status0 == "warn" else
             f"with eps {top:g} ({threat.norm}, the whole input range) PGD succeeds on {_pct(success_top)} of points"),
            eps=top, points=n_sub)]
    accs = [a for _, a in curve]
    rise = max([accs[j] - min(accs[:j]) for j in range(1, len(accs))] or [0.0])
    rise = max(rise, 0.0)
    sweep = cost.finish(
        "accuracy_vs_eps", "warn" if rise > EPS_RISE_TOL else "pass", rise,
        (f"robust accuracy rises by {_pct(rise)} as eps grows: the attack fails at large eps where it "
         "succeeded at small ones" if rise > EPS_RISE_TOL else
         f"robust accuracy falls monotonically with eps (PGD-{steps}, {len(eps_list)} radii up to {top:g})"),
        curve=curve, attack=f"PGD-{steps}-margin, no random start", points=n_sub)
    status: Status = "warn" if success_top < UNBOUNDED_SUCCESS_MIN else "pass"
    # One sweep serves both checks: its cost is reported once, on accuracy_vs_eps.
    unb = Diagnostic(
        "unbounded_eps", status, success_top,
        (f"with eps {top:g} ({threat.norm}, the whole input range) PGD succeeds on only {_pct(success_top)} of "
         "points: the attack, not the model, is failing" if status == "warn" else
         f"with eps {top:g} ({threat.norm}, the whole input range) PGD succeeds on {_pct(success_top)} of points"),
        0.0, 0, 0, {"eps": top, "cost": "shared with accuracy_vs_eps (one sweep)"})
    return [sweep, unb]


def _stronger(attacks: Sequence[object], threat: LpBall) -> tuple[list[object], str]:
    """The evaluation's attacks with their steps doubled (those that have steps; an explicit
    step size is kept, so the doubled attack also walks twice as far)."""
    out: list[object] = []
    for a in attacks:
        if not dataclasses.is_dataclass(a):
            continue
        names = {f.name for f in dataclasses.fields(a)}
        if "steps" not in names:
            continue
        changes: dict[str, Any] = {"steps": 2 * int(getattr(a, "steps"))}
        try:
            out.append(dataclasses.replace(a, **changes))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    if out:
        return out, "doubled steps: " + ", ".join(str(getattr(a, "name", type(a).__name__)) for a in out)
    fallback = PGD(threat, steps=80, loss="margin")
    return [fallback], f"{fallback.name}, as no evaluation attack has steps to double"


def _restart_of_cheapest(attacks: Sequence[object], threat: LpBall) -> tuple[list[object], str]:
    """One more restart (a fresh seed) of the evaluation's cheapest gradient attack: the attack
    with the fewest steps among those with steps and a seed."""
    cands = [a for a in attacks if dataclasses.is_dataclass(a)
             and {"steps", "seed"} <= {f.name for f in dataclasses.fields(a)}]
    if not cands:
        fallback = PGD(threat, steps=20, loss="margin")
        return [fallback], f"{fallback.name}, as no evaluation attack has steps"
    a = min(cands, key=lambda c: int(getattr(c, "steps")))
    return [a], f"one more restart of {getattr(a, 'name', type(a).__name__)}"


def check_more_steps(model: object, x: Tensor, y: Tensor, robust: Tensor, threat: LpBall,
                     attacks: Sequence[object], seed: int, fast: bool = False) -> Diagnostic:
    """more_steps: doubled steps of every attack (full), or one more restart of the cheapest
    gradient attack (fast)."""
    cost = _Cost(model)
    stronger, label = _restart_of_cheapest(attacks, threat) if fast else _stronger(attacks, threat)
    idx = robust.nonzero().squeeze(1)
    n_sub = x.shape[0]
    newly = 0
    if idx.numel():
        newly = int(_run_attacks(stronger, model, x[idx], y[idx], cost, seed + 31337, threat).sum())
    drop = newly / n_sub
    status: Status = "warn" if (drop > STEPS_DROP_TOL and newly >= 2) else "pass"
    before = float(robust.float().mean())
    expl = (f"robust accuracy still falls from {_pct(before)} to {_pct(before - drop)} with more iterations "
            f"({label}): the evaluation has not converged" if status == "warn" else
            f"more iterations ({label}) lower robust accuracy by only {_pct(drop)} "
            f"({_pct(before)} -> {_pct(before - drop)})")
    return cost.finish("more_steps", status, drop, expl, before=before, after=before - drop, attacks=label,
                       points=n_sub)


def _square_attack(threat: LpBall, seed: int) -> object | None:
    if threat.norm not in ("linf", "l2"):
        return None
    try:
        from robustlab.attacks.square import Square  # written alongside; optional
    except ImportError:
        return None
    try:
        return Square(threat, max_queries=SQUARE_QUERIES, seed=seed,
                      **({"p_init": 0.1} if threat.norm == "l2" else {}))
    except (TypeError, ValueError):
        return None


def check_noise_blackbox(model: object, x: Tensor, y: Tensor, robust: Tensor, threat: LpBall, seed: int,
                         scores: bool, samples: int = NOISE_SAMPLES, use_square: bool = True) -> Diagnostic:
    cost = _Cost(model)
    idx = robust.nonzero().squeeze(1)
    n_sub = x.shape[0]
    by_noise = by_square = 0
    square = _square_attack(threat, seed + 17) if scores and use_square else None
    if idx.numel():
        xr, yr = x[idx], y[idx]
        gen = make_generator(seed + 23, x.device)
        hit = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
        for _ in range(samples):
            xn = surface_point(threat, xr, gen)
            hit |= predict(model, xn) != yr
            cost.counter.forward += xr.shape[0]
        by_noise = int(hit.sum())
        rest = (~hit).nonzero().squeeze(1)
        if square is not None and rest.numel():
            by_square = int(_run_attacks([square], model, xr[rest], yr[rest], cost, seed + 17, threat).sum())
    frac = (by_noise + by_square) / n_sub
    why = ("fast diagnostics (--diagnostics full runs it)" if not use_square else
           "no scores, or a black-box target that pays per query" if not scores else
           "unavailable for " + threat.norm if threat.norm == "l1" else "robustlab.attacks.square missing")
    what = (f"{samples} random-noise draws and Square-{SQUARE_QUERIES}" if square is not None else
            f"{samples} random-noise draws (Square not run: {why})")
    status: Status = "warn" if (frac > BLACKBOX_TOL and by_noise + by_square >= 2) else "pass"
    expl = (f"{what} break {by_noise + by_square} points ({_pct(frac)}) the evaluation's attacks left robust: "
            "the gradient attacks are being fooled" if status == "warn" else
            f"{what} break {by_noise + by_square} of the points the evaluation left robust ({_pct(frac)})")
    return cost.finish("noise_blackbox", status, frac, expl, noise=by_noise, square=by_square,
                       square_used=square is not None, points=n_sub)


def check_pgd_vs_fgsm(model: object, x: Tensor, y: Tensor, clean: Tensor, robust: Tensor, threat: LpBall,
                      seed: int) -> Diagnostic:
    cost = _Cost(model)
    idx = clean.nonzero().squeeze(1)
    n_sub = x.shape[0]
    fgsm_broken = torch.zeros(n_sub, dtype=torch.bool, device=x.device)
    if idx.numel():
        fgsm_broken[idx] = _run_attacks([FGSM(threat)], model, x[idx], y[idx], cost, seed + 5, threat)
    fgsm_acc = float((clean & ~fgsm_broken).float().mean())
    eval_acc = float(robust.float().mean())
    only_fgsm = int((robust & fgsm_broken).sum())
    gap = eval_acc - fgsm_acc
    status: Status = "warn" if gap > 0 else "pass"
    expl = (f"the evaluation's robust accuracy ({_pct(eval_acc)}) is above FGSM's ({_pct(fgsm_acc)}): the "
            "iterative attack is weaker than a single step" if status == "warn" else
            f"FGSM robust accuracy {_pct(fgsm_acc)} >= the evaluation's {_pct(eval_acc)}")
    return cost.finish("pgd_vs_fgsm", status, gap, expl, fgsm_accuracy=fgsm_acc, eval_accuracy=eval_acc,
                       fgsm_only=only_fgsm, points=n_sub)


# -- the entry point ---------------------------------------------------------------------------
