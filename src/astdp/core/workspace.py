"""The per-batch-size buffers of the relaxation loop (:class:`Workspace`), reused at every step.

Shapes: ``z``, ``d`` (rho, rho'), ``a``, ``c`` (the targets folded in): (2, B, N), net_s then net_l;
``pre`` (2B, N): the drive ``W z + b``, then the force, as rows of both networks; ``dz``: (B, N).
:meth:`Workspace.set_targets` folds a phase's targets into ``a``, ``c`` and the exact clamps.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from astdp.core import activations
from astdp.core.state import State

if TYPE_CHECKING:
    from astdp.core.exchange import _Exchange


class Workspace:
    """Buffers for one batch size, dtype and device, reused at every step."""

    def __init__(self, n: int, n_hidden: int, batch: int, dtype: torch.dtype, device: torch.device,
                 eps: tuple[float, float]):
        opts = {"dtype": dtype, "device": device}
        self.z = torch.empty(2, batch, n, **opts)  # rho(s)
        self.d = torch.empty(2, batch, n, **opts)  # rho'(s)
        self.pre = torch.empty(2 * batch, n, **opts)  # W z + b, then the force f, rows: net_s then net_l
        self.force = self.pre.view(2, batch, n)
        self.dz = torch.empty(batch, n, **opts)  # rho(s_l) - rho(s_s)
        self.a = torch.empty(2, batch, n, **opts)  # -(1 + beta) where targeted, -1 elsewhere
        self.c = torch.empty(2, batch, n, **opts)  # beta * t where targeted, 0 elsewhere
        self.adz = torch.empty(batch, n, **opts)  # |dz|
        self.dmax = torch.empty(2, batch, **opts)
        self.eps = torch.tensor(eps, **opts).view(2, 1, 1)
        self.key = (eps, n_hidden)
        self.n_hidden = n_hidden
        self._fake: tuple[torch.Tensor, ...] | None = None
        self._hidden: tuple[int, torch.Tensor] | None = None  # (lo, mask) of hidden_mask
        self.patches: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # conv blocks from clamped inputs (set_targets)
        self.fixed: dict[int, torch.Tensor] | None = None  # drive of blocks from clamped inputs (ClampedDeferral._defer_begin)
        self.deferred: list[tuple] = []  # their summed updates, applied at the end of the phase
        self.deferred_keys: tuple[int, ...] = ()
        self.carry: tuple | None = None  # (clamped inputs' z, their drives, Gram matrices) left by the last phase
        # data parallel with factors (FactorExchange._exchange_begin): every process's dz and z_s, gathered
        self.factors = False  # this phase's updates come from the exchange below
        self.exchange: _Exchange | None = None
        self.dz_all: torch.Tensor | None = None  # (world x B, N): dz of all processes, rank by rank
        self.z_all: torch.Tensor | None = None  # (world x B, N): z_s of all processes

    def signals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """eq (15)'s factors this phase's updates are built from: (dz, z_s), this process's or gathered."""
        return (self.dz_all, self.z_all) if self.factors else (self.dz, self.z[0])

    def hidden_mask(self, hidden: slice, lo: int) -> torch.Tensor:
        """(N - lo,): 1 on the hidden columns of the state from column ``lo`` on, 0 elsewhere (kept)."""
        if self._hidden is None or self._hidden[0] != lo:
            mask = torch.zeros(self.dz.shape[1] - lo, dtype=self.dz.dtype, device=self.dz.device)
            mask[hidden.start - lo : hidden.stop - lo] = 1.0
            self._hidden = (lo, mask)
        return self._hidden[1]

    def fake_buffers(self) -> tuple[torch.Tensor, ...]:
        """(u, threshold, t_f, fired) of shape (B, N_hidden) and (beta * fired, t_f - s) of shape (2, B, N_hidden)."""
        if self._fake is None:
            batch, like = self.dz.shape[0], self.dz
            one = [torch.empty(batch, self.n_hidden, dtype=like.dtype, device=like.device) for _ in range(4)]
            two = [torch.empty(2, batch, self.n_hidden, dtype=like.dtype, device=like.device) for _ in range(2)]
            self._fake = (*one, *two)
        return self._fake

    def set_targets(self, topology, targets, state: State, activation: str) -> None:
        """Fold the targets of a phase into ``a``, ``c`` and the exact clamps (once per phase, not per step).

        Several targets may share a layer (e.g. some pixels set, others nudged): nudges add up,
        ``a = -1 - sum beta``, ``c = sum beta t``.

        Sets ``lo``, the first state column the steps of this phase work on: ``n_in`` when the whole
        input layer is clamped exactly (its states are set here, and its ``rho``, ``rho'`` and
        ``dz`` computed once), else 0; ``skip`` then names the input layer, whose blocks neither run
        nor learn. ``exact`` lists the other exact clamps as
        ``(slice, keep (2, B, n), clamped values (2, B, n))``, applied here and after every step.
        """
        self.a.fill_(-1.0)
        self.c.zero_()
        self.lo, self.skip, self.exact = 0, (), []
        self.fixed, self.deferred, self.deferred_keys = None, [], ()
        self.factors, self.exchange = False, None
        for tg in targets:
            layer = tg.layer
            sl = topology.slice(layer)
            a, c = self.a[:, :, sl], self.c[:, :, sl]  # (2, B, n_l)
            beta = tg.beta.to(a.dtype).expand_as(a)
            value = tg.value.to(c.dtype)
            if not tg.exact:
                a.sub_(beta)
                c.addcmul_(beta, value.expand_as(c))
                continue
            mask = (beta > 0).to(a.dtype)  # (2, B, n_l): 1 where set, 0 where free
            if layer == topology.input_layer and bool(mask.all()):
                self.lo, self.skip = sl.stop, (layer,)
                state.s[:, :, sl].copy_(value.expand_as(a))
                state.v[:, :, sl].zero_()
                activations.get_into(activation)(state.s[:, :, sl], self.z[:, :, sl], self.d[:, :, sl])
                self.dz[:, sl].zero_()
                self.adz[:, sl].zero_()
            else:
                keep, set_value = 1.0 - mask, mask * value
                self.exact.append((sl, keep, set_value))
                state.s[:, :, sl].mul_(keep).add_(set_value)
                state.v[:, :, sl].mul_(keep)
        # conv blocks from the exactly clamped inputs: their maps unfolded once per phase (core/blocks.py)
        self.patches = {i: conv.patches(self.z[0]) for i, conv in enumerate(topology.convs) if conv.pre in self.skip}

