"""``FastEval``: an evaluation as strong as AutoAttack's standard version that spends its budget
where it can still change the outcome.

AutoAttack pays a fixed budget on every robust point (APGD-CE 100 steps, APGD-T against 9 fixed
targets x 100, FAB-T 9 x 100, Square 5000 queries), although on a robust model most of it goes
to points no attack breaks. ``FastEval`` runs the same kinds of attack (APGD on cross-entropy,
targeted APGD on the DLR loss, Square), and decides per point, from the margin the model shows
at the best point found so far, what to run next:

1. **APGD-CE** (``steps``) on every clean-correct point, from a random start.
2. **Margin-guided targets** (the minimum-margin idea of Gao et al. 2022): ``n_targets``
   targeted APGD-DLR runs, each against the most likely class not yet targeted at the point's
   current best point (not a fixed ranking of the clean logits), each from a random start
   (``first_target_warm`` starts the first from APGD-CE's best point instead: on a
   gradient-masking model that point is where the misleading gradient led, and a targeted run
   started there misses points a random start breaks). **Escalation**: once a targeted
   run has broken any point APGD-CE missed, the untargeted gradient is not to be trusted on this
   model and the targets go on up to ``escalate_targets`` (9, as AutoAttack) on the open points.
3. **Early rejection**: after the first targeted run, a point whose relative margin (below) is
   still above ``reject_margin`` and fell by less than ``shrink_tol`` in that run is given up as
   robust: large and stable margins are where AutoAttack's remaining budget buys nothing.
4. **Budget moved to shrinking margins**: up to ``extra_runs`` further targeted runs, warm
   started from the best point, on the points whose margin fell by more than ``shrink_tol`` in
   their last run (not yet converged).
5. **Square** (``square_queries``, Linf and L2) only on the points whose relative margin stays
   below ``square_margin``: Square's random search (its window schedule and steps), warm-started
   from the point's lowest-margin point, where the gradient attacks came close but stopped.
   After ``square_min_queries`` it gives up, every ``square_check_every`` queries, the points
   whose margin has fallen by a smaller fraction than the fraction of the budget spent: at their
   rate so far they would not reach the boundary within the budget.

The relative margin of a point is (z_y - max_{i != y} z_i) at its best point divided by the same
margin at the clean input: 1 at the start, 0 on the decision boundary. It is scale-free per point,
so one threshold serves models whose logits differ in scale.

Honest by construction: every model call goes through one :class:`~robustlab.attacks.base.Counter`
(Square's queries included), a point counts as broken only where the
model's logits at the returned point misclassify it, and ``x_adv`` is always inside the ball.

Models that reject (``model.rejects = True``: K + 1 scores, the last one "reject", e.g. a
``Detected`` defense's attack view or a ``Smoothed`` model) are handled with the reject-aware
rule and losses of ``attacks.losses``: a rejected point is a defended one, margins are taken
against max(z_y, z_reject), targets are chosen among the K classes only, and the targeted runs
ascend ``dlr_targeted_defended`` (the target over the defended logit, C&W 2017's combined
objective) instead of the plain targeted DLR.
Because the shortcut can in principle miss points AutoAttack breaks, evaluations with it should
carry the self-audit (``evaluation.checks_fast_audit.audit_fast``), which re-runs the full
standard ensemble on a random sample of the points left robust.

Cost on a robust point with the defaults: 2 x 101 passes per APGD run times 2 (CE and the first
target), a forward per margin check, more only where margins are small or still shrinking; see
benchmarks/results/fast.md for measured totals against AutoAttack.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustlab.attacks.apgd_run import apgd_run
from robustlab.attacks.base import Counter, ModelGuard, finish, make_generator, prepare
from robustlab.attacks.losses import is_success, margin_loss, rejects
from robustlab.results import AttackResult
from robustlab.threats import LpBall, check_lp
from robustlab.threats.lp import sphere_start as _random_start
from robustlab.validation import check_nonneg_float, check_positive_int

_TINY = 1e-12


def logit_margin(logits: Tensor, y: Tensor, reject: bool = False) -> Tensor:
    """(N,) defended margin: z_y - max_{i != y} z_i, positive while ``y`` is predicted and
    <= 0 once broken. For a rejecting model (``reject``: the last column is "reject") the
    defended logit is max(z_y, z_reject) and the others are the K class columns without y, so
    the margin is <= 0 exactly where ``losses.is_success`` holds (ties aside): a rejected point
    is a defended one."""
    return -margin_loss(logits, y, reject)


@dataclass(frozen=True)
class StageStats:
    """What one stage of :class:`FastEval` did (given to ``FastEval.on_stage``).

    Attributes:
        stage: "apgd-ce", "apgd-t1".."apgd-tK", "extra1".., "square".
        attacked: points the stage ran on; broken: of those, points it broke.
        rejected: points given up as robust after this stage (early rejection).
        forward_calls, backward_calls: passes the stage spent, per sample.
    """

    stage: str
    attacked: int
    broken: int
    rejected: int
    forward_calls: int
    backward_calls: int


@dataclass(frozen=True)
class FastEval:
    """The ``fast`` preset: adaptive AutoAttack-strength evaluation in one call (see module doc).

    Args:
        threat: the LpBall (linf, l2 or l1; Square runs only for linf and l2).
        steps: iterations of every APGD run (100, as in AutoAttack).
        n_targets: margin-guided targeted runs per point (at most classes - 1).
        extra_runs: further warm-started targeted runs for points whose margin still shrinks.
        shrink_tol: a run that lowers the relative margin by more than this counts as shrinking.
        reject_margin: after the first targeted run, points whose relative margin is above this
            and not shrinking are given up as robust (> 1 turns early rejection off).
        square_margin: Square runs on points whose relative margin is below this (0: never).
        square_queries: Square's query budget per point (5000, as in AutoAttack).
        escalate_targets: once any targeted run has broken a point that APGD-CE missed (its
            gradient misled it: e.g. a gradient-masking one-step-trained model), the
            margin-guided targets go on up to this many (9: AutoAttack's APGD-T) on the points
            still open; ``n_targets`` or less turns escalation off.
        seed: seeds the random starts and Square; the same seed gives the same x_adv.
        on_stage: called with a :class:`StageStats` after every stage (benchmarks, logging).
    """

    threat: LpBall
    steps: int = 100
    n_targets: int = 3
    extra_runs: int = 1
    shrink_tol: float = 0.05
    reject_margin: float = 0.5
    square_margin: float = 0.3
    square_queries: int = 5000
    escalate_targets: int = 9
    first_target_warm: bool = False
    square_min_queries: int = 1500
    square_check_every: int = 250
    seed: int | None = 0
    on_stage: Callable[[StageStats], None] | None = None

    def __post_init__(self) -> None:
        check_lp(self.threat)
        check_positive_int(self.steps, "steps")
        check_positive_int(self.n_targets, "n_targets")
        check_positive_int(self.extra_runs, "extra_runs", minimum=0)
        check_positive_int(self.square_queries, "square_queries")
        check_positive_int(self.escalate_targets, "escalate_targets")
        check_positive_int(self.square_min_queries, "square_min_queries")
        check_positive_int(self.square_check_every, "square_check_every")
        if not isinstance(self.first_target_warm, bool):
            raise TypeError(f"first_target_warm: expected a bool, got {type(self.first_target_warm).__name__}")
        for name in ("shrink_tol", "reject_margin", "square_margin"):
            check_nonneg_float(getattr(self, name), name)
        if self.on_stage is not None and not callable(self.on_stage):
            raise TypeError(f"on_stage: expected a callable or None, got {type(self.on_stage).__name__}")

    @property
    def name(self) -> str:
        return "fast"

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch: x (N, C, H, W) in [0, 1], y (N,) int64 labels. Untargeted only.

        Returns an AttackResult whose ``success`` comes from the model's logits at ``x_adv``
        (the first adversarial point found, else the lowest-margin point), with every forward
        and backward pass counted per sample. A model with ``rejects = True`` returns (N, K + 1)
        scores, the last "reject"; a rejected point is not a success.
        """
        if target is not None:
            raise ValueError("target: the fast evaluation is untargeted; use APGDT for a targeted attack")
        n_out = prepare(model, x, y, None)
        reject = rejects(model)
        n_classes = n_out - 1 if reject else n_out
        if reject and bool((y >= n_classes).any()):
            raise ValueError(f"y: labels must be below the model's {n_classes} classes (column {n_classes} is "
                             "its reject output)")
        y = y.to(torch.int64)
        gen = make_generator(self.seed, x.device)
        with ModelGuard(model):
            run = _Run(self, Counter(model), x, y, n_classes, gen, reject)
            run.go()
        return finish(self.threat, x, run.x_ret, run.success, run.counter)


class _Run:
    """The per-call state of a FastEval run: per point the returned point, success, the
    relative margin at the best point and the classes already targeted."""

    def __init__(self, cfg: FastEval, counter: Counter, x: Tensor, y: Tensor, n_classes: int,
                 gen: torch.Generator, reject: bool = False) -> None:
        self.cfg, self.counter, self.x, self.y, self.gen = cfg, counter, x, y, gen
        self.n_classes, self.reject = n_classes, reject  # n_classes: K (without the reject column)
        n = x.shape[0]
        self.x_ret = x.detach().clone()
        logits = counter.logits(x)
        m = logit_margin(logits, y, reject)
        self.success = is_success(logits, y, None, reject)
        self.m_clean = m.clamp_min(_TINY)
        self.rel = torch.where(self.success, torch.zeros_like(m), torch.ones_like(m))
        self.logits_best = logits
        # Classes already targeted per point (the reject column, when present, never is a target).
        self.targeted = torch.zeros(n, logits.shape[1], dtype=torch.bool, device=x.device)
        self.targeted[torch.arange(n, device=x.device), y] = True
        if reject:
            self.targeted[:, -1] = True
        self.rejected = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.drop = torch.zeros(n, dtype=x.dtype, device=x.device)  # fall of rel in the last run

    # -- bookkeeping --------------------------------------------------------------------------
    def _stage(self, name: str, idx: Tensor, before: tuple[int, int], rejected: int = 0) -> None:
        if self.cfg.on_stage is None:
            return
        f0, b0 = before
        broken = int(self.success[idx].sum()) if idx.numel() else 0
        self.cfg.on_stage(StageStats(name, int(idx.numel()), broken, rejected,
                                     self.counter.forward - f0, self.counter.backward - b0))

    def _mark(self) -> tuple[int, int]:
        return self.counter.forward, self.counter.backward

    def _update(self, idx: Tensor, succ: Tensor, adv: Tensor, x_best: Tensor) -> None:
        """Record a run on points ``idx``: successes (``adv``, decided by the run from the
        model's logits there) and, for the others, the margin at the run's best point."""
        if bool(succ.any()):
            self.x_ret[idx[succ]] = adv[succ]
            self.success[idx[succ]] = True
            self.rel[idx[succ]] = 0.0
        keep = ~succ
        ik = idx[keep]
        self.drop[idx] = 0.0
        if ik.numel() == 0:
            return
        xb = x_best[keep]
        logits = self.counter.logits(xb)
        m = logit_margin(logits, self.y[ik], self.reject)
        broke = is_success(logits, self.y[ik], None, self.reject)  # the best point of the loss is adversarial after all (e.g. targeted run)
        if bool(broke.any()):
            self.x_ret[ik[broke]] = xb[broke]
            self.success[ik[broke]] = True
            self.rel[ik[broke]] = 0.0
        r = (m / self.m_clean[ik]).clamp_min(0.0)
        better = ~broke & (r < self.rel[ik])
        self.drop[ik] = torch.where(better, self.rel[ik] - r, torch.zeros_like(r))
        ib = ik[better]
        self.x_ret[ib] = xb[better]
        self.rel[ib] = r[better]
        self.logits_best[ib] = logits[better]

    # -- stages -------------------------------------------------------------------------------
    def _apgd(self, idx: Tensor, loss: str, target: Tensor | None, warm: bool) -> None:
        cfg, th = self.cfg, self.cfg.threat
        x, y = self.x[idx], self.y[idx]
        start = self.x_ret[idx] if warm else _random_start(th.norm, x, th.eps, self.gen)
        if loss == "dlr" and target is not None and self.reject:
            loss = "dlr-defended"  # the target over max(z_y, z_reject): a rejected point is no progress
        x_best, _, succ, adv = apgd_run(self.counter, th.norm, x, y, target, start, eps=th.eps, steps=cfg.steps,
                                        loss=loss, l1_init_sparsity=warm and th.norm == "l1", reject=self.reject)
        self._update(idx, succ, adv, x_best)

    def _next_target(self, idx: Tensor) -> Tensor:
        """Per point, the most likely class at its best point that was not targeted yet."""
        z = self.logits_best[idx].masked_fill(self.targeted[idx], float("-inf"))
        t = z.argmax(dim=1)
        self.targeted[idx, t] = True
        return t

    def _open(self, extra: Tensor | None = None) -> Tensor:
        todo = ~self.success & ~self.rejected
        if extra is not None:
            todo &= extra
        return todo.nonzero().squeeze(1)

    def go(self) -> None:
        cfg = self.cfg
        tloss = "dlr" if self.n_classes >= 4 else "ce"
        idx = self._open()
        mark = self._mark()
        if idx.numel():
            self._apgd(idx, "ce", None, warm=False)
        self._stage("apgd-ce", idx, mark)

        targeted_broke = 0  # points the targeted runs broke after APGD-CE missed them
        r = 0
        while r < min(max(cfg.n_targets, cfg.escalate_targets if targeted_broke else 0), self.n_classes - 1):
            r += 1
            idx = self._open()
            if idx.numel() == 0:
                break
            mark = self._mark()
            before = int(self.success.sum())
            self._apgd(idx, tloss, self._next_target(idx), warm=r == 1 and cfg.first_target_warm)
            targeted_broke += int(self.success.sum()) - before
            n_rej = 0
            if r == 1:
                rej = ~self.success & (self.rel > cfg.reject_margin) & (self.drop <= cfg.shrink_tol)
                self.rejected |= rej
                n_rej = int(rej.sum())
            self._stage(f"apgd-t{r}", idx, mark, n_rej)

        for e in range(1, cfg.extra_runs + 1):
            idx = self._open(self.drop > cfg.shrink_tol)
            if idx.numel() == 0:
                break
            mark = self._mark()
            z = self.logits_best[idx].clone()
            z[torch.arange(idx.numel(), device=z.device), self.y[idx]] = float("-inf")
            if self.reject:
                z[:, -1] = float("-inf")
            self._apgd(idx, tloss, z.argmax(dim=1), warm=True)
            self._stage(f"extra{e}", idx, mark)

        if self.cfg.threat.norm in ("linf", "l2") and cfg.square_margin > 0:
            idx = self._open(self.rel < cfg.square_margin)
            if idx.numel():
                mark = self._mark()
                self._square(idx)
                self._stage("square", idx, mark)

    def _square(self, idx: Tensor) -> None:
        """Square's random search (its window schedule and steps), warm-started from each point's
        lowest-margin point; every query through the counter, a candidate kept when the margin
        falls, a point done when the model misclassifies it."""
        from robustlab.attacks.square import Square, square_fraction

        cfg, th = self.cfg, self.cfg.threat
        sq = Square(th, max_queries=cfg.square_queries, p_init=0.8)
        gen = make_generator(None if cfg.seed is None else cfg.seed + 104729, self.x.device)
        x0, y = self.x[idx], self.y[idx]
        xb = self.x_ret[idx].clone()
        best = logit_margin(self.logits_best[idx], y, self.reject)  # the logits at exactly xb
        step = sq._linf_step if th.norm == "linf" else sq._l2_step
        n_iters = cfg.square_queries
        ok = torch.zeros(idx.numel(), dtype=torch.bool, device=self.x.device)  # the model errs at xb
        live = torch.ones_like(ok)  # still searched (not won, not given up by the progress rule)
        m0 = best.clamp_min(_TINY)  # the margin at Square's start
        for it in range(n_iters):
            if it >= cfg.square_min_queries and it % cfg.square_check_every == 0:
                # The progress rule: the margin must have fallen by at least the fraction of the
                # budget spent, else at its rate so far it would not reach 0 within the budget.
                live &= ok | (best / m0 <= (n_iters - it) / n_iters)
            a = (live & ~ok).nonzero().squeeze(1)
            if a.numel() == 0:
                break
            cand = step(x0[a], xb[a], square_fraction(sq.p_init, it, n_iters), th.eps, gen)
            logits = self.counter.logits(cand)
            m = logit_margin(logits, y[a], self.reject)
            won = is_success(logits, y[a], None, self.reject)
            better = (m < best[a]) | won
            xb[a[better]] = cand[better]
            best[a[better]] = m[better]
            ok[a[won]] = True
        if bool(ok.any()):
            self.x_ret[idx[ok]] = xb[ok]
            self.success[idx[ok]] = True
            self.rel[idx[ok]] = 0.0
        keep = ~ok
        self.x_ret[idx[keep]] = xb[keep]


def build_fast(threat: LpBall, seed: int = 0) -> list[FastEval]:
    """The ``fast`` preset for ``threat``: one composite attack (a single report row)."""
    check_lp(threat)
    return [FastEval(threat, seed=seed)]


__all__ = ["FastEval", "StageStats", "build_fast", "logit_margin"]
