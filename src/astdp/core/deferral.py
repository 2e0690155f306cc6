"""Blocks from exactly clamped inputs, once per phase instead of once per step.

The mixin :class:`ClampedDeferral` of :class:`astdp.core.engine.Relaxer`: while the inputs are
clamped their ``rho`` is constant, so the drive of a block from them follows its summed updates
through the (B, B) Gram matrix of the inputs, and the updates are applied once at the end of the
phase (the same weights at every step in exact arithmetic; :meth:`ClampedDeferral._defer_begin`).
"""
from __future__ import annotations

import functools

import torch

from astdp.core import plasticity
from astdp.core.precision import Products
from astdp.core.workspace import Workspace


class ClampedDeferral:
    """The clamped-input deferral of :class:`astdp.core.engine.Relaxer` (uses its ``net``, ``plast``,
    ``reduce_hook``, ``defer_clamped`` and ``cast``)."""

    cast: Products | None = None  # the Relaxer's low-precision products (set_precision); None: fp32

    def _defer_begin(self, ws: Workspace, alpha: float, scales) -> None:
        """Blocks from exactly clamped inputs: their drive computed once per phase, their updates summed.

        While the inputs are clamped, ``z_in`` is constant and the same in both networks, so with
        ``W_t = W_0 + D_t^T z_in`` (``D_t``: the rate-weighted sum of the receiving layer's ``dz`` over
        the steps so far) the drive is ``z_in W_t^T = z_in W_0^T + (z_in z_in^T) D_t``. A step then
        costs one (B, B) @ (B, n_post) product for such a block instead of the (2B, n_in) @
        (n_in, n_post) forward and (n_post, B) @ (B, n_in) update GEMMs, and ``W += D^T z_in`` once at
        the end of the phase (:meth:`_defer_end`): the same weights at every step in exact
        arithmetic. Off with derivative smoothing, and in a learning phase whose reduce hook sums
        dense updates (a phase that does not learn keeps it under any hook); with gathered factors
        (:meth:`_exchange_begin`) ``D_t`` sums every process's ``dz`` (its rows follow the gathered
        batch) and the Gram matrix pairs this process's inputs with everyone's.
        """
        dense_hook = alpha > 0 and self.reduce_hook is not None and not ws.factors  # updates summed dense
        if not (ws.lo and self.defer_clamped) or dense_hook or (alpha > 0 and self.plast.smoothing > 0):
            ws.carry = None  # the blocks from the inputs may learn step by step in this phase
            return
        net, t = self.net, self.net.topology
        z_clamped = ws.z[0, :, : ws.lo]
        # the previous phase of this run set the same inputs: its drives (kept up to date) and Gram matrices hold
        same = ws.carry is not None and ws.carry[3] == ws.factors and torch.equal(ws.carry[0], z_clamped)
        drives, grams = ws.carry[1:3] if same else ({}, {})
        post_signal, pre_rate = ws.signals()
        fixed: dict[int, torch.Tensor] = {}
        for k, blk in enumerate(t.blocks):
            if blk.hi > ws.lo or blk.post in ws.skip:
                continue
            z_in = ws.z[0, :, blk.lo : blk.hi]  # (B, span), the same in both networks
            fixed[k] = drives[k] if k in drives else z_in @ net.weights[k].t()  # (B, n_post)
            if alpha > 0 and plasticity.block_learns(net, k, scales):
                rate = self.plast.rate(alpha, z_in.shape[0]) * (scales[0][k] if scales else 1.0)
                span = (blk.lo, blk.hi)
                z_pre = pre_rate[:, blk.lo : blk.hi]  # (B or world x B, span)
                if span not in grams:
                    grams[span] = z_in @ z_pre.t()
                acc = post_signal.new_zeros(post_signal.shape[0], fixed[k].shape[1])
                ws.deferred.append((k, t.slice(blk.post), z_pre, grams[span], acc, rate))
        ws.fixed = fixed or None
        ws.deferred_keys = tuple(d[0] for d in ws.deferred)
        ws.carry = (z_clamped.clone(), fixed, grams, ws.factors) if fixed else None

    def _defer_ops(self, ws: Workspace) -> list:
        """After a step's update: ``D += r dz_post``, and the fixed drive ``+= r (z_in z_in^T) dz_post``.

        With low-precision products (``self.cast``) the Gram product takes the Gram matrix's copy (cast
        once) and ``dz_post`` cast, and is added to the fp32 drive; ``D`` sums the fp32 ``dz``."""
        ops = []
        post_signal = ws.signals()[0]
        cast = self.cast
        for k, post, _, gram, acc, rate in ws.deferred:
            dz = post_signal[:, post]  # (B or world x B, n_post)
            ops.append(functools.partial(acc.add_, dz, alpha=rate))
            if cast is None:
                ops.append(functools.partial(ws.fixed[k].addmm_, gram, dz, alpha=rate))
                continue
            dz_c, cast_dz = cast.cast_op(("defer", k), dz)
            buf = cast.buffer(("gram", k), ws.fixed[k].shape, dz.device)
            ops += [cast_dz, functools.partial(torch.mm, cast.copy(gram), dz_c, out=buf),
                    functools.partial(ws.fixed[k].add_, buf, alpha=rate)]
        return ops

    def _defer_step(self, ws: Workspace) -> None:
        for op in self._defer_ops(ws):
            op()

    def _defer_end(self, ws: Workspace) -> None:
        """``W += D^T z_in`` for every deferred block. The fixed drives, already ``z_in W^T`` for the new
        weights, stay in ``ws.carry`` for a next phase of the same run that sets the same inputs."""
        for k, _, z_in, _, acc, _ in ws.deferred:
            self.net.weights[k].addmm_(acc.t(), z_in)
        ws.fixed, ws.deferred, ws.deferred_keys = None, [], ()
