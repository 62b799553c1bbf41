"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019): the smoothed classifier
g(x) = argmax_c P(f(x + N(0, sigma^2 I)) = c) and its L2 certificate.

    smoothed = Smoothed(base, sigma=0.25)
    pred = smoothed.predict(x, n=1000, alpha=0.001)                # (N,), -1 = abstain
    pred, radius = smoothed.certify(x, n0=100, n=100_000, alpha=0.001)
    result = Smoothing(sigma=0.25)(base_or_smoothed, x, y, LpBall("l2", 0.5))   # CertResult

``certify`` is Cohen et al.'s CERTIFY: guess the top class from n0 noisy samples, count it in n
fresh ones, take the one-sided (1 - alpha) Clopper-Pearson lower bound pA of its probability,
and certify radius sigma * Phi^-1(pA) when pA > 1/2 (else abstain). With probability at least
1 - alpha over the noise, g is constant on the open L2 ball of that radius.

As a deployed model ``Smoothed`` is g itself, estimated by Cohen's PREDICT (abstains when a
binomial test cannot tell the top two classes apart at level alpha). It follows robustlab's
reject convention: ``rejects = True``, forward returns K + 1 scores, the first K the class
frequencies among the n samples and the last 2.0 where it abstains (0 otherwise), so the argmax
is the answer and "abstain" is a defended outcome. Gradient attacks go through
``attack_view()``: the soft smoothed classifier log E[softmax f(x + noise)] estimated with k
noise draws per step (EOT; SmoothAdv's attack, Salman et al. 2019).

Noise comes from a ``torch.Generator`` seeded in the constructor, in batches of
``batch_size`` samples; each call restarts it, so a call is a pure function of its input.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import beta, binom, norm
from torch import Tensor, nn

from robustlab.results import CertResult
from robustlab.threats import DIST_TOL, check_lp

ABSTAIN = -1
REJECT_SCORE = 2.0  # the reject column's score where g abstains (frequencies are <= 1)


def lower_confidence_bound(count: Tensor, n: int, alpha: float) -> Tensor:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion.

    ``count`` (N,) successes out of ``n`` trials; returns (N,) float64, 0 where count == 0.
    Equal to statsmodels' ``proportion_confint(count, n, alpha=2 * alpha, method="beta")[0]``
    (the call in Cohen et al.'s code): the alpha quantile of Beta(count, n - count + 1).
    """
    c = count.detach().cpu().double().numpy()
    lo = beta.ppf(alpha, c, n - c + 1)
    out = torch.as_tensor(lo, dtype=torch.float64)
    return torch.where(torch.as_tensor(c) > 0, out, torch.zeros_like(out))


def binomial_pvalue(n_a: Tensor, n_b: Tensor) -> Tensor:
    """(N,) two-sided p-value of the exact binomial test of n_a successes in n_a + n_b trials
    at p = 1/2 (``scipy.stats.binomtest(n_a, n_a + n_b, 0.5).pvalue``, vectorised)."""
    a = n_a.detach().cpu().double().numpy()
    b = n_b.detach().cpu().double().numpy()
    p = 2.0 * binom.cdf(np.minimum(a, b), a + b, 0.5)  # the test is symmetric at p = 1/2
    return torch.as_tensor(p, dtype=torch.float64).clamp(max=1.0)


def radius_from_pa(pa_lower: Tensor, sigma: float) -> Tensor:
    """sigma * Phi^-1(pA) where pA > 1/2, else 0. (N,) float64."""
    p = pa_lower.double()
    r = torch.as_tensor(norm.ppf(p.numpy()), dtype=torch.float64) * sigma
    return torch.where(p > 0.5, r, torch.zeros_like(r))


def _check_positive(name: str, value: float, integer: bool = False) -> None:
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name}: must be > 0, got {value}")


class Smoothed(nn.Module):
    """The Gaussian-smoothed classifier of ``model`` (the base classifier f).

    Args:
        model: base classifier, (M, C, H, W) in [0, 1] -> (M, K) logits.
        sigma: noise standard deviation in input units; > 0.
        n: noise samples per point for ``forward`` (Cohen's PREDICT).
        alpha: PREDICT's test level (the probability of returning a class other than g(x)
            is at most alpha).
        batch_size: noisy samples per base-model call.
        seed: seeds the noise; every call restarts the generator from it.
        eot_samples: noise draws per forward of ``attack_view()``.
    """

    rejects = True

    def __init__(self, model: nn.Module, sigma: float, n: int = 1000, alpha: float = 0.001,
                 batch_size: int = 1000, seed: int = 0, eot_samples: int = 8) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        _check_positive("sigma", sigma)
        _check_positive("n", n, integer=True)
        _check_positive("batch_size", batch_size, integer=True)
        _check_positive("eot_samples", eot_samples, integer=True)
        if not 0 < alpha < 1:
            raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
        self.model = model
        self.sigma = float(sigma)
        self.n, self.alpha, self.batch_size = n, float(alpha), batch_size
        self.seed, self.eot_samples = int(seed), eot_samples

    # -- sampling -------------------------------------------------------------------------
    def _generator(self, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed)

    @torch.inference_mode()
    def sample_counts(self, x: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(N, K) int64: how often f's argmax is each class on n noisy copies of each x[i].

        x (N, C, H, W) in [0, 1]. Noise is drawn into one reused buffer, batch_size at a time.
        """
        _check_positive("n", n, integer=True)
        gen = generator if generator is not None else self._generator(x.device)
        counts: Tensor | None = None
        buf = torch.empty((min(n, self.batch_size), *x.shape[1:]), dtype=x.dtype, device=x.device)
        for i in range(x.shape[0]):
            left = n
            while left > 0:
                m = min(left, self.batch_size)
                noise = buf[:m]
                torch.randn(noise.shape, generator=gen, out=noise)
                noise.mul_(self.sigma).add_(x[i])
                logits = self.model(noise)
                if counts is None:
                    counts = torch.zeros((x.shape[0], logits.shape[1]), dtype=torch.int64, device=x.device)
                pred = logits.argmax(dim=1)
                counts[i] += torch.bincount(pred, minlength=counts.shape[1])
                left -= m
        assert counts is not None
        return counts

    # -- Cohen et al.'s two procedures -----------------------------------------------------
    def predict(self, x: Tensor, n: int, alpha: float) -> Tensor:
        """PREDICT: (N,) int64 class of g at each x[i], or -1 (abstain) when the binomial test
        of the top two counts among n samples has p-value > alpha."""
        counts = self.sample_counts(x, n)
        top = counts.topk(2, dim=1)
        p = binomial_pvalue(top.values[:, 0], top.values[:, 1])
        pred = top.indices[:, 0].clone()
        pred[(p > alpha).to(pred.device)] = ABSTAIN
        return pred

    def certify(self, x: Tensor, n0: int, n: int, alpha: float) -> tuple[Tensor, Tensor]:
        """CERTIFY: (prediction (N,) int64, -1 = abstain; radius (N,) float64 in L2 input units,
        0 where it abstains). Selection uses n0 samples, estimation n fresh ones (one generator,
        consecutive draws: the two sets of samples are independent)."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
        gen = self._generator(x.device)
        guess = self.sample_counts(x, n0, gen).argmax(dim=1)
        counts = self.sample_counts(x, n, gen)
        n_a = counts.gather(1, guess[:, None]).squeeze(1)
        pa = lower_confidence_bound(n_a, n, alpha)
        radius = radius_from_pa(pa, self.sigma)
        pred = torch.where((pa > 0.5).to(guess.device), guess, torch.full_like(guess, ABSTAIN))
        return pred, radius

    # -- the deployed model -----------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """(N, K + 1) scores: class frequencies among ``self.n`` samples, and REJECT_SCORE in
        the last column where PREDICT abstains (so argmax is PREDICT's answer)."""
        counts = self.sample_counts(x, self.n)
        top = counts.topk(2, dim=1)
        abstain = binomial_pvalue(top.values[:, 0], top.values[:, 1]) > self.alpha
        scores = torch.zeros((x.shape[0], counts.shape[1] + 1), dtype=torch.float32, device=x.device)
        scores[:, :-1] = counts.float() / self.n
        scores[:, -1] = abstain.to(x.device).float() * REJECT_SCORE
        return scores

    def attack_view(self) -> "SoftSmoothed":
        """The soft smoothed classifier with EOT: what PGD should differentiate (SmoothAdv)."""
        return SoftSmoothed(self.model, self.sigma, self.eot_samples, self.seed).eval()

    def naive_view(self) -> nn.Module:
        """The bare base classifier (for attacks that ignore the smoothing)."""
        return self.model

    def spec(self) -> str:
        return f"smoothing:sigma={self.sigma},n={self.n},alpha={self.alpha},seed={self.seed}"


class SoftSmoothed(nn.Module):
    """log E_noise[softmax f(x + sigma * noise)], estimated with ``samples`` draws per call.

    Output (N, K + 1): the K log-probabilities (floored at log 1e-30) and a reject column at
    -1e4, so it lines up with ``Smoothed``'s columns and can never look like "reject". The
    noise generator is seeded once at construction and advances with every call (fresh
    noise per attack step, as in Salman et al. 2019). ``eot_samples`` (= ``samples``) states
    that every call already averages over that many draws of the model's randomness, so a
    gradient through it is an EOT gradient.
    """

    rejects = True

    def __init__(self, model: nn.Module, sigma: float, samples: int = 8, seed: int = 0) -> None:
        super().__init__()
        _check_positive("sigma", sigma)
        _check_positive("samples", samples, integer=True)
        self.model, self.sigma, self.samples = model, float(sigma), samples
        self.seed = int(seed)
        self.eot_samples = samples
        self._gen: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self._gen is None or self._gen.device != x.device:
            self._gen = torch.Generator(device=x.device).manual_seed(self.seed)
        rep = x.repeat_interleave(self.samples, dim=0)
        noise = torch.randn(rep.shape, generator=self._gen, dtype=x.dtype, device=x.device)
        probs = F.softmax(self.model(rep + self.sigma * noise), dim=1)
        avg = probs.view(x.shape[0], self.samples, -1).mean(dim=1)
        logp = avg.clamp_min(1e-30).log()
        return torch.cat([logp, torch.full_like(logp[:, :1], -1e4)], dim=1)


class Smoothing:
    """Certifier: Cohen et al.'s CERTIFY against an L2 ball.

    ``Smoothing(sigma, n0, n, alpha)(model, x, y, threat) -> CertResult``. ``model`` is the
    base classifier, or a ``Smoothed`` (its base model is used, and its sigma when this
    certifier's ``sigma`` is None; a different sigma raises). ``certified[i]`` holds when g
    predicts y[i] and the radius exceeds the threat's radius (with the threats' distance
    tolerance); ``radius`` is the certified L2 radius wherever g is right (0 elsewhere), so one
    call gives the whole certified-accuracy-vs-radius curve. The guarantee holds with
    probability 1 - alpha per point.
    """

    name = "smoothing"

    def __init__(self, sigma: float | None = None, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
                 batch_size: int = 1000, seed: int = 0) -> None:
        if sigma is not None:
            _check_positive("sigma", sigma)
        _check_positive("n0", n0, integer=True)
        _check_positive("n", n, integer=True)
        _check_positive("batch_size", batch_size, integer=True)
        if not 0 < alpha < 1:
            raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
        self.sigma, self.n0, self.n, self.alpha = sigma, n0, n, float(alpha)
        self.batch_size, self.seed = batch_size, seed

    def smoothed(self, model: nn.Module) -> Smoothed:
        if isinstance(model, Smoothed):
            if self.sigma is not None and not math.isclose(self.sigma, model.sigma):
                raise ValueError(f"sigma: {self.sigma} differs from the model's smoothing sigma {model.sigma}")
            base, sigma = model.model, model.sigma
        else:
            if self.sigma is None:
                raise ValueError("sigma: required when model is a bare base classifier")
            base, sigma = model, self.sigma
        return Smoothed(base, sigma, batch_size=self.batch_size, seed=self.seed)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, threat: object) -> CertResult:
        t0 = time.time()
        ball = check_lp(threat)
        if ball.norm != "l2":
            raise ValueError(f"threat: smoothing with Gaussian noise certifies L2 balls, got {ball.spec()}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
        g = self.smoothed(model)
        pred, radius = g.certify(x, self.n0, self.n, self.alpha)
        correct = pred == y.to(pred.device)
        eps = ball.radius(x).double().to(radius.device)
        certified = correct & (radius > eps + DIST_TOL * eps.clamp(min=1.0))
        radius = torch.where(correct, radius, torch.zeros_like(radius))
        return CertResult(certified=certified, radius=radius, prediction=pred, bound=None,
                          forward_calls=x.shape[0] * (self.n0 + self.n), seconds=time.time() - t0,
                          method=f"{self.name}:sigma={g.sigma},n0={self.n0},n={self.n},alpha={self.alpha}")


def load_smoothed(entry: object, state: dict[str, Tensor] | None) -> Smoothed:
    """Zoo loader: mnist_cnn base weights wrapped in ``Smoothed`` with the card's sigma."""
    from robustlab.models.architectures import BUILDERS
    from robustlab.models.zoo import card

    name = getattr(entry, "name")
    info = card(name)
    sigma = info.get("smoothing", {}).get("sigma")
    if sigma is None:
        raise ValueError(f"entry: the card of {name!r} states no smoothing sigma")
    base = BUILDERS[getattr(entry, "architecture")]()
    if state is not None:
        base.load_state_dict(state, strict=True)
    return Smoothed(base.eval(), float(sigma)).eval()


__all__ = ["Smoothed", "SoftSmoothed", "Smoothing", "lower_confidence_bound", "binomial_pvalue",
           "radius_from_pa", "load_smoothed", "ABSTAIN"]
