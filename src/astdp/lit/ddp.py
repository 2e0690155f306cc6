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

``train.py`` starts the processes of ranks >= 1 itself, before its imports (:mod:`astdp.lit.launch`);
where Lightning starts them (e.g. ``evaluate.py``), :func:`astdp.lit.launch.job_command` makes them
run the Hydra job in progress rather than the whole command line again.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities import rank_zero_only

from astdp.core.hooks import FactorGather
from astdp.errors import PeerLostError
from astdp.lit.launch import LAUNCH_VARIABLES, connected, job_command, restore_variables

SYNC_MODES = ("step", "periodic")  # step: every relaxation step's updates summed over the processes;
# periodic: each process learns on its own, and every `sync_every` batches the weight changes of all
# processes since the last synchronisation are summed (fewer, larger messages; an approximation)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_rank_zero() -> bool:
    """True in the process that writes metrics.json, checkpoints and images (and in a single process)."""
    return getattr(rank_zero_only, "rank", 0) == 0


TIMEOUT_S = {"cpu": 300.0, "gpu": 600.0}  # trainer.strategy.timeout=null: the deadline of every wait, by accelerator
LIVENESS_S = 0.5  # how often a wait for other processes checks that they are still alive


@dataclass
class Peers:
    """Every process of the run (rank -> host and pid), and the deadline of a wait for them.

    Set once the process group exists (:meth:`AstdpDDPStrategy.setup_distributed`). A wait that
    could outlast a dead process checks the ones on this machine every :data:`LIVENESS_S` seconds
    (:meth:`check`), and gives up after ``timeout_s``; gloo and nccl collectives have the same
    deadline (the process group's timeout) and fail at once when a peer's connection closes."""

    hosts: list[str]
    pids: list[int]
    timeout_s: float

    def dead(self) -> list[int]:
        """Ranks on this machine whose process no longer exists."""
        here = socket.gethostname()
        return [r for r, (h, pid) in enumerate(zip(self.hosts, self.pids)) if h == here and not _alive(pid)]

    def describe(self, ranks: Sequence[int]) -> str:
        return ", ".join(f"rank {r} (pid {self.pids[r]} on {self.hosts[r]})" for r in ranks)

    def _died(self, ranks: Sequence[int]) -> PeerLostError:
        return PeerLostError(f"process {self.describe(ranks)} of this data-parallel run has died")

    def check(self) -> None:
        """Raise :class:`PeerLostError` if a process of the run on this machine has died."""
        dead = self.dead()
        if dead:
            raise self._died(dead)

    def lost(self, error: BaseException | None = None, waiting_for: Sequence[int] = ()) -> PeerLostError:
        """The error for a wait that failed (``error``: the collective's) or ran past its deadline."""
        dead = self.dead()
        settle = time.monotonic() + 2.0  # a killed process closes its sockets before it has fully ended
        while error is not None and not dead and time.monotonic() < settle:
            time.sleep(0.05)
            dead = self.dead()
        if dead:
            return self._died(dead)
        if error is not None:
            reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            return PeerLostError(f"a process of this data-parallel run stopped answering ({reason})")
        who = self.describe(waiting_for) if waiting_for else "a process"
        return PeerLostError(f"{who} of this data-parallel run gave no answer within trainer.strategy.timeout="
                             f"{self.timeout_s:g} s: it is stuck or its machine is unreachable")


_peers: Peers | None = None  # the processes of the data-parallel run in progress (None: one process)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (a child that ended, not yet waited for) has died too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return True


# What gloo and nccl say when a peer's connection closes or a collective passes its deadline (gloo
# raises a plain RuntimeError, not torch.distributed.DistError)
TRANSPORT_FAILURE = re.compile(r"gloo|nccl|connection|timed out|timeout|peer|socket", re.IGNORECASE)


def transport_failure(error: BaseException) -> PeerLostError | None:
    """The one-line error for a collective that failed because a process died or stopped answering;
    None for any other error (a bug, a wrong shape), which keeps its traceback."""
    if isinstance(error, PeerLostError):
        return error
    if not isinstance(error, RuntimeError):
        return None
    dead = _peers.dead() if _peers is not None else []
    if not dead and not (isinstance(error, dist.DistError) or TRANSPORT_FAILURE.search(str(error))):
        return None
    if _peers is not None:
        return _peers.lost(error)
    return PeerLostError(f"a process of this data-parallel run stopped answering "
                         f"({str(error).strip().splitlines()[0][:160]})")


@contextmanager
def collective():
    """Around torch.distributed calls: a failure (a dead peer's closed connection, a timeout) becomes
    one :class:`PeerLostError` that names the process, where it can be known; other errors pass."""
    try:
        yield
    except RuntimeError as e:
        lost = transport_failure(e)
        if lost is None or lost is e:
            raise
        raise lost from None


def unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy consecutive pieces of ``flat`` back into ``tensors`` (the inverse of concatenating them)."""
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


class PeriodicSum:
    """``sync=periodic``: the weights learn locally; :meth:`sync` adds every process's changes since
    the last call to every process (the same total rate as ``step``, applied late). CPU processes
    on one machine sum through shared memory (:class:`SharedGather`; gloo's ``all_reduce`` of the
    3 MB of the default net took 8-12 ms), others with ``all_reduce``.

    ``sync(overlap=True)`` sends this process's changes and returns at once; the sum arrives at the
    next call, while the process has gone on learning (its changes made meanwhile are kept on top
    of the sum). A process then waits only for one that is a whole batch behind, not for every
    small difference in pace. ``sync()`` completes any sum in flight first: afterwards every
    process holds the same weights.

    A tensor whose summed change was exactly zero (e.g. the blocks into exactly clamped inputs)
    leaves the message, and only a flag says whether it changed anywhere since; if it did, it
    comes back at the next sum with everything it learnt meanwhile. All processes take these
    decisions from the same sums, so their messages keep one layout."""

    def __init__(self, tensors: list[torch.Tensor], group=None) -> None:
        self.tensors, self.group = tensors, group
        self.last = [t.detach().clone() for t in tensors]  # the weights every process agrees on
        self.active = [True] * len(tensors)  # in the message (else: a changed-flag only)
        self.calls, self.bytes, self.seconds = 0, 0, 0.0
        local = (not tensors[0].is_cuda and dist.get_world_size(group) > 1 and SharedGather.usable(group))
        self.shared = SharedGather(group) if local else None
        self._pending = None  # (the tensors sent, the flagged ones, this process's message, the sum, gloo's work)
        self._arrived = False  # the pending sum is in `summed` already (waited for by state_dict)

    @torch.no_grad()
    def sync(self, overlap: bool = False) -> None:
        start = time.perf_counter()
        if self._pending is not None:
            self._complete()
        self._send()
        if not overlap:
            while self._complete():  # a flagged tensor's changes travel in one more round
                self._send()
        self.seconds += time.perf_counter() - start

    def _send(self) -> None:
        sent = [i for i, on in enumerate(self.active) if on]
        flagged = [i for i, on in enumerate(self.active) if not on]
        parts = [self.tensors[i].reshape(-1) - self.last[i].reshape(-1) for i in sent]
        flags = torch.tensor([float(not torch.equal(self.tensors[i], self.last[i])) for i in flagged],
                             dtype=self.last[0].dtype, device=self.last[0].device)
        message = torch.cat([*parts, flags])
        summed = torch.empty_like(message)
        if self.shared is not None:
            self.shared.start([], [], [message], [summed])
            work = None
        else:
            summed.copy_(message)
            with collective():
                work = dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=self.group, async_op=True)
        self._pending = (sent, flagged, message, summed, work)
        self._arrived = False
        self.calls += 1
        self.bytes += message.numel() * message.element_size()

    def _arrive(self) -> None:
        """Wait for the pending sum to be in ``summed``, without applying it."""
        if self._arrived:
            return
        work = self._pending[4]
        if work is None:
            self.shared.wait()
        else:
            with collective():
                work.wait()
        self._arrived = True

    def state_dict(self) -> dict:
        """What this process needs to go on exactly: the agreed weights, which tensors travel, and the
        sum in flight (waited for here, not applied: it is applied where it would have been)."""
        state = {"last": [t.clone() for t in self.last], "active": list(self.active)}
        if self._pending is not None:
            self._arrive()
            sent, flagged, message, summed, _ = self._pending
            state["pending"] = {"sent": sent, "flagged": flagged, "message": message.clone(), "summed": summed.clone()}
        return state

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in zip(self.last, state["last"]):
            mine.copy_(saved)
        self.active = [bool(a) for a in state["active"]]
        pending = state.get("pending")
        if pending is not None:
            device = self.last[0].device
            self._pending = (list(pending["sent"]), list(pending["flagged"]), pending["message"].to(device),
                             pending["summed"].to(device), None)
            self._arrived = True

    def _complete(self) -> bool:
        """Apply the sum in flight: the agreed weights gain it, and each tensor keeps what this process
        learnt since it sent its changes. True if a flagged tensor changed somewhere (it is back in)."""
        self._arrive()
        sent, flagged, message, summed, _ = self._pending
        self._pending = None
        at = 0
        for i in sent:
            n = self.tensors[i].numel()
            mine, total = message[at : at + n].view_as(self.last[i]), summed[at : at + n].view_as(self.last[i])
            self.tensors[i].add_(total - mine)
            self.last[i].add_(total)
            self.active[i] = bool(total.any())
            at += n
        back = [i for i, flag in zip(flagged, summed[at:].tolist()) if flag > 0]
        for i in back:
            self.active[i] = True
        return bool(back)


class SharedGather:
    """``all_gather`` among the processes of one machine through shared memory, for CPU tensors.

    A step's exchange of factors is a few hundred kilobytes, and over gloo's sockets it costs about
    as much as the step itself, most of it latency. Here every process writes its part into its
    own slot of a shared buffer, publishes a counter, and reads the others' parts once their
    counters have caught up: no socket, no message. Two buffers alternate, so a process may
    write the next exchange while a slower one still reads the last (it cannot get two ahead: it
    waits for everyone's counter first). The buffers grow, collectively, to the largest exchange
    seen. Their files in ``/dev/shm`` are removed as soon as every process has mapped them, and by
    every process on every way out of that step, so none is left behind.

    A wait checks every :data:`LIVENESS_S` seconds that the processes it waits for are alive, and
    ends after ``trainer.strategy.timeout`` (:class:`Peers`): a dead or stuck process ends the run
    with a :class:`PeerLostError` rather than a spin.

    Ordering: a part is copied, then its counter is stored; a reader loads the counter, then the
    part. That order is kept by the hardware only where stores are not reordered with stores nor
    loads with loads (x86's total store order), and Python offers no memory fence, so this path is
    used on x86-64 only (:data:`ORDERED_MACHINES`); elsewhere the exchanges go through gloo.
    """

    ORDERED_MACHINES = ("x86_64", "amd64", "i686", "i386", "x86")

    def __init__(self, group=None) -> None:
        self.group = group
        self.world, self.rank = dist.get_world_size(group), dist.get_rank(group)
        name = [f"/dev/shm/astdp-{uuid.uuid4().hex}" if self.rank == 0 else None]
        dist.broadcast_object_list(name, src=dist.get_global_rank(group, 0) if group else 0, group=group)
        self.base, self.made = name[0], 0
        self.flags = np.frombuffer(self._map(8 * self.world), dtype=np.int64)  # exchanges each process has written
        self.count = 0  # exchanges completed here
        self.slot_bytes = 0
        self.buffers: torch.Tensor | None = None  # (2, world, slot_bytes) uint8
        self._pending = None

    @staticmethod
    def usable(group=None) -> bool:
        """Every process of ``group`` runs on this machine (a collective call)."""
        hosts = [None] * dist.get_world_size(group)
        dist.all_gather_object(hosts, socket.gethostname(), group=group)
        ordered = platform.machine().lower() in SharedGather.ORDERED_MACHINES
        return ordered and os.path.isdir("/dev/shm") and len(set(hosts)) == 1

    def _map(self, nbytes: int) -> np.memmap:
        """A fresh shared file of ``nbytes`` zero bytes, mapped by every process (collective)."""
        self.made += 1
        path = f"{self.base}-{self.made}"
        try:
            if self.rank == 0:
                with open(path, "wb") as f:
                    f.truncate(nbytes)
            with collective():
                dist.barrier(group=self.group)
            mapped = np.memmap(path, dtype=np.uint8, mode="r+", shape=(nbytes,))
            with collective():
                dist.barrier(group=self.group)
        finally:  # mapped everywhere, or failed: either way the file goes (whoever gets there first)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return mapped

    def start(self, parts: list[torch.Tensor], outs: list[torch.Tensor], sums: Sequence[torch.Tensor] = (),
              sum_outs: Sequence[torch.Tensor] = ()) -> None:
        """Write ``parts`` (each (B, ...), any strides) and ``sums`` and publish them; :meth:`wait`
        fills each of ``outs`` (world x B, ...) with everyone's ``parts``, rank by rank, and each of
        ``sum_outs`` (contiguous) with the sum of everyone's ``sums``, in rank order in every process."""
        parts = [*parts, *sums]
        sizes = [p.numel() * p.element_size() for p in parts]
        nbytes = sum(sizes)
        if nbytes > self.slot_bytes:  # every process meets the same sizes in the same order
            self.slot_bytes = nbytes
            self.buffers = torch.frombuffer(self._map(2 * self.world * nbytes), dtype=torch.uint8).view(
                2, self.world, nbytes)
        k = self.count + 1
        regions, at = [], 0
        for part, size in zip(parts, sizes):
            region = self.buffers[k % 2, :, at : at + size].view(part.dtype).view(self.world, *part.shape)
            region[self.rank].copy_(part)
            regions.append(region)
            at += size
        self.flags[self.rank] = k
        self._pending = (k, regions, outs, sum_outs)

    def wait(self) -> None:
        k, regions, outs, sum_outs = self._pending
        if self.flags.min() < k:
            self._spin(k)
        _deliver(regions, outs, sum_outs)
        self.count, self._pending = k, None


    def _spin(self, k: int) -> None:
        """Until every counter reaches ``k``; checks that the others live, and gives up at the deadline."""
        start = last_check = time.monotonic()
        limit = _peers.timeout_s if _peers is not None else TIMEOUT_S["cpu"]
        while self.flags.min() < k:
            os.sched_yield()
            now = time.monotonic()
            if now - last_check >= LIVENESS_S:
                last_check = now
                behind = [int(r) for r in np.flatnonzero(self.flags < k)]
                if _peers is not None:
                    _peers.check()
                if now - start > limit:
                    raise (_peers.lost(waiting_for=behind) if _peers is not None else
                           PeerLostError(f"ranks {behind} gave no answer within {limit:g} s"))


def _deliver(regions: list[torch.Tensor], outs: Sequence[torch.Tensor], sum_outs: Sequence[torch.Tensor]) -> None:
    """Everyone's parts, each (world, ...): the first ``len(outs)`` copied into ``outs`` rank by rank,
    the rest summed over the ranks into ``sum_outs``."""
    for region, out in zip(regions, outs):
        out.view(region.shape).copy_(region)
    for region, out in zip(regions[len(outs):], sum_outs):
        torch.sum(region, 0, out=out)


EXCHANGES = ("auto", "dense", "factors")  # how sync=step sends a step's updates (AllReduceSum.exchange)


class AllReduceSum(FactorGather):
    """A relaxer ``reduce_hook``: sums a step's weight and bias updates over all processes, in place.

    Two ways, chosen per phase by the relaxer through :meth:`factors`:

    - ``dense``: the deltas travel as one flat message per step (one ``all_reduce`` instead of one
      per block);
    - ``factors``: every process gathers everyone's post- and pre-synaptic factors (``dz`` and
      ``z_s``, :meth:`gather_start`) and forms the summed update itself
      (:meth:`astdp.core.engine.Relaxer._exchange_begin`). A block whose factors would be more
      elements than the block sends its own update instead, summed in the same exchange, as do the
      biases. Fewer bytes when the batch is small against the weight blocks, and the blocks from
      clamped inputs keep their once-per-phase path.

    ``exchange``: ``dense``, ``factors`` (when every process has the same batch size) or ``auto``
    (factors when they move fewer bytes: an all_gather brings ``(world - 1) x`` a process's factors,
    a ring all_reduce ``2 (world - 1) / world x`` the dense deltas). Factors of CPU tensors travel
    through shared memory when all processes share one machine (:class:`SharedGather`), else by
    ``all_gather``. ``calls``, ``bytes`` (payload per process and step), ``phase_bytes`` (inputs
    gathered once per phase) and ``seconds`` (packing and waiting included) are counted for benchmarks.
    """

    def __init__(self, group=None, exchange: str = "auto") -> None:
        if exchange not in EXCHANGES:
            raise ValueError(f"trainer.strategy.exchange must be one of {list(EXCHANGES)}, got {exchange!r}")
        self.group, self.exchange = group, exchange
        self.world = dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1
        self.calls, self.bytes, self.phase_bytes, self.seconds = 0, 0, 0, 0.0
        self.exchanged: str | None = None  # the last phase's choice: "dense" | "factors"
        self._pending = None
        local = exchange != "dense" and self.world > 1 and SharedGather.usable(group)
        self.shared = SharedGather(group) if local else None  # factors through shared memory

    def __call__(self, deltas: list[torch.Tensor]) -> None:
        start = time.perf_counter()
        flat = torch.cat([d.reshape(-1) for d in deltas])
        with collective():
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        unflatten_into(flat, deltas)
        self.calls += 1
        self.bytes += flat.numel() * flat.element_size()
        self.seconds += time.perf_counter() - start

    def factors(self, batch: int, factor_elements: int, dense_elements: int) -> bool:
        """Whether this phase exchanges factors (``factor_elements`` per process and step) rather than
        dense deltas (``dense_elements``). Collective: every process must call it, and all get one answer."""
        use = False
        if self.exchange != "dense":
            if self.shared is not None:  # no socket round trip (0.5 ms) once per phase
                sizes, mine = torch.zeros(self.world, dtype=torch.int64), torch.tensor([batch])
                self.shared.start([mine], [sizes])
                self.shared.wait()
            else:  # nccl gathers device tensors only
                device = "cuda" if dist.get_backend(self.group) == "nccl" else "cpu"
                sizes = torch.zeros(self.world, dtype=torch.int64, device=device)
                mine = torch.tensor([batch], device=device)
                with collective():
                    dist.all_gather(list(sizes.view(self.world, 1).unbind(0)), mine, group=self.group)
            even = bool((sizes == batch).all())  # else (a short last batch): dense sums
            use = even and (self.exchange == "factors" or self.world * factor_elements < 2 * dense_elements)
        self.exchanged = "factors" if use else "dense"
        return use

    def gather(self, parts: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        """Each of ``outs`` (world x B, ...) = every process's part (B, ...), rank by rank (once per phase)."""
        self._start(parts, outs)
        self.gather_wait()
        self.phase_bytes += sum(p.numel() * p.element_size() for p in parts)

    def gather_start(self, parts: list[torch.Tensor], outs: list[torch.Tensor], sums: Sequence[torch.Tensor] = (),
                     sum_outs: Sequence[torch.Tensor] = ()) -> None:
        """Start a step's exchange: :meth:`gather` of ``parts`` (factors), and ``sums`` (partial
        updates, column sums) summed over the processes into ``sum_outs``; :meth:`gather_wait` completes it."""
        self._start(parts, outs, sums, sum_outs)
        self.calls += 1
        self.bytes += sum(p.numel() * p.element_size() for p in (*parts, *sums))

    def _start(self, parts: list[torch.Tensor], outs: list[torch.Tensor], sums: Sequence[torch.Tensor] = (),
               sum_outs: Sequence[torch.Tensor] = ()) -> None:
        start = time.perf_counter()
        if self.shared is not None and not parts[0].is_cuda:
            self.shared.start(parts, outs, sums, sum_outs)
            self._pending = self.shared
        else:  # one message: the parts packed one after the other
            send = torch.cat([p.reshape(-1) for p in (*parts, *sums)])
            recv = send.new_empty(self.world, send.numel())
            with collective():
                work = dist.all_gather(list(recv.unbind(0)), send, group=self.group, async_op=True)
            self._pending = _Unpack(work, recv, [p.shape for p in (*parts, *sums)], outs, sum_outs)
        self.seconds += time.perf_counter() - start

    def gather_wait(self) -> None:
        start = time.perf_counter()
        self._pending.wait()
        self._pending = None
        self.seconds += time.perf_counter() - start


class _Unpack:
    """An ``all_gather`` in flight whose packed rows go back into separate tensors when it completes."""

    def __init__(self, work, recv: torch.Tensor, shapes: list[torch.Size], outs: Sequence[torch.Tensor],
                 sum_outs: Sequence[torch.Tensor]) -> None:
        self.work, self.recv, self.shapes, self.outs, self.sum_outs = work, recv, shapes, outs, sum_outs

    def wait(self) -> None:
        with collective():
            self.work.wait()
        regions, at = [], 0
        for shape in self.shapes:
            size = shape.numel()
            regions.append(self.recv[:, at : at + size].view(self.recv.shape[0], *shape))
            at += size
        _deliver(regions, self.outs, self.sum_outs)


@contextmanager
def run_scope():
    """One run's processes: afterwards the process group ends and the launcher's variables are
    restored, so that the next job of a multirun starts (and launches) processes of its own."""
    global _peers
    before = {k: os.environ.get(k) for k in LAUNCH_VARIABLES}
    try:
        with collective():  # Lightning's own collectives too: the same one line as ours
            yield
    finally:
        _peers = None
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        restore_variables(before)


def weight_spread(tensors: list[torch.Tensor]) -> float:
    """The largest difference between these tensors and rank 0's copies, over all processes (0.0: in step)."""
    mine = torch.cat([t.detach().reshape(-1) for t in tensors])
    ref = mine.clone()
    dist.broadcast(ref, src=0)
    spread = (mine - ref).abs().max().reshape(1)
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    return float(spread)


class AstdpDDPStrategy(DDPStrategy):
    """Lightning's DDP, which leaves a module with no parameter that needs a gradient unwrapped
    (aSTDP: the :class:`AllReduceSum` hook keeps its weights in step) and starts the processes of a
    Hydra job with :func:`job_command`.

    ``sync``: how the aSTDP updates are synchronised (:data:`SYNC_MODES`); ``sync_every``: batches
    between two synchronisations with ``sync=periodic``, ``overlap``: whether such a sum arrives one
    synchronisation later (:meth:`PeriodicSum.sync`); ``exchange``: what ``sync=step`` sends
    (:data:`EXCHANGES`, :class:`AllReduceSum`).
    """

    def __init__(self, sync: str = "step", sync_every: int = 1, exchange: str = "auto", overlap: bool = True,
                 timeout: float | None = None, **kwargs) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"trainer.strategy.sync must be one of {list(SYNC_MODES)}, got {sync!r}")
        if not isinstance(sync_every, int) or sync_every < 1:
            raise ValueError(f"trainer.strategy.sync_every must be an integer >= 1, got {sync_every!r}")
        if exchange not in EXCHANGES:
            raise ValueError(f"trainer.strategy.exchange must be one of {list(EXCHANGES)}, got {exchange!r}")
        if not isinstance(overlap, bool):
            raise ValueError(f"trainer.strategy.overlap must be true or false, got {overlap!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            raise ValueError(f"trainer.strategy.timeout must be a number of seconds > 0 or null (300 on CPU, "
                             f"600 on GPU), got {timeout!r}")
        self.timeout_s = float(timeout) if timeout is not None else TIMEOUT_S["cpu"]
        super().__init__(timeout=timedelta(seconds=self.timeout_s), **kwargs)
        self.sync, self.sync_every, self.exchange, self.overlap = sync, sync_every, exchange, overlap

    def setup_distributed(self) -> None:
        """The process group with the run's deadline, then every process's host and pid (:class:`Peers`)."""
        global _peers
        super().setup_distributed()
        table = [None] * dist.get_world_size()
        dist.all_gather_object(table, (socket.gethostname(), os.getpid()))
        _peers = Peers([h for h, _ in table], [pid for _, pid in table], self.timeout_s)
        connected()

    def _setup_model(self, model: torch.nn.Module):
        if not any(p.requires_grad for p in model.parameters()):
            return model
        return super()._setup_model(model)

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        from pytorch_lightning.strategies.launchers import subprocess_script

        subprocess_script._hydra_subprocess_cmd = job_command
