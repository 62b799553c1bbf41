"""DeepFool (Moosavi-Dezfooli et al. 2016), Linf and L2: a minimal-distance attack.

At each step the model is linearised around the current point; for every candidate class j
the distance to the linearised boundary between j and the true class is |f_j - f_y| /
||grad(f_j - f_y)||_q (q the dual norm); the step goes to the nearest of these boundaries.
The accumulated perturbation is scaled by (1 + overshoot) so the point ends just past the
boundary. Each step costs one forward pass and one backward pass per candidate class.

Minimal-distance mode (``minimal=True``): the attack ignores eps and reports per sample the
distance of the adversarial point it found (``inf`` where it found none within ``steps``);
``x_adv`` is that point. Bounded mode (default): the point found is projected into the
threat's ball and checked by the model there, so ``x_adv`` is inside the ball and ``success``
means misclassified inside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Counter, ModelGuard, finish, prepare
from robustlab.results import AttackResult
from robustlab.threats import LpBall, check_lp
from robustlab.validation import check_nonneg_float, check_positive_int


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _col(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def logit_diff_grads(counter: Counter, x: Tensor, y: Tensor | None, classes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Logits (N, K) at ``x``, the differences f_c - f_y (N, M) for the classes ``classes``
    (N, M), and their input gradients (N, M, ...).

    ``y`` None: the reference class is, per sample, the most likely class other than
    ``classes[:, 0]`` at ``x`` (the binding competitor of a targeted attack).
    Counted as one forward and M backward passes per sample (one backward per column).
    """
    n, m = classes.shape
    xg = x.detach().requires_grad_(True)
    grads = []
    with torch.enable_grad():
        out = counter.model(xg)
        if y is None:
            y = out.detach().scatter(1, classes[:, :1], float("-inf")).argmax(dim=1)
        diffs = out.gather(1, classes) - out.gather(1, y[:, None])
        for j in range(m):
            (g,) = torch.autograd.grad(diffs[:, j].sum(), xg, retain_graph=j < m - 1)
            grads.append(g)
    counter.forward += n
    counter.backward += n * m
    return out.detach(), diffs.detach(), torch.stack(grads, dim=1)


def other_classes(logits: Tensor, y: Tensor, m: int) -> Tensor:
    """(N, m) the ``m`` classes other than y with the highest logits, most likely first."""
    masked = logits.scatter(1, y[:, None], float("-inf"))
    return masked.topk(m, dim=1).indices


def bounded_finish(counter: Counter, threat: LpBall, x: Tensor, y: Tensor, target: Tensor | None,
                   x_cand: Tensor) -> tuple[Tensor, Tensor]:
    """Project candidate points into the threat's ball and ask the model there (one counted
    forward per point). Returns the points and their (N,) success."""
    x_ret = threat.project(x_cand.detach(), x)
    pred = counter.logits(x_ret).argmax(dim=1)
    return x_ret, (pred == target) if target is not None else (pred != y)


def minimal_result(threat: LpBall, x: Tensor, x_best: Tensor, found: Tensor, counter: Counter) -> AttackResult:
    """An AttackResult for minimal-distance mode: distance = Lp distance of the adversarial
    point found, ``inf`` where none was found (there x_adv = x)."""
    x_adv = torch.where(_col(found, x), x_best, x).detach()
    dist = threat.distance(x_adv, x)
    dist = torch.where(found, dist, torch.full_like(dist, float("inf")))
    return AttackResult(x_adv=x_adv, success=found.clone(), distance=dist.detach(),
                        forward_calls=counter.forward, backward_calls=counter.backward)


@dataclass(frozen=True)
class DeepFool:
    """DeepFool, untargeted, Linf or L2.

    Args:
        threat: the LpBall; its norm sets the geometry, its eps the ball of bounded mode.
        steps: maximal number of linearisation steps.
        overshoot: the accumulated perturbation is scaled by 1 + overshoot.
        candidates: how many of the most likely other classes are considered (each costs a
            backward pass per step); capped at the number of classes minus 1.
        minimal: minimal-distance mode (see the module docstring).
    """

    threat: LpBall
    steps: int = 50
    overshoot: float = 0.02
    candidates: int = 9
    minimal: bool = False
    seed: int | None = 0  # unused (deterministic); kept so evaluate can seed every attack alike

    def __post_init__(self) -> None:
        check_lp(self.threat)
        if self.threat.norm not in ("linf", "l2"):
            raise ValueError(f"threat: DeepFool supports linf and l2, got {self.threat.norm!r}")
        check_positive_int(self.steps, "steps")
        check_nonneg_float(self.overshoot, "overshoot")
        check_positive_int(self.candidates, "candidates")

    @property
    def name(self) -> str:
        return "DeepFool"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch: x (N, C, H, W) in [0, 1], y (N,) int64 labels. Untargeted only."""
        if target is not None:
            raise ValueError("target: DeepFool is untargeted; use FAB or CarliniWagner for targeted attacks")
        n_classes = prepare(model, x, y, None)
        y = y.to(torch.int64)
        m = min(self.candidates, n_classes - 1)
        n = x.shape[0]
        q_linf = self.threat.norm == "linf"
        with ModelGuard(model):
            counter = Counter(model)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            x_best = x.detach().clone()
            r_tot = torch.zeros_like(x)
            classes = None
            idx = torch.arange(n, device=x.device)
            xs = x.detach().clone()
            for it in range(self.steps + 1):
                yi = y[idx]
                if classes is None:
                    # Candidate classes from the clean logits (fixed for the run, as in the paper).
                    clean = counter.logits(x)
                    classes = other_classes(clean, y, m)
                logits, diffs, grads = logit_diff_grads(counter, xs, yi, classes[idx])
                adv = logits.argmax(dim=1) != yi
                if bool(adv.any()):
                    found[idx[adv]] = True
                    x_best[idx[adv]] = xs[adv]
                keep = ~adv
                if it == self.steps or not bool(keep.any()):
                    if not self.minimal:
                        x_best[idx[keep]] = xs[keep]  # last iterate: bounded mode may still project it
                    break
                idx, xs, diffs, grads = idx[keep], xs[keep], diffs[keep], grads[keep]
                g = grads.reshape(grads.shape[0], grads.shape[1], -1)
                gnorm = (g.abs().sum(dim=2) if q_linf else g.norm(dim=2)).clamp_min(1e-12)
                dist = diffs.abs() / gnorm
                best = dist.argmin(dim=1)
                ar = torch.arange(idx.numel(), device=x.device)
                w = g[ar, best]
                f = diffs[ar, best].abs()
                if q_linf:
                    r = _col((f + 1e-4) / gnorm[ar, best], xs) * w.sign().reshape(xs.shape)
                else:
                    r = _col((f + 1e-4) / gnorm[ar, best] ** 2, xs) * w.reshape(xs.shape)
                r_tot[idx] = r_tot[idx] + r
                xs = (x[idx] + (1 + self.overshoot) * r_tot[idx]).clamp(0.0, 1.0)
            if self.minimal:
                return minimal_result(self.threat, x, x_best, found, counter)
            x_ret, success = bounded_finish(counter, self.threat, x, y, None, x_best)
        return finish(self.threat, x, x_ret, success, counter)
