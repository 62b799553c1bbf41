"""The shipped adversarially trained MNIST models hold (or, for the masking example, do not)
under the strong attacks of the standard ensemble, on a few test points (seconds)."""
from __future__ import annotations

import torch

import robustlab as rl
from robustlab.attacks.apgd import APGD, APGDT
from robustlab.threats import LpBall

T = LpBall("linf", 0.3)


def _robust_after_apgd(name: str, n: int = 40) -> tuple[float, float]:
    """(clean, robust after APGD-CE then APGD-T) accuracy of a shipped model on test points 0..n-1."""
    torch.set_num_threads(1)
    model = rl.models.load(name)
    x, y = rl.data.load("mnist", "test", n=n)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    ok &= ~APGD(T, loss="ce", steps=100, seed=0)(model, x, y).success
    idx = ok.nonzero().flatten()
    if len(idx):
        ok[idx] = ~APGDT(T, steps=100, seed=0)(model, x[idx], y[idx]).success
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    return clean, float(ok.float().mean())


def test_one_step_atta_model_holds_under_apgd_and_the_masked_one_does_not() -> None:
    # mnist-cnn-fast: one attack gradient a step (ATTA), trained in under 10 CPU-minutes
    clean, robust = _robust_after_apgd("mnist-cnn-fast")
    assert clean >= 0.95 and robust >= 0.85, (clean, robust)
    # mnist-cnn-masked: one-step N-FGSM + checks, as clean, but APGD breaks it
    clean_m, robust_m = _robust_after_apgd("mnist-cnn-masked")
    assert clean_m >= 0.95 and robust_m <= 0.3, (clean_m, robust_m)
