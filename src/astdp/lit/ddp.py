"""Data-parallel training over processes (Lightning DDP): ``trainer=ddp trainer.devices=N``.

Each process trains on its own ``data.batch_size`` samples per batch (the data module gives it
every N-th sample of the one-process training order) with its own persistent state slots. aSTDP changes the weights
inside the relaxation, at every step, with no autograd, so nothing for DDP's gradient hooks to do:
the weights stay identical on every process because every step's updates are summed over the
processes before they are applied (``sync=step``, :class:`AllReduceSum` as the relaxer's
``reduce_hook``). With ``model.reduction=sum`` that sum is the update of one process trained on the
combined batch (N x ``data.batch_size`` samples), step for step. ``sync=periodic``
(:class:`PeriodicSum`) lets each process learn on its own and sums the changes every
``sync_every`` batches. The backprop baselines, whose parameters need gradients, are wrapped in
plain DDP.

Hydra: Lightning starts the processes of ranks >= 1 by running the script again. With the
command line of a multirun (``-m ...``) that would run the whole sweep again in every such
process; :func:`job_command` makes them run the one job in progress instead, from the config that
job saved (``<run dir>/.hydra/config.yaml``), in the same run folder.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities import rank_zero_only

LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")  # set by the launcher
SYNC_MODES = ("step", "periodic")  # step: every relaxation step's updates summed over the processes;
# periodic: each process learns on its own, and every `sync_every` batches the weight changes of all
# processes since the last synchronisation are summed (fewer, larger messages; an approximation)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_rank_zero() -> bool:
    """True in the process that writes metrics.json, checkpoints and images (and in a single process)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy consecutive pieces of ``flat`` back into ``tensors`` (the inverse of concatenating them)."""
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


class PeriodicSum:
    """``sync=periodic``: the weights learn locally; :meth:`sync` adds every process's changes since
    the last call to every process (the same total rate as ``step``, applied late)."""

    def __init__(self, tensors: list[torch.Tensor], group=None) -> None:
        self.tensors, self.group = tensors, group
        self.last = torch.cat([t.detach().reshape(-1) for t in tensors])  # the weights at the last sync
        self.calls, self.bytes, self.seconds = 0, 0, 0.0

    @torch.no_grad()
    def sync(self) -> None:
        start = time.perf_counter()
        change = torch.cat([t.reshape(-1) for t in self.tensors]).sub_(self.last)
        dist.all_reduce(change, op=dist.ReduceOp.SUM, group=self.group)
        self.last.add_(change)
        unflatten_into(self.last, self.tensors)
        self.calls += 1
        self.bytes += change.numel() * change.element_size()
        self.seconds += time.perf_counter() - start


class AllReduceSum:
    """A relaxer ``reduce_hook``: sums a step's weight and bias updates over all processes, in place.

    The deltas travel as one flat message per step (one ``all_reduce`` instead of one per block).
    ``calls``, ``bytes`` (payload per process) and ``seconds`` (packing included) are counted for
    benchmarks.
    """

    def __init__(self, group=None) -> None:
        self.group = group
        self.calls, self.bytes, self.seconds = 0, 0, 0.0

    def __call__(self, deltas: list[torch.Tensor]) -> None:
        start = time.perf_counter()
        flat = torch.cat([d.reshape(-1) for d in deltas])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        unflatten_into(flat, deltas)
        self.calls += 1
        self.bytes += flat.numel() * flat.element_size()
        self.seconds += time.perf_counter() - start


@contextmanager
def run_scope():
    """One run's processes: afterwards the process group ends and the launcher's variables are
    restored, so that the next job of a multirun starts (and launches) processes of its own."""
    before = {k: os.environ.get(k) for k in LAUNCH_VARIABLES}
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def weight_spread(tensors: list[torch.Tensor]) -> float:
    """The largest difference between these tensors and rank 0's copies, over all processes (0.0: in step)."""
    mine = torch.cat([t.detach().reshape(-1) for t in tensors])
    ref = mine.clone()
    dist.broadcast(ref, src=0)
    spread = (mine - ref).abs().max().reshape(1)
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    return float(spread)


def job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command (and working folder) that starts rank ``local_rank`` of the Hydra job in progress.

    It composes the job's saved config (so multirun values, sweeps and searches are not re-run)
    and writes into the job's own folder; the saved config is left as rank 0 wrote it.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    if hc.output_subdir is None:  # no saved config to read: the job's own overrides, as a single run
        command += list(hc.overrides.task)
    else:
        command += ["--config-path", str(run_dir / hc.output_subdir), "--config-name", "config"]
    command += [f'hydra.run.dir="{run_dir}"', f"hydra.job.name={hc.job.name}_rank{local_rank}",
                "hydra.output_subdir=null"]
    return command, get_original_cwd()


class AstdpDDPStrategy(DDPStrategy):
    """Lightning's DDP, which leaves a module with no parameter that needs a gradient unwrapped
    (aSTDP: the :class:`AllReduceSum` hook keeps its weights in step) and starts the processes of a
    Hydra job with :func:`job_command`.

    ``sync``: how the aSTDP updates are synchronised (:data:`SYNC_MODES`); ``sync_every``: batches
    between two synchronisations with ``sync=periodic``.
    """

    def __init__(self, sync: str = "step", sync_every: int = 10, **kwargs) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"trainer.strategy.sync must be one of {list(SYNC_MODES)}, got {sync!r}")
        if not isinstance(sync_every, int) or sync_every < 1:
            raise ValueError(f"trainer.strategy.sync_every must be an integer >= 1, got {sync_every!r}")
        super().__init__(**kwargs)
        self.sync, self.sync_every = sync, sync_every

    def _setup_model(self, model: torch.nn.Module):
        if not any(p.requires_grad for p in model.parameters()):
            return model
        return super()._setup_model(model)

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        from pytorch_lightning.strategies.launchers import subprocess_script

        subprocess_script._hydra_subprocess_cmd = job_command
