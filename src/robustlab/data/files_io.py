"""Your own data on disk -> tensors: an ``.npz`` with x and y, a folder of images in class
subfolders (read with Pillow), the CIFAR-10 binary batches folder, and idx files.

    x, y = robustlab.data.load("my_points.npz")
    x, y = robustlab.data.load("photos/", split="test")     # photos/<class>/*.png
    x, y = robustlab.data.load("cifar-10-batches-bin/", split="test")

Inputs come back float32 in [0, 1], NCHW; labels int64. Nothing is unpickled.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST = ("test_batch.bin",)
CIFAR_RECORD = 1 + 3 * 32 * 32


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzipped or not) as a uint8 array: (N, H, W) images or (N,) labels."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"data: {str(path)!r} is not a uint8 idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"data: {str(path)!r} is truncated ({body.size} values, header says {dims})")
    return body.reshape(dims)


def _as_nchw(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:  # (N, H, W): one channel
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):  # NHWC
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4 and x.ndim != 2:
        raise ValueError(f"data: x in {str(path)!r} has shape {x.shape}; expected (N, C, H, W), (N, H, W, C), "
                         "(N, H, W) or (N, D)")
    return x


def _to_float(x: np.ndarray, path: Path) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"data: x in {str(path)!r} has dtype {x.dtype}; expected uint8 (0..255) or float in [0, 1]")
    x = x.astype(np.float32)
    if x.size and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise ValueError(f"data: x in {str(path)!r} must lie in [0, 1] (or be uint8); got "
                         f"[{np.nanmin(x):.4g}, {np.nanmax(x):.4g}]")
    return x


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """x (float32 NCHW in [0, 1]) and y (int64) from an .npz with arrays ``x`` and ``y``."""
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"data: {str(path)!r} is not a readable .npz ({e})") from None
    with z:
        if "x" not in z.files or "y" not in z.files:
            raise ValueError(f"data: {str(path)!r} holds {z.files}; expected arrays named 'x' and 'y'")
        x, y = z["x"], z["y"]
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"data: y in {str(path)!r} must be (N,) integers matching x's N; got {y.dtype} {y.shape}")
    return _to_float(_as_nchw(x, path), path), y.astype(np.int64)


def load_image_folder(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images in ``path/<class>/``; classes in sorted order get labels 0..K-1. All images must
    share one size and mode (RGB images stay 3-channel, grayscale 1-channel)."""
    from PIL import Image

    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"data: {str(path)!r} has no class subfolders (expected {path}/<class>/<image>)")
    xs, ys, shape = [], [], None
    for k, c in enumerate(classes):
        for f in sorted((path / c).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB")
                    a = np.asarray(im, dtype=np.uint8)
            except OSError as e:
                raise ValueError(f"data: cannot read image {str(f)!r} ({e})") from None
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            if shape is None:
                shape = a.shape
            elif a.shape != shape:
                raise ValueError(f"data: {str(f)!r} has shape {a.shape[1:]}x{a.shape[0]}ch, others "
                                 f"{shape[1:]}x{shape[0]}ch; resize your images to one size")
            xs.append(a)
            ys.append(k)
    if not xs:
        raise ValueError(f"data: no images ({', '.join(IMAGE_SUFFIXES)}) under {str(path)!r}")
    return np.stack(xs).astype(np.float32) / 255.0, np.asarray(ys, dtype=np.int64), classes


def is_cifar_folder(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in CIFAR_TRAIN + CIFAR_TEST)


def load_cifar_binary(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 binary version's records (1 label byte + 3072 pixel bytes, CHW) of a split:
    ``data_batch_1..5.bin`` (train) or ``test_batch.bin`` (test)."""
    names = CIFAR_TRAIN if split == "train" else CIFAR_TEST
    files = [path / f for f in names if (path / f).is_file()]
    if not files:
        raise ValueError(f"split: no {' / '.join(names)} in {str(path)!r} for split {split!r}")
    raw = b"".join(f.read_bytes() for f in files)
    if len(raw) % CIFAR_RECORD:
        raise ValueError(f"data: {str(path)!r}: batch files are not whole CIFAR-10 records of {CIFAR_RECORD} bytes")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    return rec[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, rec[:, 0].astype(np.int64)


def load_path(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch on what ``path`` is: .npz, CIFAR-10 binary folder, image folder (optionally with
    train/ and test/ inside)."""
    if not path.exists():
        raise ValueError(f"data: no such file or folder {str(path)!r}")
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"data: {str(path)!r}: expected an .npz file or a folder")
        return load_npz(path)
    if is_cifar_folder(path):
        return load_cifar_binary(path, split)
    if (path / split).is_dir():
        path = path / split
    x, y, _ = load_image_folder(path)
    return x, y
