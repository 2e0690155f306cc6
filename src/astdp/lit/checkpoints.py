"""Checkpoints that lose nothing: atomic saves, a cadence inside epochs, saves on signals and divergence.

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file beside its target,
  flushes it to disk and renames it over the target, so a crash or a full disk during a save
  leaves the previous checkpoint whole; temporary files of a killed save are removed at the next
  start.
- :class:`RunCheckpoint` saves ``last.ckpt`` every ``every_n_train_steps`` training batches and at
  the end of every ``every_n_epochs``-th epoch (after its validation), keeps a copy per epoch with
  ``save_top_k=-1``, and on SIGINT (Ctrl-C) or SIGTERM (what SLURM sends before it kills a job)
  finishes the batch in progress, saves ``last.ckpt`` and stops the run with
  :class:`Interrupted`. On divergence it saves the blown-up state as ``diverged.ckpt`` and leaves
  ``last.ckpt`` at the last good save. A second Ctrl-C stops at once (``last.ckpt`` is then the
  last periodic save).
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint

from astdp.errors import CheckpointError, DivergenceError, Interrupted

TMP_SUFFIX = ".tmp"
SIGNAL_NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every file system lets a folder be opened; the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the target's folder, fsync, then ``os.replace``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path} ({e.strerror or e}): make its folder writable "
                              f"or give the run another folder (hydra.run.dir=...)") from e
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointError(f"cannot write checkpoint {path} ({e.strerror or e}); the previous one is "
                                  f"unchanged: free space or make the folder writable") from e
        raise
    _fsync_dir(path.parent)


def rank_file(checkpoint: str | Path, rank: int) -> Path:
    """Where rank ``rank`` (>= 1) of a data-parallel run keeps its own state beside ``checkpoint``."""
    checkpoint = Path(str(checkpoint))
    return checkpoint.with_name(f"{checkpoint.name}.rank{rank}")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files of saves that were killed (``.<name>.<random>.tmp``)."""
    folder = Path(folder)
    stale = [p for p in folder.glob(f".*.ckpt.*{TMP_SUFFIX}")] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_writable(folder: str | Path) -> None:
    """Fail before training (and before any data loads) if checkpoints cannot be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", suffix=TMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoints to {folder} ({e.strerror or e}): make it writable or "
                              f"give the run another folder (hydra.run.dir=...)") from e


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with :func:`atomic_save`."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any | None = None) -> None:
        atomic_save(checkpoint, path)


class RunCheckpoint(Checkpoint):
    """``last.ckpt`` every ``every_n_train_steps`` batches and every ``every_n_epochs`` epochs, on signals
    and (as ``diverged.ckpt``) on divergence. ``save_top_k=-1`` also keeps ``epoch=<e>-step=<s>.ckpt``
    per saved epoch; ``0`` keeps only ``last.ckpt``."""

    LAST, DIVERGED = "last.ckpt", "diverged.ckpt"

    def __init__(self, dirpath: str, every_n_train_steps: int | None = 100, every_n_epochs: int | None = 1,
                 save_top_k: int = 0, save_last: bool = True, save_on_signal: bool = True) -> None:
        for key, v in (("every_n_train_steps", every_n_train_steps), ("every_n_epochs", every_n_epochs)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValueError(f"callbacks.checkpoint.{key} must be an integer >= 0 or null (0/null: never), got {v!r}")
        if save_top_k not in (-1, 0):
            raise ValueError(f"callbacks.checkpoint.save_top_k must be 0 (only last.ckpt) or -1 (also one file per "
                             f"epoch), got {save_top_k!r}")
        self.dirpath = Path(dirpath)
        self.every_n_train_steps, self.every_n_epochs = every_n_train_steps or 0, every_n_epochs or 0
        self.keep_epochs, self.save_last, self.save_on_signal = save_top_k == -1, bool(save_last), bool(save_on_signal)
        self.signum: int | None = None
        self._saved_handlers: dict[int, Any] = {}
        self.last_saved_step: int | None = None

    @property
    def last_path(self) -> Path:
        return self.dirpath / self.LAST

    # -- saving ---------------------------------------------------------------------------------
    def save(self, trainer, name: str | None = None) -> Path:
        path = self.dirpath / (name or self.LAST)
        trainer.save_checkpoint(str(path), weights_only=False)
        rank_state = getattr(trainer.lightning_module, "rank_state", None)
        if trainer.world_size > 1 and trainer.global_rank > 0 and rank_state is not None:
            atomic_save({"global_step": trainer.global_step, "world_size": trainer.world_size,
                         "state": rank_state()}, rank_file(path, trainer.global_rank))
        if name is None:
            self.last_saved_step = trainer.global_step
        return path

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            check_writable(self.dirpath)
            remove_stale_temps(self.dirpath)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.signum is not None:
            self._stop(trainer)
        n = self.every_n_train_steps
        if n and self.save_last and trainer.global_step % n == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.signum is not None:
            self._stop(trainer)
        n = self.every_n_epochs
        if n and (trainer.current_epoch + 1) % n == 0:
            if self.keep_epochs:
                self.save(trainer, f"epoch={trainer.current_epoch}-step={trainer.global_step}.ckpt")
            if self.save_last:
                self.save(trainer)

    # -- signals --------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame) -> None:
        self.signum = signum
        if signum == signal.SIGINT:  # a second Ctrl-C stops at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
        print(f"\n{SIGNAL_NAMES.get(signum, signum)} received: saving {self.last_path} after this batch, then "
              f"stopping{' (Ctrl-C again: stop now)' if signum == signal.SIGINT else ''}", file=sys.stderr, flush=True)

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """What a signal does: save after the batch in progress, then stop (also for in-process use)."""
        self.signum = signum

    def on_train_start(self, trainer, pl_module) -> None:
        self.signum = None
        if not self.save_on_signal:
            return
        try:
            for signum in SIGNAL_NAMES:
                self._saved_handlers[signum] = signal.signal(signum, self._on_signal)
        except ValueError:  # not the main thread: signals stay with their owner
            self._saved_handlers = {}

    def _restore_handlers(self) -> None:
        for signum, handler in self._saved_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._saved_handlers = {}

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_handlers()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore_handlers()

    def _stop(self, trainer) -> None:
        signum, self.signum = self.signum, None
        path = self.save(trainer)
        self._restore_handlers()
        raise Interrupted(signum, f"stopped by {SIGNAL_NAMES.get(signum, signum)} at batch {trainer.global_step} "
                                  f"(epoch {trainer.current_epoch}); saved {path}: resume with ckpt_path={path}")

    # -- divergence -----------------------------------------------------------------------------
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_handlers()
        if not isinstance(exception, DivergenceError):
            return
        try:
            path = self.save(trainer, self.DIVERGED)
            note = f"the diverged state is in {path}"
        except CheckpointError as e:
            note = f"the diverged state could not be saved ({e})"
        last = (f"{self.last_path} holds batch {self.last_saved_step}" if self.last_saved_step is not None
                else f"{self.last_path} holds the last periodic save" if self.last_path.exists()
                else "no earlier checkpoint was written")
        exception.args = (f"{exception.args[0]}; {note}, {last}",)


# -- reading a checkpoint before anything is built from it -----------------------------------------
ARCHITECTURE_KEYS = ("learner.name", "depth.hidden", "depth.lateral", "data.n_inputs", "data.n_outputs",
                     "data.batch_size")


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if node is None or not hasattr(node, "get"):
            return None
        node = node.get(part)
    return node


def upgrade_state_dict(state: dict) -> dict:
    """Checkpoints written before the System was a submodule: ``net_W<k>`` -> ``system.net.weights.<k>``,
    ``net_b<l>`` -> ``system.net.biases.<l>``, ``state_<train|eval>_<key>`` -> ``system.<train|eval>_<key>``
    (in place; returns ``state``)."""
    for old in [k for k in state if k.startswith(("net_W", "net_b", "state_train_", "state_eval_"))]:
        if old.startswith("net_W"):
            new = f"system.net.weights.{old[5:]}"
        elif old.startswith("net_b"):
            new = f"system.net.biases.{old[5:]}"
        else:
            new = "system." + old[len("state_"):]
        state[new] = state.pop(old)
    return state


def refused_type(error: BaseException) -> str:
    """The type a ``weights_only`` load refused, as torch names it (``posix.system``), else ``""``."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    return found.group(1) if found else ""


def refusal(path: str | Path, error: BaseException, key: str = "ckpt_path") -> str:
    """One line: the file holds a type a checkpoint need not hold; how to convert a file one trusts."""
    return (f"{key}={path} holds a Python object of type {refused_type(error)}, which a checkpoint of this tool "
            f"never needs; it was refused without running anything. If you trust where it came from (e.g. it was "
            f"written before checkpoints held only tensors and plain data), convert it once with: "
            f"python scripts/convert_checkpoint.py --trust {path} <new.ckpt>")


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict:
    """The checkpoint at ``path`` as a dict; a missing, empty, truncated or foreign file is one clear error.

    Loaded with ``weights_only=True``: a checkpoint holds tensors and plain data only (the config as
    plain containers, generator states as tensors), so a file whose pickle names any other type (e.g.
    one that would run a command) is refused before anything in it runs."""
    path = Path(str(path))
    if not path.exists():
        raise CheckpointError(f"{key}={path} does not exist: give a checkpoint file, e.g. "
                              f"outputs/train/runs/<time>/checkpoints/last.ckpt")
    if not path.is_file():
        raise CheckpointError(f"{key}={path} is a folder, not a checkpoint file: give e.g. {path}/last.ckpt")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{key}={path} is empty (0 bytes): use an earlier checkpoint")
    ckpt = load_safely(path, key)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{key}={path} is not a checkpoint written by train.py (no state_dict in it)")
    upgrade_state_dict(ckpt["state_dict"])
    return ckpt


def load_safely(path: str | Path, key: str = "ckpt_path"):
    """``torch.load`` with ``weights_only=True``; a refused type or a corrupt file is one clear error."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if refused_type(e):  # weights_only refused a type: nothing of the file has run
            raise CheckpointError(refusal(path, e, key)) from None
        raise CheckpointError(f"{key}={path} is not a readable checkpoint (truncated or corrupt): use another "
                              f"checkpoint") from None
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means the file is not usable
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{key}={path} is not a readable checkpoint (truncated or corrupt: {reason}): "
                              f"use another checkpoint") from e
    return ckpt


def check_compatible(ckpt: dict, path: str | Path, cfg: Any, module: torch.nn.Module, key: str = "ckpt_path") -> None:
    """The checkpoint fits this run's network: same learner, layer sizes and batch slots, same tensors."""
    saved = ckpt.get("astdp_config")
    if saved is not None:
        for dotted in ARCHITECTURE_KEYS:
            was, now = _get(saved, dotted), _get(cfg, dotted)
            if was is not None and now is not None and _plain(was) != _plain(now):
                raise CheckpointError(f"{key}={path} was trained with {dotted}={_plain(was)}, this run has "
                                      f"{dotted}={_plain(now)}: use the checkpoint's value (or start a new run "
                                      f"without {key})")
    ours = module.state_dict()
    theirs = ckpt["state_dict"]
    for name, tensor in ours.items():
        if name not in theirs:
            raise CheckpointError(f"{key}={path} has no tensor {name}: it was written for another network")
        if tuple(theirs[name].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{key}={path} holds {name} of shape {tuple(theirs[name].shape)}, this run needs "
                                  f"{tuple(tensor.shape)}: use the checkpoint's depth, data and batch size")
    extra = sorted(set(theirs) - set(ours))
    if extra:
        raise CheckpointError(f"{key}={path} has tensors this network lacks ({extra[0]}, ...): it was written for "
                              f"another network")


def _plain(v: Any) -> Any:
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    except ImportError:  # pragma: no cover
        return v
