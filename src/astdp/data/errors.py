"""The data layer's error type (defined with the others in :mod:`astdp.errors`), for every loader here."""

from astdp.errors import DataError

__all__ = ["DataError"]
