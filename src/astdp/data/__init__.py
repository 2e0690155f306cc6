"""Data: MNIST (with an offline fallback) and the paper's toy sets.

``mnist`` and ``toy`` are plain torch; ``datamodule.AstdpDataModule`` wraps them for Lightning and
is imported lazily so that the plain modules load without Lightning.
"""

from astdp.data.mnist import SOURCES, DataError

__all__ = ["AstdpDataModule", "DataError", "SOURCES"]


def __getattr__(name):
    if name == "AstdpDataModule":
        from astdp.data.datamodule import AstdpDataModule

        return AstdpDataModule
    raise AttributeError(name)
