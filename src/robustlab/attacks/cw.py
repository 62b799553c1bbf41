"""Carlini-Wagner L2 (Carlini & Wagner 2017), with a per-sample binary search over c.

The attack works in tanh space, x' = (tanh(w) + 1) / 2, so every iterate lies in the [0, 1]
box without clipping, and minimises with Adam

    ||x' - x||_2^2 + c * max(z_y - max_{i != y} z_i, -kappa)      (untargeted)
    ||x' - x||_2^2 + c * max(max_{i != t} z_i - z_t, -kappa)      (targeted at t)

over z = model logits at x'. After each run of ``steps`` iterations, c goes down for the
points that were broken (bisection) and up (times 10 until a success brackets it) for the
others. A run stops early for a point whose objective has not improved over the last tenth
of the steps. The closest adversarial iterate of all runs is kept.

Cost, counted: one forward and one backward per iteration on the points still running.

Minimal-distance mode (``minimal=True``): ``distance`` is the L2 distance of the closest
adversarial point found (``inf`` where none), ``x_adv`` that point. Bounded mode (default):
points leave as soon as an adversarial point within eps is found; the others return the
closest one found projected into the ball, checked by the model there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Counter, ModelGuard, finish, prepare
from robustlab.attacks.deepfool import bounded_finish, minimal_result
from robustlab.results import AttackResult
from robustlab.threats import LpBall, check_lp
from robustlab.validation import check_nonneg_float, check_positive_int


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _cw_margin(logits: Tensor, y: Tensor, target: Tensor | None, kappa: float) -> Tensor:
    lab = y if target is None else target
    own = logits.gather(1, lab[:, None]).squeeze(1)
    other = logits.scatter(1, lab[:, None], float("-inf")).amax(dim=1)
    m = own - other if target is None else other - own
    return m.clamp_min(-kappa)


@dataclass(frozen=True)
class CarliniWagner:
    """Carlini-Wagner L2 attack with binary search over the constant c.

    Args:
        threat: an L2 LpBall; eps is the ball of bounded mode.
        steps: Adam iterations per value of c.
        binary_search_steps: values of c tried per point.
        initial_c: the first c (per point).
        lr: Adam learning rate in tanh space. 0.1, not the paper's 0.01: with a budget of 100
            steps a smaller rate cannot move pixels that sit at 0 or 1 (where tanh is flat).
        kappa: confidence margin the loss asks for (0: just across the boundary).
        minimal: minimal-distance mode (see the module docstring).
    """

    threat: LpBall
    steps: int = 100
    binary_search_steps: int = 9
    initial_c: float = 0.1
    lr: float = 0.1
    kappa: float = 0.0
    minimal: bool = False
    seed: int | None = 0  # unused (deterministic); kept so evaluate can seed every attack alike

    def __post_init__(self) -> None:
        check_lp(self.threat)
        if self.threat.norm != "l2":
            raise ValueError(f"threat: CarliniWagner is an L2 attack, got norm {self.threat.norm!r}")
        check_positive_int(self.steps, "steps")
        check_positive_int(self.binary_search_steps, "binary_search_steps")
        check_nonneg_float(self.initial_c, "initial_c")
        if self.initial_c <= 0:
            raise ValueError(f"initial_c: expected a number > 0, got {self.initial_c!r}")
        check_nonneg_float(self.lr, "lr")
        if self.lr <= 0:
            raise ValueError(f"lr: expected a number > 0, got {self.lr!r}")
        check_nonneg_float(self.kappa, "kappa")

    @property
    def name(self) -> str:
        return "CW-L2"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch: x (N, C, H, W) in [0, 1], y (N,) int64; ``target`` (N,) for a
        targeted attack."""
        prepare(model, x, y, target)
        y = y.to(torch.int64)
        target = None if target is None else target.to(torch.int64)
        n = x.shape[0]
        dev, dt = x.device, x.dtype
        eps = self.threat.eps
        bound = None if self.minimal else eps
        w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        best_dist = torch.full((n,), float("inf"), device=dev, dtype=dt)
        x_best = x.detach().clone()
        c = torch.full((n,), float(self.initial_c), device=dev, dtype=dt)
        lo = torch.zeros(n, device=dev, dtype=dt)
        hi = torch.full((n,), float("inf"), device=dev, dtype=dt)
        patience = max(self.steps // 10, 1)
        with ModelGuard(model):
            counter = Counter(model)
            for _ in range(self.binary_search_steps):
                todo = best_dist > (0.0 if bound is None else bound)
                idx = todo.nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                w = w0[idx].clone()
                m_adam = torch.zeros_like(w)
                v_adam = torch.zeros_like(w)
                t_adam = torch.zeros(idx.numel(), device=dev, dtype=dt)
                succ_run = torch.zeros(idx.numel(), dtype=torch.bool, device=dev)
                last_obj = torch.full((idx.numel(),), float("inf"), device=dev, dtype=dt)
                act = torch.arange(idx.numel(), device=dev)  # positions (in idx) still running
                for it in range(self.steps):
                    if act.numel() == 0:
                        break
                    gi = idx[act]
                    wa = w[act]
                    th = torch.tanh(wa)
                    xa = (th + 1) / 2
                    x0 = x[gi]
                    yi = y[gi]
                    ti = None if target is None else target[gi]
                    ci = c[gi]
                    logits, g_x = counter.logits_and_grad(xa, lambda out: ci * _cw_margin(out, yi, ti, self.kappa))
                    diff = xa - x0
                    d2 = _flat(diff).pow(2).sum(dim=1)
                    obj = d2 + ci * _cw_margin(logits, yi, ti, self.kappa)
                    pred = logits.argmax(dim=1)
                    adv = pred == ti if ti is not None else pred != yi
                    dist = d2.sqrt()
                    better = adv & (dist < best_dist[gi])
                    best_dist[gi[better]] = dist[better]
                    x_best[gi[better]] = xa[better].detach()
                    succ_run[act[adv]] = True
                    # Gradient in tanh space: chain rule through x' = (tanh(w) + 1) / 2.
                    g_w = (g_x + 2 * diff) * (1 - th * th) / 2
                    # Adam, per sample (points drop out, so each keeps its own step count).
                    t_adam[act] += 1
                    m_adam[act] = 0.9 * m_adam[act] + 0.1 * g_w
                    v_adam[act] = 0.999 * v_adam[act] + 0.001 * g_w * g_w
                    tt = t_adam[act].reshape((-1,) + (1,) * (x.dim() - 1))
                    mhat = m_adam[act] / (1 - 0.9 ** tt)
                    vhat = v_adam[act] / (1 - 0.999 ** tt)
                    w[act] = wa - self.lr * mhat / (vhat.sqrt() + 1e-8)
                    stop = torch.zeros_like(adv)
                    if bound is not None:
                        stop |= best_dist[gi] <= bound
                    if (it + 1) % patience == 0:
                        stalled = obj > 0.9999 * last_obj[act]
                        last_obj[act] = obj
                        stop |= stalled
                    act = act[~stop]
                # Binary search on c, per point.
                ok = succ_run
                gi = idx
                hi[gi[ok]] = torch.minimum(hi[gi[ok]], c[gi[ok]])
                lo[gi[~ok]] = torch.maximum(lo[gi[~ok]], c[gi[~ok]])
                bracketed = torch.isfinite(hi[gi])
                c[gi] = torch.where(bracketed, (lo[gi] + hi[gi]) / 2, c[gi] * 10)
            found = torch.isfinite(best_dist)
            if self.minimal:
                return minimal_result(self.threat, x, x_best, found, counter)
            inside = found & (best_dist <= eps)
            x_ret = torch.where(inside.reshape((-1,) + (1,) * (x.dim() - 1)), x_best, x)
            success = inside.clone()
            far = (found & ~inside).nonzero().squeeze(1)
            if far.numel():
                xr, sr = bounded_finish(counter, self.threat, x[far], y[far],
                                        None if target is None else target[far], x_best[far])
                x_ret[far] = xr
                success[far] = sr
        return finish(self.threat, x, x_ret, success, counter)
