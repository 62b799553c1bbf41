"""Audio front-end defenses: ``model(front_end(x))`` with the view an adaptive attack needs.

    defended = Codec(rl.models.load("kws-cnn"), quality_db=20)
    defended(x)                 # deployed: the front end runs for real on every clip
    defended.attack_view()      # what gradient attacks differentiate (BPDA / EOT)
    defended.naive_view()       # the bare classifier (a non-adaptive, transferred attack)
    defended.spec()             # "codec:q20": the settings, part of the run identity

Inputs are audio clips (N, 1, T) in [0, 1] holding the waveform w = 2x - 1; each front end works
on w and maps back. Three front ends, the usual "remove what a listener would not hear" ideas:

- ``Downsample(factor)``: band-limit to rate / (2 factor), i.e. resample down by ``factor`` and
  back up with ideal (FFT) interpolation. Linear, so the attack view differentiates it exactly.
- ``Quantize(bits, dither)``: PCM requantisation of w to ``bits`` bits (optionally with
  uniform dither, which makes it random). BPDA (identity backward); EOT when dithered.
- ``Codec(quality_db)``: a transform codec in the MP3 mould: a Hann STFT (32 ms frames at 8 kHz),
  each frame's coefficients quantised with a step ``quality_db`` dB below the frame's largest
  coefficient (so coefficients under half a step, the "masked" ones, are zeroed), inverse STFT.
  BPDA (identity backward).

Attack views (Athalye, Carlini & Wagner 2018): a BPDA step keeps its exact value in the forward
pass and takes the identity's gradient in the backward pass, so the view's logits equal the
deployed ones; a random step is averaged over ``eot_samples`` draws (mean log-probabilities).
Deployed randomness is seeded per clip from its bytes (the same clip always gets the same
draw, whatever the batch); the view's draws use other seeds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models.views import attack_view_of, model_spec


def _check_audio(x: object, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"{name}: expected audio of shape (N, 1, T), got {tuple(x.shape)}")
    return x


def _generators(x: Tensor, seed: int, salt: str) -> list[torch.Generator]:
    """One generator per clip, seeded from blake2b(seed, salt, the clip's float32 bytes)."""
    flat = x.detach().to("cpu", torch.float32).contiguous().reshape(x.shape[0], -1).numpy()
    gens = []
    for row in flat:
        digest = hashlib.blake2b(f"{seed}|{salt}|".encode() + row.tobytes(), digest_size=8).digest()
        gens.append(torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1)))
    return gens


class AudioFrontEnd(nn.Module):
    """Base: deployed forward ``model(front_end(x))``; subclasses define ``waveform(w, gens)``
    (the deployed operation on w in [-1, 1], (N, T)), ``settings()``, and the flags ``bpda``
    (no useful gradient: the view uses the identity's) and ``random`` (needs ``gens``)."""

    name = "frontend"
    bpda = False
    random = False

    def __init__(self, model: nn.Module, *, eot_samples: int = 1, seed: int = 0) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        if isinstance(eot_samples, bool) or not isinstance(eot_samples, int) or eot_samples < 1:
            raise ValueError(f"eot_samples: expected an int >= 1, got {eot_samples!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        self.model = model
        self.eot_samples = eot_samples
        self.seed = seed
        self.rejects = bool(getattr(model, "rejects", False))

    def waveform(self, w: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        raise NotImplementedError

    def settings(self) -> str:
        raise NotImplementedError

    def apply(self, x: Tensor, salt: str = "deploy") -> Tensor:
        """The front end's output (N, 1, T) in [0, 1] for clips ``x`` (N, 1, T) in [0, 1]."""
        _check_audio(x)
        gens = _generators(x, self.seed, salt) if self.random else None
        w = self.waveform(2.0 * x[:, 0] - 1.0, gens)
        return ((w.clamp(-1.0, 1.0) + 1.0) / 2.0).unsqueeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """Deployed logits (N, K): the model on the front end's output (no gradient through a
        BPDA step; call ``attack_view()`` for the adaptive attacker's view)."""
        if self.bpda:
            with torch.no_grad():
                return self.model(self.apply(x.detach()))
        return self.model(self.apply(x))

    def spec(self) -> str:
        """E.g. "codec:q20", or "codec:q20(quantize:8)" around another wrapper."""
        inner = model_spec(self.model)
        own = f"{self.name}:{self.settings()}"
        return own if inner is None else f"{own}({inner})"

    def attack_view(self) -> nn.Module:
        return FrontEndView(self)

    def naive_view(self) -> nn.Module:
        """The bare classifier (innermost ``.model``): what a non-adaptive attack sees."""
        naive = getattr(self.model, "naive_view", None)
        return naive() if callable(naive) else self.model


class FrontEndView(nn.Module):
    """The adaptive attacker's view of an :class:`AudioFrontEnd`: BPDA (exact value, identity
    gradient) for a ``bpda`` front end, the exact gradient otherwise, and for a random one the
    mean log-probabilities over ``eot_samples`` draws."""

    def __init__(self, defense: AudioFrontEnd) -> None:
        super().__init__()
        self.defense = defense
        self.inner = attack_view_of(defense.model)
        self.rejects = defense.rejects

    def _one(self, x: Tensor, salt: str) -> Tensor:
        d = self.defense
        if d.bpda:
            with torch.no_grad():
                value = d.apply(x.detach(), salt)
            return self.inner(x + (value - x).detach())
        return self.inner(d.apply(x, salt))

    def forward(self, x: Tensor) -> Tensor:
        d = self.defense
        if not d.random or d.eot_samples == 1:
            return self._one(x, "eot0")
        return torch.stack([F.log_softmax(self._one(x, f"eot{j}"), dim=1) for j in range(d.eot_samples)]).mean(0)


class Downsample(AudioFrontEnd):
    """Resample down by ``factor`` and back up (ideal band-limiting to rate / (2 factor))."""

    name = "downsample"

    def __init__(self, model: nn.Module, factor: int = 2) -> None:
        super().__init__(model)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"factor: expected an int >= 2, got {factor!r}")
        self.factor = factor

    def waveform(self, w: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        t = w.shape[-1]
        spec = torch.fft.rfft(w, dim=-1)
        keep = t // (2 * self.factor) + 1  # the bins a T / factor-sample signal can hold
        spec = torch.cat([spec[:, :keep], torch.zeros_like(spec[:, keep:])], dim=1)
        return torch.fft.irfft(spec, n=t, dim=-1)

    def settings(self) -> str:
        return str(self.factor)


class Quantize(AudioFrontEnd):
    """Requantise w to ``bits``-bit PCM (2^bits levels over [-1, 1]); with ``dither`` add uniform
    noise of one step before rounding (random: the view averages ``eot_samples`` draws)."""

    name = "quantize"
    bpda = True

    def __init__(self, model: nn.Module, bits: int = 8, dither: bool = False, *, eot_samples: int = 8,
                 seed: int = 0) -> None:
        super().__init__(model, eot_samples=eot_samples if dither else 1, seed=seed)
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
            raise ValueError(f"bits: expected an int in 2..16, got {bits!r}")
        self.bits, self.dither = bits, bool(dither)
        self.random = self.dither

    def waveform(self, w: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        step = 2.0 / (2 ** self.bits - 1)
        if gens is not None:
            u = torch.stack([torch.rand(w.shape[1:], generator=g) for g in gens]).to(w)
            w = w + (u - 0.5) * step
        return torch.round((w + 1.0) / step) * step - 1.0

    def settings(self) -> str:
        return f"{self.bits}" + ("+dither" if self.dither else "")


class Codec(AudioFrontEnd):
    """A transform codec: Hann STFT (``n_fft`` samples, 50% overlap), coefficients quantised per
    frame with a step ``quality_db`` below the frame's largest magnitude, inverse STFT."""

    name = "codec"
    bpda = True

    def __init__(self, model: nn.Module, quality_db: float = 20.0, n_fft: int = 256) -> None:
        super().__init__(model)
        if isinstance(quality_db, bool) or not isinstance(quality_db, (int, float)) or not 0 < quality_db <= 120:
            raise ValueError(f"quality_db: expected a number in (0, 120], got {quality_db!r}")
        if isinstance(n_fft, bool) or not isinstance(n_fft, int) or n_fft < 16 or n_fft % 2:
            raise ValueError(f"n_fft: expected an even int >= 16, got {n_fft!r}")
        self.quality_db, self.n_fft = float(quality_db), n_fft

    def waveform(self, w: Tensor, gens: list[torch.Generator] | None) -> Tensor:
        win = torch.hann_window(self.n_fft, device=w.device, dtype=w.dtype)
        spec = torch.stft(w, self.n_fft, self.n_fft // 2, window=win, return_complex=True)
        top = spec.abs().amax(dim=1, keepdim=True)  # (N, 1, frames)
        step = (top * 10 ** (-self.quality_db / 20)).clamp_min(1e-12)
        q = torch.complex(torch.round(spec.real / step), torch.round(spec.imag / step)) * step
        return torch.istft(q, self.n_fft, self.n_fft // 2, window=win, length=w.shape[-1])

    def settings(self) -> str:
        return f"q{self.quality_db:g}"




@dataclass(frozen=True)
class BallPGDAT:
    """PGD adversarial training (Madry et al. 2018) under a per-sample ball such as
    ``DbBall(-30)``: the core's :class:`robustlab.defenses.training.PGDAT` for threats that have
    no scalar eps, only ``radius(x)`` (the threat protocol's per-sample radius).

    Each training step replaces the batch by the last iterate of ``steps`` PGD steps on
    cross-entropy (random start, step ``step_scale * radius(x) / steps`` per clip), found by the
    core's training PGD (:func:`robustlab.defenses.training.recipes.perturb`), and returns the
    cross-entropy there. Cost per step: steps + 1 forward+backward passes.

    Args:
        threat: a ball with ``norm``, ``radius(x)`` and ``scaled(factor)`` (DbBall, SnrBall).
        steps: PGD steps per batch.
        step_scale: PGD step length as a multiple of radius / steps (2.5: Madry et al.).
        random_start: start each PGD run at a uniform point of the ball.
        warmup: every radius grows linearly from 0 over this fraction of training (the core's
            eps ramp; in dB the budget rises from -inf to ``threat``'s).
        augment: optional ``augment(x, generator) -> x`` applied to the clean batch first
            (speed, shift, gain: see ``scripts/train_kws.py``).
    """

    threat: Any
    steps: int = 7
    step_scale: float = 2.5
    random_start: bool = True
    warmup: float = 0.0
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None

    def __post_init__(self) -> None:
        from robustlab.threats.lp import check_lp

        check_lp(self.threat)
        if not callable(getattr(self.threat, "scaled", None)):
            raise TypeError(f"threat: expected a ball with scaled(factor) (DbBall, SnrBall), "
                            f"got {type(self.threat).__name__}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps: expected an int >= 1, got {self.steps!r}")
        if not isinstance(self.step_scale, (int, float)) or not self.step_scale > 0:
            raise ValueError(f"step_scale: expected a number > 0, got {self.step_scale!r}")
        if not isinstance(self.warmup, (int, float)) or not 0.0 <= self.warmup <= 1.0:
            raise ValueError(f"warmup: expected a fraction of training in [0, 1], got {self.warmup!r}")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator,
             progress: float) -> Tensor:
        """Cross-entropy of ``model`` on PGD points of (B, 1, T) clips ``x``; scalar tensor."""
        from robustlab.defenses.training.recipes import perturb, ramp

        if self.augment is not None:
            x = self.augment(x, generator)
        f = ramp(progress, self.warmup)
        if f > 0:
            t = self.threat.scaled(f)
            step = self.step_scale * t.radius(x).to(x.dtype) / self.steps
            x = perturb(model, t, x, y, generator, steps=self.steps, step_size=step,
                        random_start=self.random_start)
        return F.cross_entropy(model(x), y)

    def spec(self) -> str:
        aug = getattr(self.augment, "__name__", type(self.augment).__name__) if self.augment is not None else None
        return (f"ballpgdat:{self.threat.spec()}:steps={self.steps}:scale={self.step_scale}"
                f":rs={int(self.random_start)}:warmup={self.warmup}:augment={aug}")


__all__ = ["AudioFrontEnd", "FrontEndView", "Downsample", "Quantize", "Codec", "BallPGDAT"]
