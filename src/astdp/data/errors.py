"""The data layer's error type, shared by every loader and by the harness that reports it."""


class DataError(RuntimeError):
    """A data problem the user can fix (missing or corrupt files, a refused fallback), said in one line."""
