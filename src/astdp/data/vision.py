"""The field's image data sets through torchvision's own classes, in torchvision's folder layout.

Fashion-MNIST, KMNIST, CIFAR-10, CIFAR-100 and SVHN, by their config names (``SETS``). ``load``
returns ``{"train": (x, y), "test": (x, y)}`` with

- x float32 ``(n, C*H*W)`` in [0, 1], channel-major: all of channel 0 row by row, then channel 1,
  ...; ``x.view(n, C, H, W)`` gives the images back (the order of CIFAR's own rows; SVHN's
  ``(H, W, C, n)`` arrays and the IDX ``(n, H, W)`` files are brought to it);
- y int64 ``(n,)`` in ``0 .. n_classes - 1`` (torchvision's SVHN already maps the files' label 10,
  the digit 0, to 0; the range is checked here for every set).

Item counts are whatever the files hold. Local files come first; they are downloaded only when
absent and ``download`` is true; otherwise one :class:`DataError` line names the folder and the
files expected. torchvision checks CIFAR's and SVHN's files against their published md5 sums (a
changed file is refused, as torchvision refuses it) and only the existence of the IDX files, whose
headers are checked here (:func:`astdp.data.files.check_idx`). No Lightning import here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from astdp.data import files
from astdp.data.errors import DataError


@dataclass(frozen=True)
class ImageSet:
    title: str  # as the data set's authors write it, in messages
    torchvision_class: str  # torchvision.datasets.<this>
    folder: str  # under data.root, where torchvision looks for the files ("" = data.root itself)
    files: tuple[str, ...]  # what torchvision needs in that folder
    shape: tuple[int, int, int]  # (C, H, W)
    n_classes: int
    layout: str  # axes of the class's ``.data``: "NHW", "NHWC" or "NCHW"
    by_split_name: bool  # the class takes split="train"|"test" (else train=True|False)
    crop: bool  # data.augment: random crops of the padded image
    flip: bool  # data.augment: horizontal flips too (not for digits, which a mirror changes)


CIFAR10_FILES = (*(f"data_batch_{k}" for k in range(1, 6)), "test_batch", "batches.meta")
SETS = {
    "fashion_mnist": ImageSet("Fashion-MNIST", "FashionMNIST", "FashionMNIST/raw", files.IDX_FILES, (1, 28, 28), 10,
                              "NHW", False, crop=False, flip=False),
    "kmnist": ImageSet("KMNIST", "KMNIST", "KMNIST/raw", files.IDX_FILES, (1, 28, 28), 10, "NHW", False,
                       crop=False, flip=False),
    "cifar10": ImageSet("CIFAR-10", "CIFAR10", "cifar-10-batches-py", CIFAR10_FILES, (3, 32, 32), 10, "NHWC", False,
                        crop=True, flip=True),
    "cifar100": ImageSet("CIFAR-100", "CIFAR100", "cifar-100-python", ("train", "test", "meta"), (3, 32, 32), 100,
                         "NHWC", False, crop=True, flip=True),
    "svhn": ImageSet("SVHN", "SVHN", "", ("train_32x32.mat", "test_32x32.mat"), (3, 32, 32), 10, "NCHW", True,
                     crop=True, flip=False),
}
SPLITS = ("train", "test")


def spec(name: str) -> ImageSet:
    if name not in SETS:
        raise ValueError(f"data.name must be one of {list(SETS)} here, got {name!r}")
    return SETS[name]


def folder(name: str, root: str | Path) -> Path:
    return Path(root) / spec(name).folder


def files_present(name: str, root: str | Path) -> bool:
    return not files.missing(folder(name, root), spec(name).files)


def _dataset(name: str, root: str | Path, split: str, download: bool):
    import torchvision.datasets

    s = spec(name)
    cls = getattr(torchvision.datasets, s.torchvision_class)
    where = {"split": split} if s.by_split_name else {"train": split == "train"}
    return cls(str(root), download=download, **where)


def try_download(name: str, root: str | Path, timeout: float = 10.0) -> str | None:
    """torchvision's own download of both splits, quiet. None on success, else the reason in one line."""
    def fetch() -> None:
        for split in SPLITS:
            _dataset(name, root, split, download=True)

    return files.quiet_download(fetch, timeout)


def ensure(name: str, root: str | Path, download: bool = True) -> None:
    """The files are there, or downloaded now; else one DataError line (the folder, the files)."""
    if files_present(name, root):
        return
    reason = try_download(name, root) if download else "data.download=false"
    if reason is not None or not files_present(name, root):
        raise files.not_found(spec(name).title, folder(name, root), spec(name).files, reason or "incomplete")


def _nchw(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "NHW":  # one channel
        return x.unsqueeze(1)
    if layout == "NHWC":
        return x.permute(0, 3, 1, 2)
    return x


def _read(name: str, root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    s = spec(name)
    try:
        ds = _dataset(name, root, split, download=False)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted" (md5 sums differ)
        raise DataError(f"{s.title} files in {folder(name, root)}/ failed torchvision's check ({str(e).splitlines()[0]}): "
                        f"they differ from the published files; replace them, or delete them to download again") from e
    except ImportError as e:  # SVHN's .mat files are read by scipy
        raise DataError(f"{s.title}'s files need {e.name or 'scipy'}: pip install -r requirements.txt") from e
    x = _nchw(torch.as_tensor(np.asarray(ds.data)), s.layout)
    y = torch.as_tensor(np.asarray(ds.labels if s.by_split_name else ds.targets), dtype=torch.int64).reshape(-1)
    where = folder(name, root)
    if tuple(x.shape[1:]) != s.shape:
        raise DataError(f"{s.title} {split} images in {where}/ are {tuple(x.shape[1:])}, expected (C, H, W) = {s.shape}")
    if len(x) != len(y):
        raise DataError(f"{s.title} {split} files in {where}/ hold {len(x)} images but {len(y)} labels")
    if len(y) and not (0 <= int(y.min()) and int(y.max()) < s.n_classes):
        raise DataError(f"{s.title} {split} labels in {where}/ run from {int(y.min())} to {int(y.max())}, "
                        f"expected 0 to {s.n_classes - 1}")
    return x.reshape(len(x), -1).to(torch.float32).div_(255.0), y  # (n, C*H*W), channel-major


def load(name: str, root: str | Path, download: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train": (x, y), "test": (x, y)}`` as the module docstring says."""
    ensure(name, root, download)
    s = spec(name)
    if s.files == files.IDX_FILES:
        files.check_idx(folder(name, root), s.shape[1:], s.title)
    return {split: _read(name, root, split) for split in SPLITS}
