"""Data: MNIST (with an offline fallback), the torchvision image sets and the paper's toy sets.

``mnist``, ``vision`` (Fashion-MNIST, KMNIST, CIFAR-10, CIFAR-100, SVHN), ``files``, ``transforms``
and ``toy`` are plain torch; ``datamodule.AstdpDataModule`` wraps them for Lightning and is imported
lazily so that the plain modules load without Lightning.
"""

from __future__ import annotations

from typing import Any, Mapping

from astdp.data import files, mnist, vision
from astdp.data.errors import DataError
from astdp.data.mnist import SOURCES

__all__ = ["AstdpDataModule", "DataError", "SOURCES", "ensure_files"]


def ensure_files(data: Mapping[str, Any]) -> None:
    """A run's data files are there (or downloaded now, where ``data.download`` allows), else one
    :class:`DataError` line naming the folder and the files expected. Cheap when they are there.

    Meant to run before the model is built. MNIST needs nothing unless ``data.allow_fallback=false``
    (otherwise its 5,000 bundled digits stand in); the toy sets need nothing.
    """
    name, root, download = data.get("name"), str(data.get("root", "data")), bool(data.get("download", True))
    if name in vision.SETS:
        vision.ensure(name, root, download)
    elif name == "mnist" and data.get("allow_fallback") is False and not mnist.files_present(root):
        reason = mnist.try_download(root) if download else "data.download=false"
        if reason is not None:
            raise files.not_found("MNIST", mnist.raw_dir(root), mnist.FILES,
                                  f"{reason}; data.allow_fallback=false, so no fallback")


def __getattr__(name):
    if name == "AstdpDataModule":
        from astdp.data.datamodule import AstdpDataModule

        return AstdpDataModule
    raise AttributeError(name)
