"""Data parallel with factors: a step's aSTDP update built by every process from everyone's ``dz`` and ``z_s``.

The mixin :class:`FactorExchange` of :class:`astdp.core.engine.Relaxer` plans, per phase, which
blocks take their update from gathered factors and which send their own dense update
(:meth:`FactorExchange._exchange_begin`, :meth:`FactorExchange._exchange_plan`), and builds a
step's exchange as calls (:meth:`FactorExchange._exchange_ops`). The hook is the relaxer's
``reduce_hook`` (lit/ddp.py).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from astdp.core import plasticity
from astdp.core.hooks import FactorGather
from astdp.core.workspace import Workspace


@dataclass
class _Exchange:
    """What a phase's steps send under ``sync=step`` with factors (:meth:`Relaxer._exchange_begin`).

    ``dz_slices`` / ``z_slices``: the state columns of ``dz`` and ``z_s`` every process sends,
    gathered into ``dz_all`` / ``z_all``; ``factor_blocks``: the blocks whose update every process
    builds from them; ``own`` / ``summed``: the other blocks (dense, where that is fewer elements than
    the factors they would need), this process's own update and the sum of everyone's; ``cols`` /
    ``cols_all`` (N - lo,) / (N,): the column sums of ``dz`` (the bias updates), this process's and
    everyone's (zero on clamped inputs). ``elements``: what one process sends per step.
    """

    dz_slices: list[slice]
    z_slices: list[slice]
    factor_blocks: tuple[int, ...]
    own: dict[int, torch.Tensor]
    summed: dict[int, torch.Tensor]
    cols: torch.Tensor
    cols_all: torch.Tensor
    elements: int
    ops: tuple | None = None  # the eager step's calls (Relaxer._exchange_ops): (send, receive and update)



class FactorExchange:
    """The exchange-plan part of :class:`astdp.core.engine.Relaxer` (uses its ``net``, ``plast``,
    ``reduce_hook`` and ``defer_clamped``)."""

    def _exchange_begin(self, ws: Workspace, alpha: float, scales) -> None:
        """Data parallel: sum the processes' updates as dense matrices, or build them from gathered factors.

        A learning phase under a ``reduce_hook`` that can gather (a :class:`~astdp.core.hooks.FactorGather`)
        may take every step's update from the factors
        of eq (15) instead of summing dense deltas: each process sends its ``dz`` and ``z_s`` (the
        columns after exactly clamped inputs) and computes ``sum_p dz_p^T z_p`` from everyone's,
        which is the sum the dense hook forms, in one product over the gathered batch. The plan is
        made per block (:meth:`_exchange_plan`): a block whose factors would be more elements than
        the block itself (the outputs' drive from a wide hidden layer) sends its own dense update
        instead, summed in the same exchange. The clamped inputs are gathered once per phase, so the
        blocks from them keep their once-per-phase path (:meth:`_defer_begin`). The hook decides per
        phase from the elements each way (``hook.factors(batch, exchanged, dense)``, a collective
        call: every process takes the same decision); derivative smoothing and nets with conv blocks keep
        the dense sums (every process has the same topology, so all skip the collective alike).
        """
        ws.factors, ws.exchange = False, None
        hook = self.reduce_hook
        if alpha <= 0 or not isinstance(hook, FactorGather) or self.plast.smoothing > 0:
            return
        if self.net.topology.convs:  # conv blocks send their dense kernel deltas (plasticity.apply)
            return
        net, t = self.net, self.net.topology
        batch, n = ws.dz.shape
        lo = ws.lo
        learning = [k for k, blk in enumerate(t.blocks)
                    if plasticity.block_learns(net, k, scales) and blk.post not in ws.skip]
        plan = self._exchange_plan(ws, learning)
        if not hook.factors(batch, plan.elements, t.n + sum(net.learning(k).numel() for k in learning)):
            return
        ws.factors, ws.exchange = True, plan
        rows = hook.world * batch
        if ws.dz_all is None or ws.dz_all.shape[0] != rows:
            ws.dz_all = ws.dz.new_zeros(rows, n)
            ws.z_all = ws.dz.new_zeros(rows, n)
        ws.dz_all[:, :lo].zero_()  # dz = 0 on exactly clamped inputs
        if lo:
            hook.gather([ws.z[0, :, :lo]], [ws.z_all[:, :lo]])

    def _exchange_plan(self, ws: Workspace, learning: list[int]) -> _Exchange:
        """Per learning block: its update from gathered factors, or its own update summed as a dense
        matrix, whichever adds fewer elements to a step's message (a layer's ``dz`` or ``z_s``,
        once gathered, serves every block that reads it). The receiving layers of the blocks from
        clamped inputs always send their ``dz``: those blocks' drive needs everyone's."""
        net, t = self.net, self.net.topology
        batch, lo = ws.dz.shape[0], ws.lo
        deferred = {k for k in learning if lo and self.defer_clamped and t.blocks[k].hi <= lo}
        dz_layers = {t.blocks[k].post for k in deferred}
        z_spans: set[tuple[int, int]] = set()
        factor_blocks, own = [], {}
        for k in learning:
            if k in deferred:
                continue
            blk = t.blocks[k]
            sl = t.slice(blk.post)
            extra = (0 if blk.post in dz_layers else sl.stop - sl.start)
            extra += 0 if blk.hi <= lo or (blk.lo, blk.hi) in z_spans else blk.hi - blk.lo
            if batch * extra < net.learning(k).numel():
                factor_blocks.append(k)
                dz_layers.add(blk.post)
                if blk.hi > lo:
                    z_spans.add((blk.lo, blk.hi))
            else:
                own[k] = plasticity.partial_buffer(net, k, narrow=True)
        dz_slices = [t.slice(layer) for layer in sorted(dz_layers)]
        z_slices = [slice(a, b) for a, b in sorted(z_spans)]
        n = ws.dz.shape[1]
        elements = (batch * sum(sl.stop - sl.start for sl in (*dz_slices, *z_slices))
                    + sum(buf.numel() for buf in own.values()) + n - lo)
        return _Exchange(dz_slices, z_slices, tuple(factor_blocks), own,
                         {k: torch.empty_like(buf) for k, buf in own.items()}, ws.dz.new_empty(n - lo),
                         ws.dz.new_zeros(n), elements)

    def _exchange_ops(self, ws: Workspace, rate: float, scales, column_sums: torch.Tensor | None = None):
        """A step's exchange as calls: (before: this process's dense parts, start, wait, after: the
        summed updates). ``column_sums`` (N,): ``dz``'s column sums, kept by the caller (else computed)."""
        ex, hook, net, lo = ws.exchange, self.reduce_hook, self.net, ws.lo
        before = plasticity.partial_ops(net, ws.dz, ws.z[0], ex.own, narrow=True)
        if column_sums is None:
            before.append(functools.partial(torch.sum, ws.dz[:, lo:], 0, out=ex.cols))
            column_sums = ex.cols
        else:
            column_sums = column_sums[lo:]
        parts = [ws.dz[:, sl] for sl in ex.dz_slices] + [ws.z[0, :, sl] for sl in ex.z_slices]
        outs = [ws.dz_all[:, sl] for sl in ex.dz_slices] + [ws.z_all[:, sl] for sl in ex.z_slices]
        start = functools.partial(hook.gather_start, parts, outs, [*ex.own.values(), column_sums],
                                  [*ex.summed.values(), ex.cols_all[lo:]])
        others = tuple(k for k in range(len(net.topology.blocks)) if k not in ex.factor_blocks)
        after = plasticity.summed_ops(net, ex.summed, rate, scales, narrow=True) + plasticity.update_ops(
            net, ws.dz_all, ws.z_all, rate, ws.skip, scales, others, narrow=True, column_sums=ex.cols_all)
        return before, start, hook.gather_wait, after
