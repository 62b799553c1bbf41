"""Input-transform defenses: ``model(transform(x))``, each with the view an adaptive attack needs.

    defended = rl.defenses.JPEG(rl.models.load("mnist-cnn"), quality=75)
    defended(x)                 # deployed: Pillow encodes and decodes every image
    defended.attack_view()      # what gradient attacks differentiate (BPDA / EOT)
    defended.naive_view()       # the bare classifier (a non-adaptive, transferred attack)
    defended.spec()             # "jpeg:q75": the settings, part of the run identity

Every wrapper exposes the bare classifier as ``.model``; wrappers nest (``JPEG(BitDepth(m, 4),
75)``), and the views nest with them.

Attack views (Athalye, Carlini & Wagner 2018):
- BPDA: a step with no useful gradient (rounding, JPEG, an unrolled solver) keeps its exact
  value in the forward pass and takes the gradient of a surrogate (identity by default) in the
  backward pass, so the view's logits equal the deployed logits at every point.
- EOT: a random transform is sampled ``eot_samples`` times per forward; the view returns the
  mean of the samples' log-probabilities, so cross-entropy on the view is (up to a
  normalising term) the mean of the per-sample cross-entropies, whose gradient EOT averages.

Randomness: the deployed draw for a point is seeded from blake2b(seed, the point's bytes)
(``ops.sample_generators``), so it is reproducible and independent of batching and sharding;
the view's EOT draws use other salts, so an attack never relies on knowing the deployed draw.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.defenses import ops
from robustlab.models.views import attack_view_of, model_spec
from robustlab.validation import check_inputs, check_nonneg_float, check_positive_int


class InputTransform(nn.Module):
    """Base of the input-transform wrappers: deployed forward ``model(transform(x))``.

    Subclasses set ``name`` and implement ``transform(x, gens)`` (the deployed operation;
    ``gens`` is a list of per-sample generators for random transforms, else None) and
    ``settings()`` (the spec's argument). ``bpda = True`` marks a transform without a useful
    gradient: the attack view then keeps its value and differentiates ``surrogate(x)``.
    """

    name = "transform"
    random = False
    bpda = False
    rejects = False

    def __init__(self, model: nn.Module, *, eot_samples: int = 1, seed: int = 0) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        check_positive_int(eot_samples, "eot_samples")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        self.model = model
        self.eot_samples = eot_samples if self.random else 1
        self.seed = seed
        self.train(getattr(model, "training", False))  # a new module starts in training mode; follow the model

    # -- what subclasses define ------------------------------------------------------------
    def transform(self, x: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        raise NotImplementedError

    def surrogate(self, x: Tensor) -> Tensor:
        """The backward-pass stand-in of a BPDA transform (identity, Athalye et al.'s choice)."""
        return x

    def settings(self) -> str:
        raise NotImplementedError

    # -- the wrapper -----------------------------------------------------------------------
    def spec(self) -> str:
        """E.g. "jpeg:q75", or "jpeg:q75(bitdepth:4)" around another wrapper."""
        inner = model_spec(self.model)
        own = f"{self.name}:{self.settings()}"
        return own if inner is None else f"{own}({inner})"

    def apply(self, x: Tensor, salt: str = "deploy") -> Tensor:
        """The transformed batch (N, C, H, W) as deployed (``salt`` picks the random stream)."""
        gens = ops.sample_generators(x, self.seed, salt) if self.random else None
        return self.transform(x, gens)

    def forward(self, x: Tensor) -> Tensor:
        """Deployed logits (N, K) of the model on the transformed input; ``x`` (N, C, H, W) in [0, 1]."""
        check_images(x)
        with torch.no_grad():
            xt = self.apply(x.detach())
        return self.model(xt)

    def attack_view(self) -> nn.Module:
        """The module gradient attacks should differentiate (BPDA and/or EOT, see the module doc)."""
        return TransformView(self).train(self.training)  # a new module starts in training mode

    def naive_view(self) -> nn.Module:
        """The bare classifier (innermost ``.model``): what a non-adaptive attack sees."""
        inner = self.model
        naive = getattr(inner, "naive_view", None)
        return naive() if callable(naive) else inner


class TransformView(nn.Module):
    """The attack view of an :class:`InputTransform` (see the module doc). Its logits equal the
    deployed ones for a deterministic transform; for a random one they are the mean
    log-probabilities of ``eot_samples`` independent draws."""

    def __init__(self, defense: InputTransform) -> None:
        super().__init__()
        self.defense = defense
        self.inner = attack_view_of(defense.model)
        self.rejects = bool(getattr(self.inner, "rejects", False))

    def _one(self, x: Tensor, salt: str) -> Tensor:
        d = self.defense
        gens = ops.sample_generators(x, d.seed, salt) if d.random else None
        if d.bpda:
            with torch.no_grad():
                value = d.transform(x.detach(), gens)
            return self.inner(ops.straight_through(value, d.surrogate(x)))
        return self.inner(d.transform(x, gens))

    def forward(self, x: Tensor) -> Tensor:
        d = self.defense
        if d.eot_samples == 1:
            return self._one(x, "eot0")
        # Draw j of a point is seeded from (seed, j, the point): the view is a fixed function of
        # its input, so it does not depend on batching; every new iterate gets new draws.
        logp = [F.log_softmax(self._one(x, f"eot{j}"), dim=1) for j in range(d.eot_samples)]
        return torch.stack(logp).mean(0)


class BitDepth(InputTransform):
    """Reduce each pixel to ``bits`` bits (Xu et al. 2018's squeezer). BPDA: identity backward.

    On MNIST, 1 bit rounds every pixel to 0 or 1: a Linf change below 0.5 to a pixel at 0 or 1
    is erased, so a large part of an eps-0.3 budget is really removed, not hidden.
    """

    name = "bitdepth"
    bpda = True

    def __init__(self, model: nn.Module, bits: int) -> None:
        super().__init__(model)
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
            raise ValueError(f"bits: expected an int in 1..8, got {bits!r}")
        self.bits = bits

    def transform(self, x: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        return ops.bit_depth(x, self.bits)

    def adaptive_attacks(self, threat: object) -> list:
        """At 1 bit under Linf: the squeezing attack's first stage (choose the reachable binary
        image), which ``evaluate``'s presets run after the generic BPDA attacks."""
        if self.bits == 1 and getattr(threat, "norm", None) == "linf":
            from robustlab.defenses.squeeze_attack import SqueezingAttack

            return [SqueezingAttack(threat, self)]
        return []

    def settings(self) -> str:
        return str(self.bits)


class MedianFilter(InputTransform):
    """``size`` x ``size`` median per channel (scipy's "reflect" border; Xu et al. 2018). The
    median is differentiable almost everywhere, so the view uses it exactly (no surrogate)."""

    name = "median"

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__(model)
        check_positive_int(size, "size")
        self.size = size

    def transform(self, x: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        return ops.median_filter(x, self.size)

    def settings(self) -> str:
        return str(self.size)


class JPEG(InputTransform):
    """JPEG compression at ``quality`` with Pillow, for real, in the deployed forward (Dziugaite
    et al. 2016; Guo et al. 2018). BPDA: identity backward."""

    name = "jpeg"
    bpda = True

    def __init__(self, model: nn.Module, quality: int = 75) -> None:
        super().__init__(model)
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
            raise ValueError(f"quality: expected an int in 1..95 (Pillow's range), got {quality!r}")
        self.quality = quality

    def transform(self, x: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        return ops.jpeg_pillow(x, self.quality)

    def settings(self) -> str:
        return f"q{self.quality}"


class TVDenoise(InputTransform):
    """Total-variation minimisation (Guo et al. 2018, without their pixel dropout): Chambolle's
    solver, ``iters`` steps at ``weight``. BPDA: identity backward by default
    (``surrogate="identity"``); ``surrogate="unroll"`` differentiates the unrolled solver."""

    name = "tv"

    def __init__(self, model: nn.Module, weight: float = 0.1, iters: int = 30, surrogate: str = "identity") -> None:
        super().__init__(model)
        if check_nonneg_float(weight, "weight") == 0.0:
            raise ValueError("weight: expected a number > 0, got 0")
        check_positive_int(iters, "iters")
        if surrogate not in ("identity", "unroll"):
            raise ValueError(f"surrogate: expected 'identity' or 'unroll', got {surrogate!r}")
        self.weight, self.iters, self.surrogate_kind = float(weight), iters, surrogate
        self.bpda = surrogate == "identity"

    def transform(self, x: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        return ops.tv_denoise(x, self.weight, self.iters)

    def settings(self) -> str:
        return f"w{self.weight:g},i{self.iters}" + ("" if self.bpda else ",unroll")


class RandomResizePad(InputTransform):
    """Xie et al. 2018: resize to a random r x r, r in [min_size, H], and zero-pad back to H x W
    at a random offset (the classifier's input size is kept). Differentiable; EOT over
    ``eot_samples`` draws."""

    name = "resizepad"
    random = True

    def __init__(self, model: nn.Module, min_size: int = 24, *, mode: str = "bilinear",
                 eot_samples: int = 10, seed: int = 0) -> None:
        super().__init__(model, eot_samples=eot_samples, seed=seed)
        check_positive_int(min_size, "min_size")
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode: expected 'bilinear' or 'nearest', got {mode!r}")
        self.min_size, self.mode = min_size, mode

    def transform(self, x: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        if self.min_size > x.shape[2]:
            raise ValueError(f"min_size: {self.min_size} exceeds the image height {x.shape[2]}")
        return ops.resize_pad(x, gens, self.min_size, self.mode)

    def settings(self) -> str:
        return f"{self.min_size},{self.mode},seed{self.seed},eot{self.eot_samples}"


class GaussianNoise(InputTransform):
    """Add N(0, sigma^2) noise per pixel and clip to [0, 1]; EOT over ``eot_samples`` draws."""

    name = "noise"
    random = True

    def __init__(self, model: nn.Module, sigma: float, *, eot_samples: int = 10, seed: int = 0) -> None:
        super().__init__(model, eot_samples=eot_samples, seed=seed)
        self.sigma = check_nonneg_float(sigma, "sigma")

    def transform(self, x: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        return ops.gaussian_noise(x, gens, self.sigma)

    def settings(self) -> str:
        return f"{self.sigma:g},seed{self.seed},eot{self.eot_samples}"


def check_images(x: Tensor) -> None:
    """Inputs a transform accepts: a float (N, C, H, W) batch in [0, 1]."""
    check_inputs(x)
    if x.dim() != 4:
        raise ValueError(f"x: expected an image batch (N, C, H, W), got shape {tuple(x.shape)}")


__all__ = ["InputTransform", "TransformView", "BitDepth", "MedianFilter", "JPEG", "TVDenoise", "RandomResizePad",
           "GaussianNoise"]
