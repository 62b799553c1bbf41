"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (the four original idx files in
/usr/share/datasets/fashion-mnist/); nothing is shipped or downloaded. Classes: T-shirt/top,
Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from robustlab.data.files_io import read_idx

N_CLASSES = 10
SHAPE = (1, 28, 28)
SIZES = {"train": 60000, "test": 10000}
FOLDER = Path(os.environ.get("ROBUSTLAB_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@lru_cache(maxsize=2)
def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and uint8 labels (N,) of a split."""
    imgs, labels = (FOLDER / f for f in _FILES[split])
    if not imgs.is_file() or not labels.is_file():
        raise ValueError(f"name: fashion-mnist needs Debian's dataset-fashion-mnist package (apt-get install "
                         f"dataset-fashion-mnist), which puts its idx files in {FOLDER}; {imgs.name} is missing")
    return read_idx(imgs), read_idx(labels)
