"""An adaptive attack on 1-bit squeezing: choose the squeezed image, then match the input to it.

    from robustlab.defenses.squeeze_attack import attack_bits, attack_squeezing
    b = attack_bits(model, x, y, eps=0.3)                        # attacks BitDepth(model, 1)
    x_adv = attack_squeezing(rl.models.load("mnist-cnn+squeeze"), x, y, b, eps=0.3)

Xu et al. 2018's MNIST feature squeezing uses a 1-bit depth squeezer (``ops.bit_depth``: round
to 0 or 1, halves to even, so 0.5 -> 0). Within an Linf ball of radius eps, only pixels with
|x - 0.5| < eps can change their squeezed bit (on MNIST test images about 47 of 784 at eps 0.3,
137 at 0.5); every other bit is fixed whatever the attacker does. A straight-through (BPDA)
gradient attack moves all pixels alike and needs many small steps to carry a free pixel across
0.5. This attack works on the squeezed image directly:

1. :func:`attack_bits` searches the reachable binary images b (fixed bits, free bits chosen):
   relaxed sign-gradient descent on the free bits in [0, 1] from several starts, keeping the
   rounded iterate with the lowest objective, then greedy single-bit flips evaluated exactly.
   The objective is the model's margin on b plus its margin on b clipped into the eps box, so b
   is chosen where the unsqueezed input can be made wrong as well.
2. :func:`attack_squeezing` fixes b: every x' that stays on b's side of 0.5 (and in the eps box)
   has bit_depth(x') = b exactly, so the 1-bit squeezer's output is a constant. It then runs
   sign-gradient descent on x' in that set on a soft-label cross-entropy towards the model's
   prediction on b, for x' and for its median-filtered version: at the optimum both predict
   exactly what b does, so the detector's two L1 terms vanish and x' is misclassified as b is
   (He et al. 2017's joint objective, with the squeezed branch made exact).

Measured (benchmarks/results/defenses.md): on ``mnist-cnn+squeeze`` every point whose reachable
squeezed image is misclassified is bypassed, so the combined robust accuracy equals the
1-bit-depth robust accuracy; what stays robust at eps 0.3 is the budget the rounding removes.

:class:`SqueezingAttack` packages both stages as an attack of the common contract; the two
1-bit defenses hand it to the evaluation themselves (``adaptive_attacks(threat)``), so the
presets of ``robustlab evaluate`` run it after the generic attacks on whatever they leave.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.losses import is_success
from robustlab.defenses import ops
from robustlab.results import AttackResult
from robustlab.validation import check_inputs, check_positive_int


def bit_sets(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(free, fixed_bit), both shaped like ``x`` (N, C, H, W) in [0, 1]: which pixels' 1-bit
    value an Linf change of at most ``eps`` can set either way, and the 1-bit rounding of ``x``
    (the bit of every pixel that is not free)."""
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    return (ops.bit_depth(lo, 1) == 0) & (ops.bit_depth(hi, 1) == 1), ops.bit_depth(x, 1)


def _margin(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    z = model(x)
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    return z.gather(1, y[:, None]).squeeze(1) - other


def _check(x: Tensor, y: Tensor, eps: float) -> None:
    check_inputs(x, y)
    if x.dim() != 4:
        raise ValueError(f"x: expected an image batch (N, C, H, W), got shape {tuple(x.shape)}")
    if not isinstance(eps, (int, float)) or not 0.0 < float(eps) <= 1.0:
        raise ValueError(f"eps: expected an Linf radius in (0, 1], got {eps!r}")


def attack_bits(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, restarts: int = 4, steps: int = 60,
                kappa: float = 3.0, max_flips: int = 60, seed: int = 0, joint: bool = True) -> Tensor:
    """Stage 1 (module doc): a binary image per point, reachable by 1-bit rounding of the Linf
    ``eps`` ball around ``x``, chosen to make ``model`` misclassify it.

    Args:
        model: classifier, (N, C, H, W) in [0, 1] -> (N, K) logits.
        x: (N, C, H, W) clean inputs in [0, 1]; y: (N,) int64 labels.
        eps: Linf radius in pixel units.
        restarts: starts of the relaxed descent (the first from the rounding of ``x``).
        steps: sign-gradient steps (of 0.1) per start.
        kappa: greedy flipping stops once the objective is below ``-kappa``.
        max_flips: most greedy single-bit flips per point.
        joint: add the margin on b clipped into the eps box to the margin on b.
    Returns: (N, C, H, W) binary images b (0. or 1.), with b == bit_depth(x, 1) off the free pixels.
    """
    _check(x, y, eps)
    check_positive_int(restarts, "restarts")
    free, fixed = bit_sets(x, eps)
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)

    def objective(b: Tensor, yy: Tensor, lo_: Tensor, hi_: Tensor) -> Tensor:
        m = _margin(model, b, yy)
        return m + _margin(model, torch.min(torch.max(b, lo_), hi_), yy) if joint else m

    g = torch.Generator().manual_seed(seed)
    best_b = fixed.clone()
    with torch.no_grad():
        best_m = objective(fixed, y, lo, hi)
    for r in range(restarts):
        u = fixed.clone() if r == 0 else torch.rand(x.shape, generator=g)
        u = torch.where(free, u, fixed)
        for _ in range(steps):
            u.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(torch.where(free, u, fixed), y, lo, hi).sum(), u)
            with torch.no_grad():
                u = torch.where(free, (u - 0.1 * grad.sign()).clamp(0, 1), fixed)
                b = torch.where(free, (u > 0.5).float(), fixed)
                m = objective(b, y, lo, hi)
                better = m < best_m
                best_b[better], best_m[better] = b[better], m[better]
    with torch.no_grad():  # greedy single-bit flips, every candidate evaluated exactly
        for i in range(len(x)):
            idx = free[i].flatten().nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            b, m = best_b[i].flatten().clone(), float(best_m[i])
            rows = torch.arange(idx.numel())
            for _ in range(max_flips):
                if m < -kappa:
                    break
                cand = b.repeat(idx.numel(), 1)
                cand[rows, idx] = 1 - cand[rows, idx]
                ms = objective(cand.view(-1, *x.shape[1:]), y[i].repeat(idx.numel()), lo[i : i + 1], hi[i : i + 1])
                j = int(ms.argmin())
                if float(ms[j]) >= m:
                    break
                b, m = cand[j], float(ms[j])
            best_b[i] = b.view(x.shape[1:])
    return best_b


def squeezed_box(x: Tensor, b: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(lo, hi) shaped like ``x``: the Linf ``eps`` box around ``x`` cut to b's side of 0.5, so
    that every x' in [lo, hi] has bit_depth(x', 1) == b (0.5 itself rounds to 0)."""
    half = torch.tensor(0.5, dtype=x.dtype)
    up = torch.nextafter(half, torch.tensor(1.0, dtype=x.dtype))  # the smallest value that rounds to 1
    lo0, hi0 = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    lo = torch.where(b > 0.5, torch.maximum(lo0, up), lo0)
    hi = torch.where(b > 0.5, hi0, torch.minimum(hi0, half))
    return torch.minimum(lo, hi), hi


def attack_squeezing(defended: nn.Module, x: Tensor, y: Tensor, b: Tensor, eps: float, *, steps: int = 200,
                     step: float = 0.01) -> Tensor:
    """Stage 2 (module doc): x' with bit_depth(x') = ``b`` that the deployed feature-squeezing
    model ``defended`` (a ``Detected`` around a ``FeatureSqueezing`` with 1 bit) misclassifies
    without rejecting, where one is found; else x' = b clipped into the set.

    Args:
        defended: ``Detected(model, FeatureSqueezing(bits=1, ...))``.
        x: (N, C, H, W) clean inputs in [0, 1]; y: (N,) labels; b: (N, C, H, W) from :func:`attack_bits`.
        eps: Linf radius; steps: descent steps (``step``, then ``step / 5`` for the second half).
    Returns: (N, C, H, W) points within ``eps`` of ``x`` in Linf, each rounding to ``b``.
    """
    _check(x, y, eps)
    det = getattr(defended, "detector", None)
    if getattr(det, "bits", None) != 1 or not hasattr(det, "median_size"):
        raise ValueError("defended: expected a Detected model around a 1-bit FeatureSqueezing detector")
    if b.shape != x.shape:
        raise ValueError(f"b: expected shape {tuple(x.shape)}, got {tuple(b.shape)}")
    model = defended.model
    lo, hi = squeezed_box(x, b, eps)
    with torch.no_grad():
        p_b = F.softmax(model(b), 1)
    xa = torch.min(torch.max(b, lo), hi)
    best = xa.clone()
    with torch.no_grad():
        best_ok = ~is_success(defended(best), y, None, reject=True)
    for k in range(steps):
        xa.requires_grad_(True)
        logp = F.log_softmax(model(xa), 1)
        logp_med = F.log_softmax(model(ops.median_filter(xa, det.median_size)), 1)
        (grad,) = torch.autograd.grad(-(p_b * (logp + logp_med)).sum(), xa)
        with torch.no_grad():
            xa = torch.min(torch.max(xa - (step if k < steps // 2 else step / 5) * grad.sign(), lo), hi)
            ok = ~is_success(defended(xa), y, None, reject=True)
            won = best_ok & ~ok
            best[won], best_ok = xa[won], best_ok & ok
    return best


class _Counted(nn.Module):
    """Counts forward passes (per sample) of ``model`` and backward passes through its output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.forward_calls, self.backward_calls = model, 0, 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        self.forward_calls += x.shape[0]
        if out.requires_grad:
            n = x.shape[0]

            def _count(grad: Tensor) -> Tensor:
                self.backward_calls += n
                return grad

            out.register_hook(_count)
        return out


@dataclass(frozen=True)
class SqueezingAttack:
    """The adaptive attack on a 1-bit squeezer (module doc), as ``attack(model, x, y)``.

    It attacks ``defended`` itself, whatever view it is handed: ``BitDepth(model, 1)`` (stage 1,
    then the input clipped onto the chosen binary image) or ``Detected(model,
    FeatureSqueezing(bits=1))`` (both stages). The caller judges the returned points on the
    deployed model, as for every attack.

    Args:
        threat: an Linf ``LpBall`` (radius ``eps`` in pixel units).
        defended: the deployed 1-bit defense (not part of the attack's identity: the model's is).
        restarts, steps: stage 1's relaxed descent (see :func:`attack_bits`).
        squeeze_steps: stage 2's descent steps (detector only).
        seed: stage 1's random starts.
    """

    threat: object
    defended: nn.Module = field(repr=False, compare=False)
    restarts: int = 4
    steps: int = 60
    squeeze_steps: int = 200
    seed: int = 0

    name = "squeezing"

    def __post_init__(self) -> None:
        if getattr(self.threat, "norm", None) != "linf":
            raise ValueError(f"threat: the squeezing attack needs an Linf ball, got {self.threat!r}")
        bits = getattr(getattr(self.defended, "detector", self.defended), "bits", None)
        if bits != 1:
            raise ValueError("defended: expected BitDepth(model, 1) or Detected(model, FeatureSqueezing(bits=1))")
        check_positive_int(self.restarts, "restarts")

    def identity_config(self) -> dict[str, object]:
        """The run identity: the settings, not the defended module (the model has its own)."""
        return {"threat": self.threat.spec(), "restarts": self.restarts, "steps": self.steps,  # type: ignore[attr-defined]
                "squeeze_steps": self.squeeze_steps, "seed": self.seed}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """x: (N, C, H, W) in [0, 1]; y: (N,) labels. Returns points within eps (Linf) of x."""
        if target is not None:
            raise ValueError("target: the squeezing attack is untargeted")
        d, eps = self.defended, float(self.threat.eps)  # type: ignore[attr-defined]
        bare = _Counted(d.model)
        b = attack_bits(bare, x, y, eps, restarts=self.restarts, steps=self.steps, seed=self.seed)
        detector = getattr(d, "detector", None)
        if detector is None:  # BitDepth: any input rounding to b is classified as b
            lo, hi = squeezed_box(x, b, eps)
            x_adv = torch.min(torch.max(b, lo), hi)
            counted = _Counted(d)
        else:
            counted = _Counted(d)
            stage2 = _Detected2(counted, bare, detector)
            x_adv = attack_squeezing(stage2, x, y, b, eps, steps=self.squeeze_steps)  # type: ignore[arg-type]
        with torch.no_grad():
            success = is_success(counted(x_adv), y, None, reject=detector is not None)
        return AttackResult(x_adv=x_adv.detach(), success=success, distance=self.threat.distance(x_adv, x),  # type: ignore[attr-defined]
                            forward_calls=bare.forward_calls + counted.forward_calls,
                            backward_calls=bare.backward_calls + counted.backward_calls)


class _Detected2(nn.Module):
    """The deployed detector model with counted calls, exposing what stage 2 reads."""

    def __init__(self, counted: _Counted, bare: _Counted, detector: nn.Module) -> None:
        super().__init__()
        self.counted, self.model, self.detector = counted, bare, detector

    def forward(self, x: Tensor) -> Tensor:
        return self.counted(x)


__all__ = ["bit_sets", "attack_bits", "squeezed_box", "attack_squeezing", "SqueezingAttack"]
