"""Relaxation dynamics of the two networks: eq (1), (2), (5) and momentum inference eq (19)-(20).

For every neuron ``i`` of each network (net_s: ``s[0]``, net_l: ``s[1]``):

    R_i(s)  = rho'(s_i) * ( sum_j W[i, j] rho(s_j) + b_i )                    (2)
    f_i     = R_i(s) - s_i + beta_i * (t_i - s_i)                              (1) + (5)
    s_i    <- s_i + eps * f_i                                                  plain Euler step
    v_i    <- m_v * f_i + (1 - m_v) * v_i ;  s_i <- s_i + eps * v_i            momentum (19)-(20)

Bounded reading (optional, ``bounds = [lo, hi]``): after every step both networks' states are
clipped, ``s <- clip(s, lo, hi)``, as in the CHNN of Equilibrium Propagation (Scellier & Bengio
2017). Input clamping ``exact`` sets the input neurons to their targets (``s_i = t_i`` in both
networks, no relaxation, so ``dz_i = 0`` there) instead of nudging them with ``beta_input``.
Output clamping ``exact`` sets the output neurons to the labels in the network whose ``beta_output``
is above 0 (net_l) and leaves them free in the other, so ``dz = t - rho(s_s)`` on the outputs (the
clamped phase of contrastive Hebbian learning) instead of the nudged fraction of it. With bounded
states, an output whose drive has fallen far below 0 can no longer be lifted by a nudge (``dz = 0``
in both networks); set, it keeps its error.

``beta_i`` is zero for neurons without a target. ``eps`` and ``beta`` differ between the networks
(eps_s, eps_l; beta_s < beta_l). With ``m_v = 1`` momentum is exactly eq (1).
Targets act on states ``s`` (not on ``rho(s)``).

The functions at the end compute these equations in place on preallocated tensors
(:func:`drive_into` eq (2), :func:`force_` eq (1) + (5), :func:`momentum_` eq (19)-(20),
:func:`euler_` the step and the clip); :mod:`astdp.core.engine` calls them at every step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from astdp.core import activations

if TYPE_CHECKING:
    from astdp.core.precision import Products

INPUT_CLAMPS = ("nudge", "exact")
OUTPUT_CLAMPS = ("nudge", "exact")


def _pair(x, name: str) -> tuple[float, float]:
    x = tuple(float(v) for v in x)
    if len(x) != 2:
        raise ValueError(f"{name} must be a pair [small-beta net, large-beta net], got {x}")
    return x  # type: ignore[return-value]


@dataclass
class Dynamics:
    activation: str = "sigmoid4_centered"  # rho, eq (2)
    eps: tuple[float, float] = (0.5, 0.4)  # step size of (net_s, net_l), eq (1), in (0, 1]
    beta: tuple[float, float] = (0.4, 0.5)  # nudging (beta_s, beta_l) of visible targets, eq (5)
    beta_input: tuple[float, float] | None = None  # override for input neurons (None: beta)
    beta_output: tuple[float, float] | None = None  # override for output neurons (None: beta)
    momentum: float = 1.0  # inertia m_v of eq (20), in (0, 1]; 1 = plain eq (1)
    init_scale: float = 0.1  # initial states ~ U(-init_scale, init_scale)
    bounds: tuple[float, float] | None = None  # states clipped to [lo, hi] after every step (None: free)
    input_clamp: str = "nudge"  # "nudge": inputs pulled with beta_input; "exact": inputs set to the pixels
    output_clamp: str = "nudge"  # "nudge": outputs pulled with beta_output; "exact": set to the labels where beta_output > 0

    def __post_init__(self) -> None:
        self.eps = _pair(self.eps, "model.eps")
        self.beta = _pair(self.beta, "model.beta")
        if self.beta_input is not None:
            self.beta_input = _pair(self.beta_input, "model.beta_input")
        if self.beta_output is not None:
            self.beta_output = _pair(self.beta_output, "model.beta_output")
        activations.get(self.activation)
        for e in self.eps:
            if not 0.0 < e <= 1.0:
                raise ValueError(f"model.eps must lie in (0, 1], got {list(self.eps)}")
        for name, b in (("model.beta", self.beta), ("model.beta_input", self.beta_input)):
            if b is not None and (min(b) < 0 or b[0] > b[1]):
                raise ValueError(f"{name} must satisfy 0 <= beta_small <= beta_large, got {list(b)}")
        b = self.beta_output  # a negative beta_small pushes net_s's outputs away from the labels (centred nudging)
        if b is not None and not (-1.0 < b[0] <= b[1] and b[1] >= 0):
            raise ValueError(f"model.beta_output must satisfy -1 < beta_small <= beta_large, beta_large >= 0, got {list(b)}")
        if not 0.0 < self.momentum <= 1.0:
            raise ValueError(f"model.momentum must lie in (0, 1] (1 = no momentum), got {self.momentum}")
        if self.bounds is not None:
            self.bounds = _pair(self.bounds, "model.bounds")
            if not self.bounds[0] < self.bounds[1]:
                raise ValueError(f"model.bounds must be null or [lo, hi] with lo < hi, got {list(self.bounds)}")
        if self.input_clamp not in INPUT_CLAMPS:
            raise ValueError(f"model.input_clamp must be one of {INPUT_CLAMPS}, got {self.input_clamp!r}")
        if self.output_clamp not in OUTPUT_CLAMPS:
            raise ValueError(f"model.output_clamp must be one of {OUTPUT_CLAMPS}, got {self.output_clamp!r}")
        if self.output_clamp == "exact" and not self.output_beta[0] == 0 < self.output_beta[1]:
            raise ValueError("model.output_clamp=exact sets the outputs where beta_output > 0, so it needs them free in "
                             f"net_s and set in net_l: beta_output [0, b] with b > 0, got {list(self.output_beta)}")
        if self.init_scale < 0:
            raise ValueError(f"model.init_scale must be >= 0, got {self.init_scale}")

    @property
    def input_beta(self) -> tuple[float, float]:
        return self.beta_input or self.beta

    @property
    def output_beta(self) -> tuple[float, float]:
        return self.beta_output or self.beta


# -- the step, as functions on tensors (the relaxation loop calls these on its buffers, in place) --------
NARROW = 32  # fewer output columns than this: a product is computed transposed (drive_ops, update_ops)


def drive_ops(net, z: torch.Tensor, out: torch.Tensor, skip: tuple[int, ...] = (),
              fixed: dict[int, torch.Tensor] | None = None, narrow: bool = False, nets: int = 1,
              patches: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
              cast: Products | None = None) -> list[Callable[[], object]]:
    """eq (2) without ``rho'`` as a list of calls: running them writes
    ``out[:, layer] = sum_blocks z[:, block] @ W_k^T + b_layer``.

    ``z``, ``out``: (2B, N) rows of states (net_s then net_l; (B, N): net_s alone), one GEMM per block, written straight
    into the receiving layer's columns. Layers in ``skip`` are left untouched. ``fixed[k]`` (B, n_post)
    is block ``k``'s term when its pre-synaptic states are the same in both networks and known
    (clamped inputs): it is added to both networks' rows instead of running the block's GEMM.
    The calls hold views of ``z``, ``out``, the weights and ``fixed``: built once, they stay valid
    while those tensors are changed in place (a phase of the relaxation).

    ``narrow``: a layer with fewer than :data:`NARROW` neurons (the outputs) gets its drive as
    ``W_k @ z^T`` into a (n_layer, rows) buffer, then transposed into ``out``: the same sums, in a
    shape that BLAS runs several times faster than a product with a handful of strided columns.

    Conv blocks (``topology.convs``, :mod:`astdp.core.blocks`) add their drive to the receiving layer
    and their feedback to the sending one after the dense blocks (a layer with no dense block into it
    starts from its bias). ``nets``: how many networks' rows ``z`` stacks; a conv block from a layer
    in ``skip`` (clamped alike in every network) then convolves one network's rows and adds them to all,
    from ``patches[i]`` (the sending maps unfolded once per phase, :meth:`Conv2dPool.patches`) when given.

    ``cast`` (``trainer.precision=bf16-mixed``, :mod:`astdp.core.precision`): the calls first cast
    ``z`` once, and every product takes low-precision operands (the weights' copies refreshed when
    they changed); each product is added to the fp32 ``out`` (``narrow`` is not used then).
    """
    t = net.topology
    ops: list[Callable[[], object]] = []
    zc = z  # the operand of the products: z, or its low-precision copy
    if cast is not None:
        zc, cast_z = cast.cast_op(("z",), z)
        ops.append(cast_z)
    for layer, ks in enumerate(t.blocks_into):
        if layer in skip:
            continue
        cols = out[:, t.slice(layer)]
        if not ks:  # only conv blocks reach this layer
            ops.append(functools.partial(cols.copy_, net.biases[layer]))
        first = True
        for k in ks:
            if fixed is not None and k in fixed:
                both = cols.view(-1, fixed[k].shape[0], cols.shape[1])  # (networks, B, n_layer)
                if first:
                    ops.append(functools.partial(torch.add, fixed[k], net.biases[layer], out=both[0]))
                    if both.shape[0] > 1:
                        ops.append(functools.partial(both[1:].copy_, both[:1]))
                else:
                    ops.append(functools.partial(both.add_, fixed[k]))
            elif cast is not None:  # low-precision product into a buffer, added to fp32 out
                blk, w = t.blocks[k], net.weights[k]
                buf = cast.buffer(("drive", k), cols.shape, z.device)
                ops += [functools.partial(cast.refresh, w),
                        functools.partial(torch.mm, zc[:, blk.lo : blk.hi], cast.copy(w).t(), out=buf)]
                ops.append(functools.partial(torch.add, net.biases[layer], buf, out=cols) if first
                           else functools.partial(cols.add_, buf))
            elif narrow and cols.shape[1] < NARROW:
                blk = t.blocks[k]
                zt, buf = z[:, blk.lo : blk.hi].t(), out.new_empty(cols.shape[1], cols.shape[0])
                if first:
                    ops += [functools.partial(torch.addmm, net.biases[layer].unsqueeze(1), net.weights[k], zt, out=buf),
                            functools.partial(cols.copy_, buf.t())]
                else:
                    ops += [functools.partial(torch.mm, net.weights[k], zt, out=buf), functools.partial(cols.add_, buf.t())]
            else:
                blk = t.blocks[k]
                zk, wt = z[:, blk.lo : blk.hi], net.weights[k].t()
                if first:
                    ops.append(functools.partial(torch.addmm, net.biases[layer], zk, wt, out=cols))
                else:
                    ops.append(functools.partial(cols.addmm_, zk, wt))
            first = False
    for i, (conv, w) in enumerate(zip(t.convs, net.kernels)):
        if cast is not None:  # the kernel's low-precision copy, refreshed when it changed
            ops.append(functools.partial(cast.refresh, w))
            w = cast.copy(w)
        if conv.post not in skip:
            cols = out[:, conv.post_cols[0] : conv.post_cols[1]]
            if conv.pre in skip and nets > 1:
                rows = z.shape[0] // nets
                cols = cols.view(nets, rows, -1)
                if patches and i in patches:
                    x = patches[i][0] if cast is None else cast.copy(patches[i][0])  # cast once per phase
                    term = functools.partial(conv.drive_patches, x, w)
                else:
                    term = functools.partial(conv.drive, zc[:rows], w)
            else:
                term = functools.partial(conv.drive, zc, w)
            ops.append(functools.partial(_add_drive, term, cols))
        if conv.pre not in skip:
            ops.append(functools.partial(_add_drive, functools.partial(conv.feedback, zc, w),
                                         out[:, conv.pre_cols[0] : conv.pre_cols[1]]))
    return ops


def _add_drive(term: Callable[[], torch.Tensor], cols: torch.Tensor) -> None:
    """``cols += term()``: a conv block's drive or feedback (rows broadcast over stacked networks)."""
    cols.add_(term())


def drive_into(net, z: torch.Tensor, out: torch.Tensor, skip: tuple[int, ...] = (),
               fixed: dict[int, torch.Tensor] | None = None, nets: int = 1, patches: dict | None = None,
               cast: Products | None = None) -> None:
    """eq (2) without ``rho'``, computed now (:func:`drive_ops`)."""
    for op in drive_ops(net, z, out, skip, fixed, nets=nets, patches=patches, cast=cast):
        op()


def force_(f: torch.Tensor, d: torch.Tensor, s: torch.Tensor, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """eq (1) + (5) in place on ``f`` (holding ``W z + b``): ``f = rho'(s) f + a s + c``.

    With ``a = -(1 + beta)`` and ``c = beta t`` where a neuron has a target (``a = -1``, ``c = 0``
    elsewhere) this is ``R(s) - s + beta (t - s)``.
    """
    return f.mul_(d).addcmul_(s, a).add_(c)


def momentum_(v: torch.Tensor, f: torch.Tensor, m: float) -> torch.Tensor:
    """eq (19)-(20): ``v <- m f + (1 - m) v`` in place; returns ``v``, the step direction."""
    return v.mul_(1.0 - m).add_(f, alpha=m)


def euler_(s: torch.Tensor, f: torch.Tensor, eps: torch.Tensor, bounds: tuple[float, float] | None) -> None:
    """``s <- s + eps f``, then ``s <- clip(s, lo, hi)`` in the bounded reading (in place)."""
    s.addcmul_(f, eps)
    if bounds is not None:
        s.clamp_(*bounds)
