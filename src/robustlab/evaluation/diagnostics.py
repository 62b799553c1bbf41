"""Gradient-masking diagnostics: the sanity checks of Carlini et al. 2019 ("On Evaluating
Adversarial Robustness"), Athalye et al. 2018 and AutoAttack's checks, run on the evaluated
points so a weak evaluation says so next to its number.

Each check returns a :class:`Diagnostic`: a name, ``status`` "pass" or "warn", the figure
behind the verdict, a one-line explanation, and what the check cost (seconds, forward and
backward passes, counted per sample). Every check runs on a seeded subsample of at most
``n_points`` evaluated points (100 by default) with short attacks, so the cost stays bounded
whatever the size of the evaluation.

The checks (names are stable; the report and the store key on them):

    clean_accuracy       clean accuracy at or below chance (1 / classes)
    softmax_outputs      the model returns probabilities (rows >= 0 summing to 1), not logits
    randomized_model     outputs differ between two identical calls, and no attack uses EOT
    gradients            input gradients of the margin loss zero, NaN/Inf or vanishing on many points
    loss_along_gradient  the margin loss does not rise along the gradient direction
    accuracy_vs_eps      robust accuracy rises as eps grows (PGD sweep eps/4 .. input range)
    unbounded_eps        at eps spanning the input range, PGD does not reach ~100% success
    more_steps           doubling the steps of the evaluation's attacks still lowers
                         robust accuracy (the evaluation had not converged)
    noise_blackbox       random noise or the Square attack breaks points the evaluation's
                         (gradient) attacks left robust
    pgd_vs_fgsm          the evaluation's robust accuracy is above single-step FGSM's

Checks that need what the model does not give are left out of the list (no scores: only
``clean_accuracy`` and the noise part of ``noise_blackbox``; no input gradient: none of the
gradient checks). The Square part of ``noise_blackbox`` runs when
``robustlab.attacks.square`` is importable and the norm is linf or l2, and not on black-box
access wrappers (each query costs there); its explanation says when only random noise was
used. Queries to a black-box target are counted by its wrapper like any other; when its query
budget runs out, the remaining checks are skipped with a warning.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from robustlab.attacks.base import ModelGuard
from robustlab.evaluation.checks import (  # noqa: F401 (the checks and thresholds, re-exported)
    BLACKBOX_TOL, EPS_RISE_TOL, LOSS_RISE_MIN, MANY_BAD_GRADIENTS, NOISE_SAMPLES, OUTPUT_DIFF_TOL, PROBE_STEPS,
    SQUARE_QUERIES, STEPS_DROP_TOL, UNBOUNDED_SUCCESS_MIN, VANISHING_GRAD_L1, Diagnostic, Status, _Cost,
    _run_attacks, _subsample, check_clean_accuracy, check_eps_sweep, check_gradients, check_more_steps,
    check_noise_blackbox, check_outputs, check_pgd_vs_fgsm, max_eps, uses_eot, warnings_of)
from robustlab.models.access import QueryBudgetExceeded, n_classes_of, predict

LEVELS = ("fast", "full")
FAST_NOISE_SAMPLES = 4
DIAGNOSTICS_SHARE = 0.25  # the fast diagnostics' budget, as a share of the evaluation's own passes
from robustlab.threats import LpBall


def _gives_gradients(model: object, x1: Tensor) -> bool:
    try:
        x = x1.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model(x)  # type: ignore[operator]
            if not isinstance(out, Tensor) or not out.requires_grad:
                return False
            (g,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
        return g is not None
    except Exception:  # noqa: BLE001 - any failure means: no usable input gradient
        return False


def _gives_scores(model: object) -> bool:
    return getattr(model, "access", "score") != "label" and not callable(getattr(model, "predict_labels", None))


def run_diagnostics(
    model: object,
    x: Tensor,
    y: Tensor,
    threat: LpBall,
    attacks: Sequence[object],
    *,
    clean_correct: Tensor | None = None,
    robust: Tensor | None = None,
    n_points: int = 100,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    level: str = "full",
) -> list[Diagnostic]:
    """Run every applicable check on a seeded subsample of at most ``n_points`` of (x, y).

    Args:
        model: the evaluated model (logits out); run in eval mode, restored after.
        x, y: the evaluated points (N, C, H, W) in [0, 1] and (N,) labels.
        threat: the evaluation's threat.
        attacks: the evaluation's attacks (for the doubled-steps check and EOT detection).
        clean_correct, robust: (N,) bool outcomes of the evaluation; if None, the attacks are
            run on the subsample here.
        n_points: subsample size (cost grows linearly with it).
        seed: seed of the subsample and of every probe attack.
        progress: called with each check's name before it runs.
        level: "full" (every check above) or "fast": the same checks at a fraction of the cost,
            where the eps sweep keeps only its unbounded radius (unbounded_eps), more_steps runs
            one more restart of the cheapest gradient attack instead of doubling every attack,
            and noise_blackbox draws 4 noise points and skips Square; a ``scope`` entry says so.

    Returns:
        A list of :class:`Diagnostic`, in the order of the module docstring.
    """
    if level not in LEVELS:
        raise ValueError(f"diagnostics: expected one of {LEVELS}, got {level!r}")
    fast = level == "fast"
    y = y.to(torch.int64)
    sub = _subsample(x.shape[0], n_points, seed).to(x.device)
    xs, ys = x[sub], y[sub]
    out: list[Diagnostic] = []

    def step(name: str) -> None:
        if progress is not None:
            progress(name)

    with ModelGuard(model):
        scores = _gives_scores(model)
        n_classes = (n_classes_of(model, x[:1]) if scores else None) or getattr(model, "n_classes", None)
        if not isinstance(n_classes, int):  # a label-only model that was not told its classes
            n_classes = int(y.max()) + 1
        if clean_correct is None or robust is None:
            cost = _Cost(model)
            cc = predict(model, xs) == ys
            rb = cc.clone()
            ids = cc.nonzero().squeeze(1)
            if ids.numel():
                rb[ids] = ~_run_attacks(list(attacks), model, xs[ids], ys[ids], cost, seed, threat)
            clean_all = cc
        else:
            cc = clean_correct.to(x.device)[sub].bool()
            rb = robust.to(x.device)[sub].bool()
            clean_all = clean_correct
        step("clean_accuracy")
        out.append(check_clean_accuracy(clean_all, n_classes))
        # A black-box target (an access wrapper: HTTP, scikit-learn, ...) pays for every query:
        # no gradients, no Square there, and the checks stop cleanly when its budget runs out.
        remote = hasattr(model, "access") and not isinstance(model, torch.nn.Module)
        grads = scores and not remote and _gives_gradients(model, xs[:1])
        checks: list[tuple[str, Callable[[], Any]]] = []
        if scores:
            checks.append(("softmax_outputs", lambda: check_outputs(model, xs, attacks)))
        if grads:
            cidx = cc.nonzero().squeeze(1)
            if cidx.numel():
                checks.append(("gradients", lambda: check_gradients(model, xs[cidx], ys[cidx], threat)))
            checks.append(("accuracy_vs_eps",
                           lambda: check_eps_sweep(model, xs, ys, cc, threat, seed, sweep=not fast)))
            checks.append(("more_steps", lambda: check_more_steps(model, xs, ys, rb, threat, attacks, seed, fast)))
        checks.append(("noise_blackbox",
                       lambda: check_noise_blackbox(model, xs, ys, rb, threat, seed, scores and not remote,
                                                    samples=FAST_NOISE_SAMPLES if fast else NOISE_SAMPLES,
                                                    use_square=not fast)))
        if grads:
            checks.append(("pgd_vs_fgsm", lambda: check_pgd_vs_fgsm(model, xs, ys, cc, rb, threat, seed)))
        for name, fn in checks:
            step(name)
            try:
                found = fn()
            except QueryBudgetExceeded as e:
                warnings.warn(f"diagnostics stopped at {name}: the model's query budget ran out ({e})", stacklevel=2)
                break
            out.extend(found if isinstance(found, list) else [found])
    if fast:
        out.append(Diagnostic("scope", "pass", float(xs.shape[0]),
                              f"fast diagnostics on {xs.shape[0]} points: accuracy_vs_eps (the eps sweep) and "
                              "Square skipped, more_steps as one more restart; --diagnostics full runs them all",
                              details={"points": int(xs.shape[0]), "level": "fast"}))
    return out


def fast_points(budget: float, attacks: Sequence[object], n: int) -> int:
    """How many points the fast diagnostics can check within ``budget`` passes (forward +
    backward), from what each check costs per point (at least 8, at most 100 and n)."""
    steps = [int(getattr(a, "steps")) for a in attacks if isinstance(getattr(a, "steps", None), int)]
    # outputs 2, gradients + loss along them 4, unbounded PGD 2 * steps + 2, FGSM 4, noise draws,
    # one more restart of the cheapest attack (every pass and the judge's), and 10% to spare.
    per_point = 1.1 * (2 + 4 + 2 * PROBE_STEPS + 2 + 4 + FAST_NOISE_SAMPLES + (2 * min(steps) + 2 if steps else 42))
    return int(max(8, min(100, n, budget // per_point)))


def format_diagnostic(d: Diagnostic) -> str:
    """One line: "[warn] gradients: ... (0.4 s, 200 fwd, 100 bwd)"."""
    return (f"[{d.status}] {d.name}: {d.explanation} ({d.seconds:.1f} s, {d.forward_calls:,} fwd, "
            f"{d.backward_calls:,} bwd)")


__all__ = ["LEVELS", "fast_points", "DIAGNOSTICS_SHARE", "Diagnostic", "run_diagnostics", "format_diagnostic", "warnings_of", "uses_eot", "max_eps"]
