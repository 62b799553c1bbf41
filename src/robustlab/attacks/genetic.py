"""A black-box genetic attack (Alzantot et al. 2018, "Did you hear that?"), for any Lp ball.

Score access only, no gradients. Each clip keeps a population of perturbed copies inside its
ball. Per generation: query the population's scores, keep the fittest member (elitism), draw
parents with probabilities softmax(fitness / temperature), build each child by crossover
weighted by fitness (each coordinate from parent a with probability w_a / (w_a + w_b), w the
parents' selection weights, as Alzantot et al. do) and mutate each of its coordinates with
probability p, then project into the ball. The mutation probability follows the momentum rule
of Taori et al. (2019): p <- alpha * p + beta / |f_best - f_best_previous|, clipped to
[``mutation_prob``, 1], so a stalled search mutates more. A clip leaves the search at the
generation its elite succeeds (early stop per clip: no query is spent on it after that).

Scaled to the budget (``init="vertex"``, the default for an Linf ball such as a dB budget):
the population starts at random vertices of each clip's ball (every sample moved by +-r, r the
clip's radius, so the whole budget is used from the first query, as Square's initial point
does) and a mutation re-draws a sample's sign (+-r). ``init="clean"`` is Alzantot et al.'s
original: members start as mutations of the clean clip and a mutation adds uniform noise in
[-r, r]; L2 balls always use that.

Fitness, on the scores: the target's log-probability (targeted); untargeted, the margin
max_{k != y} z_k - z_y by default (``fitness="ce"``: minus the true class's log-probability,
Alzantot et al.'s choice, which is flat in float32 on a confident model; for a rejecting model
"true class or reject" is defended, see ``attacks.losses``).

Cost, counted per clip: one query on the clean input, then ``population`` queries per
generation until the elite succeeds; never more than 1 + population * generations.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robustlab.attacks._blackbox import (
    Queries,
    QueryBudgetExceeded,
    budget_stop,
    check_blackbox_inputs,
    check_labels,
    check_lp,
    require_scores,
)
from robustlab.attacks.base import ModelGuard, make_generator
from robustlab.attacks.losses import attack_loss, is_success, rejects
from robustlab.results import AttackResult
from robustlab.validation import check_positive_int


def _col(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


@dataclass(frozen=True)
class Genetic:
    """Alzantot et al.'s genetic search with momentum mutation.

    Args:
        threat: a Ball with an Lp ``norm`` and per-sample ``radius(x)`` (an ``LpBall``, a
            ``DbBall``, ...).
        population: members per clip (one of them the elite).
        generations: at most this many generations (the query budget is
            1 + population * generations per clip).
        mutation_prob: the initial and smallest per-coordinate mutation probability.
        alpha, beta: momentum update of the mutation probability (see the module docstring).
        temperature: of the parent-selection softmax over fitness (0.1: on kws-cnn at -30 dB,
            12 clips, 50 generations, untargeted success 75% at 0.1, 50% at 0.01, 67% at 0.3,
            42% at 1.0; targeted 67% at both 0.01 and 0.1).
        batch_size: clips searched at once (each sends ``population`` inputs per query).
        seed: the same seed gives the same adversarial examples.
        init: "vertex" (Linf only: start at random vertices of the ball, mutations re-draw
            signs at the radius) or "clean" (start near the clean clip, uniform-noise
            mutations; Alzantot et al.'s original). See the module docstring.
        block: runs of this many consecutive samples (along the last axis) share one mutation
            draw (hit and sign), so a mutation moves a short stretch of the waveform; None:
            64 for inputs whose last axis has >= 1024 samples (8 ms at 8 kHz audio), else 1.
            On ``kws-cnn`` at -30 dB, 12 clips, 50 generations: targeted success 17% with 1 or
            16, 67% with 64, 58% with 256 (``benchmarks/results/speech.md``).
        fitness: untargeted fitness: "margin" (max_{k != y} z_k - z_y, well conditioned on a
            confident model) or "ce" (-log p_y, which rounds to 0 in float32 once p_y is within
            1e-7 of 1, so the whole population ties and selection is blind). Targeted runs use
            log p_target.
    """

    threat: object
    population: int = 20
    generations: int = 250
    mutation_prob: float = 0.01
    alpha: float = 0.99
    beta: float = 0.001
    temperature: float = 0.1
    batch_size: int = 32
    seed: int | None = 0
    init: str = "vertex"
    block: int | None = None
    fitness: str = "margin"

    def __post_init__(self) -> None:
        check_lp(self.threat)
        if self.block is not None:
            check_positive_int(self.block, "block")
        if self.fitness not in ("margin", "ce"):
            raise ValueError(f"fitness: expected 'margin' or 'ce', got {self.fitness!r}")
        if self.init not in ("vertex", "clean"):
            raise ValueError(f"init: expected 'vertex' or 'clean', got {self.init!r}")
        check_positive_int(self.generations, "generations")
        check_positive_int(self.batch_size, "batch_size")
        if isinstance(self.population, bool) or not isinstance(self.population, int) or self.population < 2:
            raise ValueError(f"population: expected an int >= 2, got {self.population!r}")
        for name in ("mutation_prob", "alpha"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ValueError(f"{name}: expected a number in (0, 1], got {v!r}")
        for name in ("beta", "temperature"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}: expected a number > 0, got {v!r}")

    @property
    def name(self) -> str:
        return f"Genetic-{self.population}x{self.generations}"

    @property
    def max_queries(self) -> int:
        return 1 + self.population * self.generations

    def __call__(self, model: object, x: Tensor, y: Tensor, *, target: Tensor | None = None) -> AttackResult:
        """Attack a batch.

        Args:
            model: maps inputs (N, ...) in [0, 1] to (N, K) scores (an nn.Module, ``ScoreOnly``,
                an HTTP endpoint with score access, ...).
            x: (N, ...) clean inputs in [0, 1], e.g. audio (N, 1, T).
            y: (N,) int64 true labels.
            target: (N,) int64 target classes, or None (untargeted).

        Returns:
            AttackResult; ``queries`` (N,) holds the queries spent on each clip.
        """
        check_blackbox_inputs(model, x, y, target)
        require_scores(model, self.name)
        self.threat.validate(x)  # type: ignore[attr-defined]
        y = y.to(torch.int64)
        target = None if target is None else target.to(torch.int64)
        gen = make_generator(self.seed, x.device)
        reject = rejects(model)
        x_best = x.detach().clone()
        success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        with ModelGuard(model):
            q = Queries(model, x.shape[0], x.device)
            for s in range(0, x.shape[0], self.batch_size):
                idx = torch.arange(s, min(s + self.batch_size, x.shape[0]), device=x.device)
                try:
                    self._search(q, x, y, target, idx, x_best, success, gen, reject)
                except QueryBudgetExceeded as e:
                    budget_stop(self.name, e, q)
                    break
        return AttackResult(
            x_adv=x_best, success=success, distance=self.threat.distance(x_best, x).detach(),  # type: ignore[attr-defined]
            forward_calls=q.total, backward_calls=0, queries=q.per_sample.clone(),
        )

    def _fitness(self, scores: Tensor, y: Tensor, t: Tensor | None, reject: bool) -> Tensor:
        return attack_loss(self.fitness if t is None else "ce", scores, y, t, reject)

    def _search(self, q: Queries, x: Tensor, y: Tensor, target: Tensor | None, idx: Tensor, x_best: Tensor,
                success: Tensor, gen: torch.Generator, reject: bool) -> None:
        """Search the clips ``idx``; write their best points and success in place."""
        threat, pop = self.threat, self.population
        sc = q.scores(x[idx], idx)
        check_labels(y, target, q.n_classes)
        t_all = None if target is None else target[idx]
        done = is_success(sc, y[idx], t_all, reject)
        success[idx] = done
        act = idx[~done]
        if act.numel() == 0:
            return
        x0 = x[act]
        r = threat.radius(x0).to(x.dtype)  # type: ignore[attr-defined]
        # (n, P, ...) population: random vertices of the ball, or mutations of the clean clip.
        members = x0.unsqueeze(1).expand(-1, pop, *x0.shape[1:])
        start_p = 1.0 if self._vertex() else self.mutation_prob
        members = self._mutate(members, x0, r, torch.full((act.numel(),), start_p, device=x.device), gen)
        p_mut = torch.full((act.numel(),), self.mutation_prob, device=x.device)
        f_prev = torch.full((act.numel(),), float("nan"), device=x.device)
        for _ in range(self.generations):
            n = act.numel()
            flat = members.reshape(n * pop, *x0.shape[1:])
            rep = act.repeat_interleave(pop)
            yi = y[rep]
            ti = None if target is None else target[rep]
            sc = q.scores(flat, rep)
            fit = self._fitness(sc, yi, ti, reject).reshape(n, pop)
            ok = is_success(sc, yi, ti, reject).reshape(n, pop)
            # The elite: a successful member if there is one, else the fittest.
            key = fit.masked_fill(ok, float("inf"))
            best = key.argmax(dim=1)
            ar = torch.arange(n, device=x.device)
            elite = members[ar, best]
            x_best[act] = elite
            won = ok[ar, best]
            success[act] = won
            f_best = fit[ar, best]
            keep = ~won
            if not bool(keep.any()):
                return
            # Momentum mutation: a stalled elite mutates more.
            step = (f_best - f_prev).abs()
            grown = self.alpha * p_mut + self.beta / step.clamp_min(1e-12)
            p_mut = torch.where(torch.isnan(step), p_mut, grown).clamp(self.mutation_prob, 1.0)
            f_prev = f_best
            act, x0, r, p_mut, f_prev = act[keep], x0[keep], r[keep], p_mut[keep], f_prev[keep]
            members, fit, elite = members[keep], fit[keep], elite[keep]
            n = act.numel()
            # Parents drawn by softmax(fitness / temperature); each child coordinate from parent
            # a with probability w_a / (w_a + w_b) (crossover weighted by fitness).
            probs = torch.softmax((fit - fit.amax(dim=1, keepdim=True)) / self.temperature, dim=1)
            pa = torch.multinomial(probs, pop - 1, replacement=True, generator=gen)
            pb = torch.multinomial(probs, pop - 1, replacement=True, generator=gen)
            ar = torch.arange(n, device=x.device)[:, None]
            a, b = members[ar, pa], members[ar, pb]
            wa, wb = probs[ar, pa], probs[ar, pb]
            share = (wa / (wa + wb).clamp_min(1e-30)).to(x.dtype)  # (n, P - 1)
            mask = (torch.rand(a.shape, generator=gen, device=x.device, dtype=x.dtype)
                    < share.reshape(share.shape + (1,) * (a.dim() - 2)))
            children = self._mutate(torch.where(mask, a, b), x0, r, p_mut, gen)
            members = torch.cat([elite.unsqueeze(1), children], dim=1)

    def _block(self, last: int) -> int:
        if self.block is not None:
            return self.block
        return 64 if last >= 1024 else 1

    def _vertex(self) -> bool:
        return self.init == "vertex" and getattr(self.threat, "norm", None) == "linf"

    def _mutate(self, members: Tensor, x0: Tensor, r: Tensor, p: Tensor, gen: torch.Generator) -> Tensor:
        """Mutate each coordinate with probability p (per clip): "vertex" sets its perturbation
        to +-r (a random sign), "clean" adds uniform noise in [-r, r]; then project every member
        into its clip's ball. members (n, M, ...), x0 (n, ...), r and p (n,)."""
        n, m = members.shape[:2]
        # One draw per run of ``block`` consecutive samples along the last axis.
        last = members.shape[-1]
        block = self._block(last)
        nb = -(-last // block)
        shape = members.shape[:-1] + (nb,)
        u = torch.rand(shape, generator=gen, device=members.device, dtype=members.dtype)
        hit = torch.rand(shape, generator=gen, device=members.device, dtype=members.dtype) < _col(p, members)
        if block > 1:
            u = u.repeat_interleave(block, dim=-1)[..., :last]
            hit = hit.repeat_interleave(block, dim=-1)[..., :last]
        if self._vertex():
            base = x0.unsqueeze(1)
            vertex = base + torch.where(u < 0.5, -1.0, 1.0).to(members.dtype) * _col(r, members)
            flat = torch.where(hit, vertex, members).reshape(n * m, *x0.shape[1:])
        else:
            noise = (2 * u - 1) * _col(r, members) * hit
            flat = (members + noise).reshape(n * m, *x0.shape[1:])
        ref = x0.repeat_interleave(m, dim=0)
        return self.threat.project(flat, ref).reshape(members.shape)  # type: ignore[attr-defined]


__all__ = ["Genetic"]
