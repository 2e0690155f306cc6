"""Tiny data sets in the real on-disk formats that torchvision reads, written into a test's folder.

IDX files (Fashion-MNIST, KMNIST) carry their item counts in their headers; CIFAR's are python
pickles; SVHN's are MATLAB files, ``X`` as (H, W, C, n) and ``y`` with 10 for the digit 0. Each
writer returns what the loader must give back: images (n, C, H, W) uint8 and labels (n,) in
0 .. n_classes - 1, for ``train`` and ``test``. Pixel values are random, so that any mix-up of
channels, rows or columns shows.

torchvision checks CIFAR's and SVHN's files against their md5 sums: :func:`accept_tiny_files`
(and the :data:`ACCEPT` prefix for a subprocess) makes that check one of existence only, as it
is for the IDX files.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from astdp.data import files, vision

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]


def _draw(n: int, shape: tuple[int, int, int], n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)  # (n, C, H, W)
    y = np.arange(n) % n_classes  # every class present once n >= n_classes
    return x, rng.permutation(y).astype(np.int64)


def write_idx(raw: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Arrays:
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _draw(n, (1, 28, 28), 10, rng)
        images, labels = files.IDX_SPLITS[split]
        header = files.IDX_IMAGES.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
        (raw / images).write_bytes(header + x.tobytes())
        (raw / labels).write_bytes(files.IDX_LABELS.to_bytes(4, "big") + n.to_bytes(4, "big") + y.astype(np.uint8).tobytes())
        out[split] = (x, y)
    return out


def _pickle(path: Path, obj: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f)


def write_cifar(root: Path, n_classes: int = 10, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Arrays:
    """CIFAR-10: data_batch_1..5 (``n_train`` split among them), test_batch, batches.meta; CIFAR-100:
    train, test, meta. Rows are the 3 x 32 x 32 image, channel-major, as in the real files."""
    rng = np.random.default_rng(seed)
    folder = root / vision.SETS["cifar10" if n_classes == 10 else "cifar100"].folder
    folder.mkdir(parents=True, exist_ok=True)
    out = {split: _draw(n, (3, 32, 32), n_classes, rng) for split, n in (("train", n_train), ("test", n_test))}

    def batch(x: np.ndarray, y: np.ndarray) -> dict:
        rows = x.reshape(len(x), -1)
        if n_classes == 10:
            return {"data": rows, "labels": y.tolist()}
        return {"data": rows, "fine_labels": y.tolist(), "coarse_labels": (y % 20).tolist()}

    x, y = out["train"]
    if n_classes == 10:
        for k, idx in enumerate(np.array_split(np.arange(len(y)), 5), start=1):
            _pickle(folder / f"data_batch_{k}", batch(x[idx], y[idx]))
        _pickle(folder / "test_batch", batch(*out["test"]))
        _pickle(folder / "batches.meta", {"label_names": [f"class{k}" for k in range(10)]})
    else:
        _pickle(folder / "train", batch(x, y))
        _pickle(folder / "test", batch(*out["test"]))
        _pickle(folder / "meta", {"fine_label_names": [f"class{k}" for k in range(100)]})
    return out


def write_svhn(root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Arrays:
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = _draw(n, (3, 32, 32), 10, rng)
        on_disk = np.where(y == 0, 10, y).astype(np.uint8).reshape(n, 1)  # the files call the digit 0 "10"
        savemat(root / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": on_disk})  # X: (H, W, C, n)
        out[split] = (x, y)
    return out


def write(name: str, root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> Arrays:
    """Data set ``name`` (a key of ``vision.SETS``) in torchvision's layout under ``root``."""
    if name in ("fashion_mnist", "kmnist"):
        return write_idx(root / vision.SETS[name].folder, n_train, n_test, seed)
    if name in ("cifar10", "cifar100"):
        return write_cifar(root, vision.SETS[name].n_classes, n_train, n_test, seed)
    return write_svhn(root, n_train, n_test, seed)


def _exists(fpath, md5=None) -> bool:
    return os.path.isfile(fpath)


def accept_tiny_files(monkeypatch) -> None:
    """torchvision's md5 checks of CIFAR and SVHN files become existence checks (these files only)."""
    import torchvision.datasets.cifar
    import torchvision.datasets.svhn

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", _exists)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", _exists)


# The same for a train.py subprocess: ``python -c ACCEPT + run train.py``.
ACCEPT = ("import os, runpy, sys, torchvision.datasets.cifar as c, torchvision.datasets.svhn as s; "
          "c.check_integrity = s.check_integrity = lambda fpath, md5=None: os.path.isfile(fpath); ")
