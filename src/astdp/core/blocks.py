"""Connections between two layers: the drive of the receiving layer, the feedback to the sending layer,
and the local aSTDP update, for each kind of connection (docs/EQUATIONS.md, "Convolutional blocks").

Every layer is a flat state vector; a block reads the columns of its layers from the full state rows
``z`` (R, N) and returns what it adds to them. With the block's weights ``w``:

    drive(z, w)     (R, n_post)   what the sending layer adds to eq (2)'s sum of the receiving one
    feedback(z, w)  (R, n_pre)    the transposed operation: what the receiving layer adds to the
                                  sending one's sum (the same weights, so the pair is symmetric)
    update(dz, z)   shape of w    eq (15): the receiving layer's ``dz`` against the sending layer's
                                  ``rho(s_s)``, summed over the rows

:class:`Dense` is ``W`` of shape (n_post, n_pre): ``drive = z_pre W^T``, ``feedback = z_post W``,
``update = dz_post^T z_pre``. The dense blocks of :class:`astdp.core.network.Topology` (one matrix
per direction, as the paper has them) run through the stacked GEMMs of ``dynamics.drive_ops`` and
``plasticity.update_ops``, which compute exactly these products; :class:`Dense` states them.

:class:`Conv2dPool` is a 2-D convolution (kernel ``k``, stride, zero padding) followed by average
pooling over ``pool x pool`` windows (stride ``pool``; 1: no pooling), with one kernel ``K`` of shape
(C_out, C_in, k, k) serving both directions, as in the convolutional Hopfield nets of Equilibrium
Propagation (Ernoult et al. 2019; Laborieux et al. 2021) and the energy-based-learning library of
Scellier et al. (conv with its pooling folded into the interaction). The interaction energy is
``-<P(K * z_pre), z_post>`` (``*``: the convolution, ``P``: the average pooling), so

    drive    = P(K * z_pre)                      (B, C_out, H', W')
    feedback = K^T * P^T(z_post)                 (B, C_in, H, W)    the transposed convolution
    update   = P^T(dz_post) (x) z_pre  +  P^T(z_post) (x) dz_pre    (C_out, C_in, k, k)

where ``(x)`` is the correlation that gives a convolution's weight gradient, and ``P^T`` spreads each
pooled value evenly over its window (average pooling is linear, so its transpose is exact and the net
stays a Hopfield net). The update is eq (15) for every synapse the kernel stands for: each kernel entry
is a forward synapse (post-synaptic ``dz`` of the receiving maps x ``rho`` of the sending maps) and the
feedback synapse of the same pair (``dz`` of the sending maps x ``rho`` of the receiving maps), so it
learns the sum of the two, as a tied dense pair does (``model.pairs=tied``). When the sending layer is
clamped exactly (``dz_pre = 0``) only the first term remains (``pre_learns=False``).
Shapes: rows are flat, channel-major: a layer of shape (C, H, W) is the columns ``c H W + h W + w``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_weight


@dataclass(frozen=True)
class Dense:
    """``W`` (n_post, n_pre) between the state columns ``pre`` and ``post`` (slices as (start, stop))."""

    pre: tuple[int, int]
    post: tuple[int, int]

    def drive(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return z[:, self.pre[0] : self.pre[1]] @ w.t()  # (R, n_post)

    def feedback(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return z[:, self.post[0] : self.post[1]] @ w  # (R, n_pre)

    def update(self, dz: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return dz[:, self.post[0] : self.post[1]].t() @ z[:, self.pre[0] : self.pre[1]]  # (n_post, n_pre)


@dataclass(frozen=True)
class ConvSpec:
    """One convolutional layer of a depth file: ``channels`` maps from a ``kernel`` x ``kernel``
    convolution with ``stride`` and zero ``padding``, then ``pool`` x ``pool`` average pooling."""

    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: int = 1

    KEYS = ("channels", "kernel", "stride", "padding", "pool")

    @classmethod
    def parse(cls, entry, where: str) -> ConvSpec:
        """From a depth file's mapping, with a one-line error naming ``where`` (e.g. ``depth.hidden[0]``)."""
        entry = dict(entry)
        unknown = sorted(set(entry) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}; a conv layer takes {list(cls.KEYS)}")
        for key, low in (("channels", 1), ("kernel", 1), ("stride", 1), ("padding", 0), ("pool", 1)):
            v = entry.get(key, getattr(cls, key, None) if key not in ("channels", "kernel") else None)
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
                raise ValueError(f"{where}.{key} must be an integer >= {low}, got {v!r}")
        return cls(**entry)


def pooled_shape(in_shape: tuple[int, int, int], spec: ConvSpec, where: str = "depth") -> tuple[int, int, int]:
    """(C_out, H', W') of a conv layer on maps ``in_shape`` (C_in, H, W); a one-line error when it does not fit."""
    _, h, w = in_shape
    hc = (h + 2 * spec.padding - spec.kernel) // spec.stride + 1
    wc = (w + 2 * spec.padding - spec.kernel) // spec.stride + 1
    if hc < 1 or wc < 1:
        raise ValueError(f"{where}: a {spec.kernel}x{spec.kernel} kernel (padding {spec.padding}) does not fit "
                         f"maps of {h}x{w}")
    if hc % spec.pool or wc % spec.pool:
        raise ValueError(f"{where}: the convolution gives {hc}x{wc} maps, which {spec.pool}x{spec.pool} pooling "
                         "does not divide; change kernel, padding or pool")
    return spec.channels, hc // spec.pool, wc // spec.pool


@dataclass(frozen=True)
class Conv2dPool:
    """The convolution with average pooling from layer ``pre`` (maps ``in_shape``) into layer ``post``.

    ``pre_cols`` / ``post_cols``: the layers' state columns as (start, stop).
    """

    pre: int
    post: int
    in_shape: tuple[int, int, int]
    spec: ConvSpec
    pre_cols: tuple[int, int]
    post_cols: tuple[int, int]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return pooled_shape(self.in_shape, self.spec)

    @property
    def conv_shape(self) -> tuple[int, int, int]:
        """(C_out, H_c, W_c): the maps before pooling."""
        c, h, w = self.out_shape
        return c, h * self.spec.pool, w * self.spec.pool

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return self.spec.channels, self.in_shape[0], self.spec.kernel, self.spec.kernel

    def fan_in(self) -> int:
        """Inputs of one receiving neuron before pooling (the kernel's draw, as a dense layer's)."""
        return self.in_shape[0] * self.spec.kernel ** 2

    @property
    def positions(self) -> int:
        """Where the kernel is applied: H_c W_c, the synapses of a pair of maps that one kernel entry stands for."""
        _, h, w = self.conv_shape
        return h * w

    def fan_out(self) -> int:
        """About how many receiving neurons one sending neuron feeds (its feedback's fan-in)."""
        return max(1, math.ceil(self.spec.channels * self.spec.kernel ** 2 / self.spec.stride ** 2 / self.spec.pool ** 2))

    # -- the three things a block gives ---------------------------------------------------------------
    def _maps(self, z: torch.Tensor, cols: tuple[int, int], shape) -> torch.Tensor:
        return z[:, cols[0] : cols[1]].unflatten(1, shape)  # (R, C, H, W), a view

    def _unpool(self, y: torch.Tensor) -> torch.Tensor:
        """``P^T``: each pooled value spread evenly over its window, (R, C, H', W') -> (R, C, H_c, W_c)."""
        p = self.spec.pool
        if p == 1:
            return y
        return y.repeat_interleave(p, 2).repeat_interleave(p, 3).div_(p * p)

    def drive(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``P(K * z_pre)`` as rows (R, n_post)."""
        x = self._maps(z, self.pre_cols, self.in_shape)
        y = F.conv2d(x, w, stride=self.spec.stride, padding=self.spec.padding)  # (R, C_out, H_c, W_c)
        if self.spec.pool > 1:
            y = F.avg_pool2d(y, self.spec.pool)
        return y.flatten(1)

    def feedback(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``K^T * P^T(z_post)`` as rows (R, n_pre): the transpose of :meth:`drive`."""
        y = self._unpool(self._maps(z, self.post_cols, self.out_shape))
        _, h, wd = self.in_shape
        k, s, p = self.spec.kernel, self.spec.stride, self.spec.padding
        extra = (h - ((y.shape[2] - 1) * s - 2 * p + k), wd - ((y.shape[3] - 1) * s - 2 * p + k))
        x = F.conv_transpose2d(y, w, stride=s, padding=p, output_padding=extra)  # (R, C_in, H, W)
        return x.flatten(1)

    def update(self, dz: torch.Tensor, z: torch.Tensor, pre_learns: bool = True) -> torch.Tensor:
        """eq (15) for the kernel: ``P^T(dz_post) (x) z_pre + P^T(z_post) (x) dz_pre`` (C_out, C_in, k, k).

        ``pre_learns=False``: ``dz_pre`` is known to be zero (exactly clamped inputs), the second term is skipped.
        """
        g = self._unpool(self._maps(dz, self.post_cols, self.out_shape))
        x = self._maps(z, self.pre_cols, self.in_shape)
        if pre_learns:  # both terms in one correlation over twice the rows
            g = torch.cat([g, self._unpool(self._maps(z, self.post_cols, self.out_shape))])
            x = torch.cat([x, self._maps(dz, self.pre_cols, self.in_shape)])
        return conv2d_weight(x.contiguous(), self.weight_shape, g.contiguous(), stride=self.spec.stride,
                             padding=self.spec.padding)

    # -- a sending layer that stays the same over a phase (exactly clamped inputs) ---------------------
    def patches(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sending maps unfolded once: ``X`` (R, C_in k k, L) and its rows ``X_t`` (R L, C_in k k),
        L = H_c W_c. While they stay the same, :meth:`drive_patches` and :meth:`update_patches` are one
        GEMM each (a one-channel input convolves several times faster so than through conv2d)."""
        x = self._maps(z, self.pre_cols, self.in_shape)
        patches = F.unfold(x, self.spec.kernel, padding=self.spec.padding, stride=self.spec.stride)
        return patches, patches.transpose(1, 2).reshape(-1, patches.shape[1])

    def drive_patches(self, patches: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """:meth:`drive` from :meth:`patches`' ``X``: (R, n_post)."""
        c, h, wd = self.conv_shape
        y = torch.matmul(w.view(c, -1), patches).view(patches.shape[0], c, h, wd)  # (R, C_out, H_c, W_c)
        if self.spec.pool > 1:
            y = F.avg_pool2d(y, self.spec.pool)
        return y.flatten(1)

    def update_patches(self, dz: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """:meth:`update` with ``dz_pre = 0`` from :meth:`patches`' ``X_t``: (C_out, C_in, k, k)."""
        g = self._unpool(self._maps(dz, self.post_cols, self.out_shape))  # (B, C_out, H_c, W_c)
        return (g.transpose(0, 1).reshape(g.shape[1], -1) @ rows).view(self.weight_shape)
