"""Real evaluation data that needs no network: Fashion-MNIST from Debian, scikit-learn's digits, .npz files.

Images come back raw in [0, 1], NCHW float32. Normalisation is the model's job (the trained
reference models carry their own Sub/Div), so every model sees the same pixels a sensor gives.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from lego2c.errors import UsageError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("fashion-mnist", "digits")
SPLITS = ("train", "test")
# Class names, for printing predictions of models whose metadata names their data set.
CLASS_NAMES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),  # fmt: skip
    "digits": tuple(str(d) for d in range(10)),
}


def _read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (big-endian header: magic, then one uint32 per dimension)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    if data[:2] != b"\x00\x00" or data[2] != 0x08:  # 0x08: unsigned byte payload
        raise UsageError(f"{path} is not an unsigned-byte IDX file")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    if not FASHION_MNIST_DIR.is_dir():
        raise UsageError(
            f"Fashion-MNIST not found at {FASHION_MNIST_DIR}",
            hint="apt-get install dataset-fashion-mnist",
        )
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return x, labels.astype(np.int64)


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]  # pixel values are 0..16
    y = digits.target.astype(np.int64)
    # A fixed stratified 70/30 split, so "test" means the same 540 images everywhere.
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    return (x_train, y_train) if split == "train" else (x_test, y_test)


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if not path.is_file():
        raise UsageError(f"dataset file {path} does not exist")
    with np.load(path) as data:
        if "x" not in data:
            raise UsageError(
                f"{path} has no array named 'x'",
                hint="save inputs with np.savez(path, x=inputs, y=labels)",
            )
        x = data["x"].astype(np.float32)
        y = data["y"].astype(np.int64) if "y" in data else None
    return x, y


def load_dataset(name: str, split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
    """Return (inputs, labels) for a named dataset or an .npz path; labels may be None for .npz."""
    if name.endswith(".npz"):
        return _npz(Path(name))
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}", hint=f"use one of: {', '.join(SPLITS)}")
    if name == "fashion-mnist":
        return _fashion_mnist(split)
    if name == "digits":
        return _digits(split)
    raise UsageError(
        f"unknown dataset {name!r}",
        hint=f"use one of: {', '.join(DATASETS)}, or a path to an .npz file with an 'x' array",
    )
