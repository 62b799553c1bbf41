"""Adversarial-example detectors, fitted on clean data, thresholded at a false-positive rate.

    det = rl.defenses.Mahalanobis().fit(model, x_train, y_train, x_calib=x_heldout)
    defended = rl.defenses.Detected(model, det, fpr=0.05)   # K + 1 logits, the last "reject"

A detector holds statistics only (buffers, or a small network for ``BinaryDetector``), never the
classifier: ``score(model, x)`` -> (N,), higher means more suspicious. ``attack_score`` is the
differentiable version an adaptive attack follows (BPDA around rounding). After fitting, the
scores of held-out clean points (``x_calib``) are kept, and ``threshold(fpr)`` is the score
exceeded by at most a fraction ``fpr`` of them. Everything a detector needs is in its
``state_dict()`` (shipped as safetensors, see ``defenses.zoo``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.defenses import ops
from robustlab.validation import check_inputs, check_positive_int


def _batched(fn, x: Tensor, batch_size: int = 500) -> Tensor:
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model: no nn.Linear layer found to take penultimate features from")
    return linears[-1]


def features(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(logits (N, K), penultimate features (N, D)): the input of the model's last nn.Linear."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: detectors need an nn.Module to read features from, got {type(model).__name__}")
    got: list[Tensor] = []
    handle = _last_linear(model).register_forward_pre_hook(lambda _m, inp: got.append(inp[0]))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, got[-1].flatten(1)


class Detector(nn.Module):
    """Base class. Subclasses define ``name``, ``_fit(model, x, y)``, ``score`` and, where the
    score is not differentiable, ``attack_score``."""

    name = "detector"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calib_scores", torch.empty(0))

    def fit(self, model: nn.Module, x_clean: Tensor, y_clean: Tensor | None = None, *,
            x_calib: Tensor | None = None, calib_fraction: float = 0.25, seed: int = 0) -> "Detector":
        """Fit on clean points, then keep the scores of held-out clean points for thresholds.

        Args:
            model: the classifier (maps (N, C, H, W) in [0, 1] to (N, K) logits), in eval mode.
            x_clean: (N, C, H, W) clean inputs in [0, 1]; y_clean: (N,) int64 labels where the
                detector uses them (Mahalanobis), else ignored.
            x_calib: held-out clean inputs for the threshold; None: a random ``calib_fraction``
                of ``x_clean`` (drawn with ``seed``) is held out from fitting.
        Returns: self.
        """
        check_inputs(x_clean, y_clean)
        if x_calib is None:
            if not 0.0 < calib_fraction < 1.0:
                raise ValueError(f"calib_fraction: expected a fraction in (0, 1), got {calib_fraction!r}")
            perm = torch.randperm(x_clean.shape[0], generator=torch.Generator().manual_seed(seed))
            n_cal = max(1, int(round(calib_fraction * x_clean.shape[0])))
            x_calib, keep = x_clean[perm[:n_cal]], perm[n_cal:]
            x_clean = x_clean[keep]
            y_clean = None if y_clean is None else y_clean[keep]
        was = model.training
        model.eval()
        try:
            self._fit(model, x_clean, y_clean, seed)
        finally:
            model.train(was)
        return self.calibrate(model, x_calib)

    def calibrate(self, model: nn.Module, x_calib: Tensor) -> "Detector":
        """Keep the sorted scores of held-out clean points ``x_calib`` (N, C, H, W) for
        ``threshold``. They should be points the classifier was not trained on: its training
        points score lower, and a threshold set on them lets through more false positives on
        new data (on MNIST, 8.6% instead of 5%). Returns self."""
        check_inputs(x_calib, name_x="x_calib")
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                self.calib_scores = _batched(lambda b: self.score(model, b), x_calib).sort().values
        finally:
            model.train(was)
        return self

    def _fit(self, model: nn.Module, x: Tensor, y: Tensor | None, seed: int) -> None:
        pass

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """(N,) detection score of the deployed detector; higher is more suspicious."""
        raise NotImplementedError

    def attack_score(self, model: nn.Module, x: Tensor) -> Tensor:
        """(N,) the score with gradients an adaptive attack can follow (same values)."""
        return self.score(model, x)

    def threshold(self, fpr: float) -> float:
        """The smallest calibration score exceeded by at most ``fpr`` of the held-out clean points
        (a point is rejected when its score is strictly above it)."""
        if not 0.0 <= fpr < 1.0:
            raise ValueError(f"fpr: expected a fraction in [0, 1), got {fpr!r}")
        n = self.calib_scores.numel()
        if n == 0:
            raise ValueError("detector: not fitted (call fit(model, x_clean, ...) first)")
        idx = min(n - 1, max(0, math.ceil((1.0 - fpr) * n) - 1))
        return float(self.calib_scores[idx])

    def spread(self, fpr: float) -> float:
        """The gap between ``threshold(fpr)`` and the median clean score (> 0): the unit in which
        ``Detected`` measures how far a score is from the threshold."""
        s = self.calib_scores
        gap = self.threshold(fpr) - float(s[(s.numel() - 1) // 2])
        return gap if gap > 0 else max(abs(self.threshold(fpr)), 1e-6)

    def spec(self) -> str:
        return self.name

    def load_state(self, state: dict[str, Tensor]) -> "Detector":
        """Load fitted statistics (a ``state_dict()`` saved earlier, e.g. from safetensors): the
        unfitted buffers take the stored shapes, then every key must match. Returns self."""
        own = dict(self.named_buffers())
        for key, value in state.items():
            if key in own and "." not in key:
                setattr(self, key, value.clone())
        self.load_state_dict(state, strict=True)
        return self


class FeatureSqueezing(Detector):
    """Xu et al. 2018: the largest L1 distance between the softmax on x and on a squeezed x.

    Squeezers: ``bits``-bit depth reduction and a ``median_size`` median filter (MNIST: 1 bit and
    2x2). The attack score passes the gradient straight through the rounding (BPDA); the median
    is differentiated exactly.
    """

    name = "squeeze"

    def __init__(self, bits: int = 1, median_size: int = 2) -> None:
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
            raise ValueError(f"bits: expected an int in 1..8, got {bits!r}")
        self.bits = bits
        self.median_size = check_positive_int(median_size, "median_size")

    def _score(self, model: nn.Module, x: Tensor, bpda: bool) -> Tensor:
        depth = ops.bit_depth(x, self.bits)
        if bpda:
            depth = ops.straight_through(depth.detach(), x)
        p = F.softmax(model(x), dim=1)
        d1 = (p - F.softmax(model(depth), dim=1)).abs().sum(1)
        d2 = (p - F.softmax(model(ops.median_filter(x, self.median_size)), dim=1)).abs().sum(1)
        return torch.maximum(d1, d2)

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        return self._score(model, x, bpda=False)

    def attack_score(self, model: nn.Module, x: Tensor) -> Tensor:
        return self._score(model, x, bpda=True)

    def spec(self) -> str:
        return f"squeeze:b{self.bits},m{self.median_size}"


def relu_features(model: nn.Module, x: Tensor) -> list[Tensor]:
    """The output of every nn.ReLU module of ``model``, in call order: (N, C) channel means for a
    convolutional map (N, C, H, W), (N, D) for a vector."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: detectors need an nn.Module to read features from, got {type(model).__name__}")
    got: list[Tensor] = []
    hook = lambda _m, _i, out: got.append(out.mean(dim=(2, 3)) if out.dim() == 4 else out.flatten(1))  # noqa: E731
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    if not handles:
        raise ValueError("model: no nn.ReLU module to read features from (use layers='penultimate')")
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return got


class Mahalanobis(Detector):
    """Lee et al. 2018: class-conditional Gaussians with a shared covariance on features; a
    layer's score is the smallest squared Mahalanobis distance to a class mean.

    ``layers="penultimate"``: the input of the last nn.Linear, the score is that distance.
    ``layers="relu"``: every ReLU output (convolutional maps averaged over space, as Lee et
    al.'s feature ensemble), the score is the sum over layers of the distance standardised by
    its clean mean and deviation. Lee et al. weight the layers by a regression fitted on
    adversarial examples and add input pre-processing; both are left out, so the detector is
    fitted on clean data only.
    """

    name = "mahalanobis"

    def __init__(self, layers: str = "relu", ridge: float = 1e-6) -> None:
        super().__init__()
        if layers not in ("relu", "penultimate"):
            raise ValueError(f"layers: expected 'relu' or 'penultimate', got {layers!r}")
        self.layers, self.ridge = layers, float(ridge)
        for name in ("means", "precision", "dims", "mu", "sigma"):
            self.register_buffer(name, torch.empty(0))

    def _feats(self, model: nn.Module, x: Tensor) -> list[Tensor]:
        return [features(model, x)[1]] if self.layers == "penultimate" else relu_features(model, x)

    def _fit(self, model: nn.Module, x: Tensor, y: Tensor | None, seed: int) -> None:
        if y is None:
            raise ValueError("y_clean: Mahalanobis needs the labels of the clean points")
        with torch.no_grad():
            per_layer = [torch.cat(fs) for fs in zip(*[self._feats(model, x[i : i + 500])
                                                        for i in range(0, len(x), 500)])]
        k = int(y.max()) + 1
        means, precs = [], []
        for f in per_layer:
            f = f.double()
            mu = torch.stack([f[y == c].mean(0) for c in range(k)])
            centred = f - mu[y]
            cov = centred.T @ centred / f.shape[0]
            cov += self.ridge * torch.eye(cov.shape[0], dtype=cov.dtype) * cov.diagonal().mean()
            means.append(mu.float())
            precs.append(torch.linalg.pinv(cov, hermitian=True).float())
        self.means, self.precision = torch.cat(means, 1), torch.block_diag(*precs)
        self.dims = torch.tensor([m.shape[1] for m in means])
        self.mu, self.sigma = torch.zeros(len(means)), torch.ones(len(means))
        if self.layers == "relu":
            with torch.no_grad():
                d = _batched(lambda b: self._distances(model, b), x)
            self.mu, self.sigma = d.mean(0), d.std(0).clamp_min(1e-6)

    def _distances(self, model: nn.Module, x: Tensor) -> Tensor:
        out, at = [], 0
        for f, dim in zip(self._feats(model, x), self.dims.tolist()):
            diff = f[:, None, :] - self.means[None, :, at : at + dim]  # (N, K, D)
            prec = self.precision[at : at + dim, at : at + dim]
            out.append(torch.einsum("nkd,de,nke->nk", diff, prec, diff).min(dim=1).values)
            at += dim
        return torch.stack(out, 1)

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        return ((self._distances(model, x) - self.mu) / self.sigma).sum(1)

    def spec(self) -> str:
        return f"mahalanobis:{self.layers}"


class LID(Detector):
    """Local intrinsic dimensionality (Ma et al. 2018) of the penultimate features and the logits,
    estimated from the ``k`` nearest of ``n_ref`` fixed clean reference points (maximum
    likelihood: -1 / mean_i log(d_i / d_k)). The score is the sum over the two layers of the LID
    standardised by its clean mean and deviation. Ma et al. fit a logistic regression on LIDs of
    adversarial examples of the attack to detect and estimate within each minibatch; here the
    detector sees clean data only, and a fixed reference set makes a point's score independent
    of its batch."""

    name = "lid"

    def __init__(self, k: int = 20, n_ref: int = 300) -> None:
        super().__init__()
        self.k = check_positive_int(k, "k", 2)
        self.n_ref = check_positive_int(n_ref, "n_ref", k + 1)
        for name in ("ref_feat", "ref_logit", "mu", "sigma"):
            self.register_buffer(name, torch.empty(0))

    @staticmethod
    def _lid(a: Tensor, ref: Tensor, k: int) -> Tensor:
        d = torch.cdist(a, ref).topk(k, dim=1, largest=False).values.clamp_min(1e-12)
        return -1.0 / torch.log(d / d[:, -1:]).mean(1).clamp_max(-1e-12)

    def _lids(self, model: nn.Module, x: Tensor) -> Tensor:
        logits, f = features(model, x)
        return torch.stack([self._lid(f, self.ref_feat, self.k), self._lid(logits, self.ref_logit, self.k)], 1)

    def _fit(self, model: nn.Module, x: Tensor, y: Tensor | None, seed: int) -> None:
        if x.shape[0] < 2 * self.n_ref:
            raise ValueError(f"x_clean: LID needs at least {2 * self.n_ref} fitting points, got {x.shape[0]}")
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        ref, rest = x[perm[: self.n_ref]], x[perm[self.n_ref :]]
        with torch.no_grad():
            logits, f = features(model, ref)
            self.ref_feat, self.ref_logit = f.clone(), logits.clone()
            lids = _batched(lambda b: self._lids(model, b), rest)
        self.mu, self.sigma = lids.mean(0), lids.std(0).clamp_min(1e-6)

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        return ((self._lids(model, x) - self.mu) / self.sigma).sum(1)

    def spec(self) -> str:
        return f"lid:k{self.k},ref{self.n_ref}"


def _detector_net(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 1),
    )


class BinaryDetector(Detector):
    """Metzen et al. 2017: a small CNN trained to tell clean inputs from adversarial examples of
    the classifier (made by ``attack``, default PGD-10 in Linf 0.3); the score is its logit.
    Unlike the others this detector sees adversarial examples (non-adaptive ones) when fitted."""

    name = "binary"

    def __init__(self, channels: int = 1, attack=None, epochs: int = 5, lr: float = 1e-3) -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.net = _detector_net(channels)
        self.attack = attack
        self.epochs = check_positive_int(epochs, "epochs")
        self.lr = float(lr)

    def _fit(self, model: nn.Module, x: Tensor, y: Tensor | None, seed: int) -> None:
        from robustlab.attacks import PGD
        from robustlab.threats import LpBall

        if y is None:
            raise ValueError("y_clean: BinaryDetector needs labels to attack the clean points")
        attack = self.attack or PGD(LpBall("linf", 0.3), steps=10, seed=seed, early_stop=False)
        x_adv = torch.cat([attack(model, x[i : i + 500], y[i : i + 500]).x_adv for i in range(0, len(x), 500)])
        data = torch.cat([x, x_adv])
        label = torch.cat([torch.zeros(len(x)), torch.ones(len(x_adv))])
        with torch.random.fork_rng():  # the detector's initialisation comes from ``seed`` too
            torch.manual_seed(seed)
            self.net = _detector_net(self.channels)
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.net.train()
        for _ in range(self.epochs):
            perm = torch.randperm(len(data), generator=g)
            for i in range(0, len(data), 100):
                b = perm[i : i + 100]
                loss = F.binary_cross_entropy_with_logits(self.net(data[b]).squeeze(1), label[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net.eval()

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)

    def spec(self) -> str:
        return f"binary:c{self.channels}"


__all__ = ["Detector", "FeatureSqueezing", "Mahalanobis", "LID", "BinaryDetector", "features", "relu_features"]
