"""The errors a user can act on, shared by every layer above the science (``data/``, ``lit/``,
``experiments/``): each ends a run with one line on stderr (``train.py`` prints ``error: <message>``).

Defined here, below all their users, so that no layer imports another sideways or upwards for them.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value outside its allowed range."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read, or that is refused because loading it could run code."""


class DataError(RuntimeError):
    """A data problem the user can fix (missing or corrupt files, a refused fallback), said in one line."""


class DivergenceError(RuntimeError):
    """The training state blew up: a user-facing one-line error (the learning rate is too high)."""


class PeerLostError(RuntimeError):
    """A process of a data-parallel run died or stopped answering within ``trainer.strategy.timeout``."""


class Interrupted(RuntimeError):
    """The run was stopped by a signal after saving its checkpoint."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
