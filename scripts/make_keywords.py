"""Synthesise the spoken-keyword set shipped as ``robustlab/data/files/keywords.npz``.

The ten Speech Commands keywords (yes, no, up, down, left, right, on, off, stop, go), plus
"silence" (background noise only) and "unknown" (other Speech Commands words), spoken by
espeak-ng over English accents x voice variants, speeds and pitches, resampled to 8 kHz and
placed at a random offset in a 1 s clip. Train and test come from DISJOINT voice variants
(a seeded 20% of the variants is held out for test and never heard in training, in any
accent), so test accuracy measures generalisation to unseen voices.

Stored (zlib-compressed npz): each clean clip normalised to peak 1 and encoded as 8-bit mu-law
(mu = 255, the G.711 telephone companding at the telephone rate, ~38 dB signal-to-quantisation
ratio), its peak, its background-noise level and the split's noise seed.
``robustlab.data.keywords`` decodes the clip and adds the seeded (hence fixed) Gaussian
background noise at load time, so the file stays small (noise does not compress; mu-law halves
int16) and every load gives the same clips. Needs espeak-ng (Debian: ``apt-get install espeak-ng``) and scipy; nothing else.

    python scripts/make_keywords.py [--out src/robustlab/data/files/keywords.npz] [--seed 0]
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
LABELS = WORDS + ["silence", "unknown"]
UNKNOWN_WORDS = ["bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine",
                 "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero"]
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc"]
RATE = 8000
T = RATE  # 1 s clips
ESPEAK_RATE = 22050


def variants() -> list[str]:
    """espeak-ng's voice variants (the file names after ``!v/``), sorted."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = sorted({line.split()[4].split("/", 1)[1] for line in out.splitlines()[1:] if "!v/" in line})
    if len(names) < 20:
        raise RuntimeError(f"espeak-ng lists only {len(names)} voice variants; is espeak-ng-data complete?")
    return names


def speak(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's rendering of ``word``, float64 in [-1, 1] at 8 kHz, trimmed of silence."""
    raw = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                         capture_output=True, check=True).stdout
    w = np.frombuffer(raw[44:], dtype="<i2").astype(np.float64) / 32768.0  # 44-byte RIFF header
    w = resample_poly(w, 160, 441)  # 22050 Hz -> 8000 Hz
    loud = np.flatnonzero(np.abs(w) > 0.01)
    return w[loud[0]:loud[-1] + 1] if loud.size else w[:0]


MU = 255


def mulaw_encode(w: np.ndarray) -> np.ndarray:
    """int8 mu-law codes of a waveform in [-1, 1] (inverse: ``robustlab.data.keywords.mulaw_decode``)."""
    return np.round(np.sign(w) * np.log1p(MU * np.abs(w)) / np.log1p(MU) * 127).astype(np.int8)


def render(job: tuple) -> tuple[np.ndarray, float, float]:
    """One clean clip (int8 mu-law codes, T samples, peak 1), its peak, and its background noise
    level (std, in [-1, 1] waveform units)."""
    word, voice, speed, pitch, peak, offset_frac, noise_db, silence = job
    clip = np.zeros(T)
    if not silence:
        w = speak(word, voice, speed, pitch)[:T]
        if w.size == 0:
            raise RuntimeError(f"espeak-ng produced no sound for {word!r} with voice {voice!r}")
        w = w / np.abs(w).max() * peak
        start = int(offset_frac * (T - w.size))
        clip[start:start + w.size] = w
        noise = peak * 10 ** (noise_db / 20)  # noise std relative to the word's peak
    else:
        noise = 10 ** (noise_db / 20)  # silence: absolute background level
    top = np.abs(clip).max()
    return mulaw_encode(clip / top if top > 0 else clip), float(top), float(noise)


def plan(split_variants: list[str], per_class: int, rng: np.random.Generator) -> tuple[list[tuple], np.ndarray]:
    jobs, labels = [], []
    for label, name in enumerate(LABELS):
        for _ in range(per_class):
            voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{split_variants[rng.integers(len(split_variants))]}"
            word = UNKNOWN_WORDS[rng.integers(len(UNKNOWN_WORDS))] if name == "unknown" else name
            silence = name == "silence"
            jobs.append((word, voice, int(rng.integers(110, 211)), int(rng.integers(20, 81)),
                         float(rng.uniform(0.3, 0.95)), float(rng.uniform()),
                         float(rng.uniform(-60, -30) if silence else rng.uniform(-45, -25)), silence))
            labels.append(label)
    return jobs, np.asarray(labels, dtype=np.int64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="src/robustlab/data/files/keywords.npz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--test-per-class", type=int, default=40)
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of voice variants held out for test")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    names = variants()
    perm = rng.permutation(len(names))
    n_test = max(1, int(round(args.test_fraction * len(names))))
    test_v = sorted(names[i] for i in perm[:n_test])
    train_v = sorted(names[i] for i in perm[n_test:])
    arrays: dict[str, np.ndarray] = {}
    for split, vs, per in (("train", train_v, args.train_per_class), ("test", test_v, args.test_per_class)):
        jobs, y = plan(vs, per, rng)
        order = rng.permutation(len(jobs))  # shuffled, so a prefix holds every class
        jobs, y = [jobs[i] for i in order], y[order]
        with ThreadPoolExecutor(args.workers) as ex:
            out = list(ex.map(render, jobs))
        arrays[f"codes_{split}"] = np.stack([c for c, _, _ in out])
        arrays[f"y_{split}"] = y
        arrays[f"peak_{split}"] = np.asarray([pk for _, pk, _ in out], dtype=np.float32)
        arrays[f"noise_{split}"] = np.asarray([s for _, _, s in out], dtype=np.float32)
        arrays[f"voices_{split}"] = np.asarray([j[1] for j in jobs])
        print(f"{split}: {len(y)} clips from {len(vs)} variants x {len(ACCENTS)} accents")
    arrays["labels"] = np.asarray(LABELS)
    arrays["noise_seed"] = np.asarray([args.seed + 1, args.seed + 2], dtype=np.int64)  # train, test
    arrays["rate"] = np.asarray(RATE)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {digest}) in {time.time() - t0:.0f} s; "
          f"test variants: {', '.join(test_v)}")


if __name__ == "__main__":
    main()
