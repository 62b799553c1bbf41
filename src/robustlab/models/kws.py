"""A small keyword-spotting CNN on log-mel features computed inside the model (plain torch).

    model = kws_cnn()                       # (N, 1, T) in [0, 1] -> (N, 12) logits
    model = robustlab.models.load("kws-cnn")

The front end is differentiable end to end (STFT as ``torch.stft``, a fixed triangular mel
filter bank as a buffer, log power), so white-box attacks work on the raw waveform, and no
torchaudio is needed. Inputs follow the core's [0, 1] box: ``Waveform`` maps x back to the
waveform w = 2x - 1 in [-1, 1] first, as ``Normalize`` does for images.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

RATE = 8000


class Waveform(nn.Module):
    """x in [0, 1] -> the waveform w = 2x - 1 in [-1, 1]; (N, 1, T) -> (N, T)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"x: expected audio of shape (N, 1, T), got {tuple(x.shape)}")
        return 2.0 * x[:, 0] - 1.0


def mel_filterbank(n_mels: int, n_fft: int, rate: int, f_min: float = 20.0, f_max: float | None = None) -> Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the HTK mel scale
    (mel = 2595 log10(1 + f / 700)), each peaking at 1."""
    f_max = rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= rate / 2:
        raise ValueError(f"f_max: expected 0 <= f_min < f_max <= rate / 2, got f_min={f_min}, f_max={f_max}")

    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(np.array(f_min)), mel(np.array(f_max)), n_mels + 2))
    freqs = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return torch.from_numpy(fb.astype(np.float32))


class LogMel(nn.Module):
    """Waveform (N, T) -> log-mel power spectrogram (N, 1, n_mels, frames).

    Hann-windowed STFT (``n_fft`` samples, ``hop`` samples apart, centred with reflection
    padding), power summed through the mel filters, then ``log(mel + floor)``: differentiable
    everywhere.
    """

    def __init__(self, rate: int = RATE, n_fft: int = 256, hop: int = 128, n_mels: int = 40,
                 floor: float = 1e-6) -> None:
        super().__init__()
        self.n_fft, self.hop, self.floor = n_fft, hop, floor
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fb", mel_filterbank(n_mels, n_fft, rate), persistent=False)

    def forward(self, w: Tensor) -> Tensor:
        spec = torch.stft(w, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (N, F, frames)
        return torch.log(torch.matmul(self.fb, power) + self.floor).unsqueeze(1)


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def kws_cnn(n_classes: int = 12, width: int = 16) -> nn.Sequential:
    """Waveform -> log-mel (40 x 63 for 1 s at 8 kHz) -> four 3x3 conv blocks (width, 2w, 4w,
    4w channels, max-pooled 2x2 after the first three) -> global average -> linear.

    Input (N, 1, T) in [0, 1]; output (N, n_classes) logits; 61k parameters at width 16 (about
    7M multiply-adds per 1 s clip, so black-box attacks with thousands of queries stay cheap).
    """
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes: expected an int >= 2, got {n_classes!r}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width: expected a positive int, got {width!r}")
    w = width
    return nn.Sequential(
        Waveform(), LogMel(), nn.BatchNorm2d(1),  # the BatchNorm standardises log power (fixed at eval)
        *_block(1, w), nn.MaxPool2d(2),
        *_block(w, 2 * w), nn.MaxPool2d(2),
        *_block(2 * w, 4 * w), nn.MaxPool2d(2),
        *_block(4 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * w, n_classes),
    )


def load_kws(entry: object, state: dict[str, Tensor] | None) -> nn.Module:
    """Zoo loader (``ZooEntry.loader``): the architecture (its width read from the weights) with
    the shipped weights."""
    model = kws_cnn(width=int(state["3.weight"].shape[0]) if state is not None else 16)
    if state is None:
        name = getattr(entry, "name", "kws-cnn")
        raise FileNotFoundError(f"name: weights for {name!r} are missing; train them with scripts/train_kws.py")
    model.load_state_dict(state, strict=True)
    return model


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["Waveform", "LogMel", "mel_filterbank", "kws_cnn", "load_kws", "RATE"]
