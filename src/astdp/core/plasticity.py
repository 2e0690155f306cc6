"""The aSTDP weight update, eq (15), and derivative smoothing, eq (21)-(23).

At every relaxation step, with ``z = rho(s)``:

    dz_i      = rho(s_l_i) - rho(s_s_i)                                         (15)
    W[i, j]  += alpha * sum_b dz_i * rho(s_s_j)      post-synaptic change x pre-synaptic rate
    b_i      += alpha * sum_b dz_i

Both factors are taken at the same instant (the start of the step). ``(beta_l - beta_s)`` is folded
into ``alpha``. Over a batch the update is summed (``reduction="sum"``, so ``alpha`` means what the
paper's 1e-4 at batch 128 means) or averaged (``"mean"``).

Derivative smoothing (optional, ``gamma > 0``), on net_s, gradient of ``1/2 ds^2``:

    ds_i      = rho'(s_i) (sum_j W[i, j] rho(s_j) + b_i) - s_i                   (21)
    W[i, j]  -= gamma * ds_i * rho'(s_i) * rho(s_j)                              (22)-(23)
    b_i      -= gamma * ds_i * rho'(s_i)

Each block ``(post, [lo, hi))`` costs one GEMM ``(n_post, B) @ (B, hi - lo)`` per step. A conv block's
kernel takes the correlation of its receiving maps' ``dz`` with its sending maps' ``rho(s_s)`` (and,
being its own feedback, of the sending maps' ``dz`` with the receiving maps' ``rho(s_s)``;
:meth:`astdp.core.blocks.Conv2dPool.update`), at the rate multiplier of its receiving layer and over
the number of positions it is applied at: each entry moves by the mean of the updates of the
synapses it stands for (summed over the batch, as every other weight).

Rate schedule (not in the paper; the rate in use for a training batch is ``alpha * factor``):

    constant: 1                      decay: alpha_decay ** epoch
    cosine:   min_factor + (1 - min_factor) (1 + cos(pi t / T)) / 2,   t = batch, T = total_batches
    warm-up (any kind): factor x min(1, (batch + 1) / warmup_batches)
    hidden_batches = H (any kind): the hidden layers' rates also x (1 + cos(pi min(t / H, 1))) / 2,
        so that they stop learning after H batches while the outputs' rates go on (the conv layers
        of a long run, which drift at a rate the outputs need; docs/FINDINGS.md section 39)

``layer_alpha[l]`` scales the rate of every weight and bias *into* layer ``l`` (per-layer rates for
deep nets); without it, ``hidden_alpha`` scales every hidden layer's (any depth); with
``layer_alpha_pairs`` a weight block takes the multiplier of the upper of the layers it joins
instead (``max(post, pre)``), so both directions between two layers learn at one rate (biases
keep their own layer's); ``block_alpha[name]`` scales one weight block on top of that, by its name
``"<post>_from_<pre>"`` (:meth:`Topology.block_name`, e.g. ``"1_from_2"``: output -> hidden);
``feedback_alpha`` scales every feedback block (from the layer above into the one below; 0: the
feedback keeps its random draw, as in feedback alignment);
``weight_decay`` shrinks every learning weight once per training batch,
``W <- (1 - weight_decay * factor) W``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from astdp.core.dynamics import NARROW
from astdp.core.network import Network

if TYPE_CHECKING:
    from astdp.core.precision import Products

REDUCTIONS = ("sum", "mean")
SCHEDULES = ("constant", "decay", "cosine")


@dataclass
class Plasticity:
    alpha: float = 1e-4  # learning rate of eq (15), >= 0
    reduction: str = "sum"  # over the batch: "sum" | "mean"
    smoothing: float = 0.0  # gamma of eq (23), >= 0 (0 = off)
    alpha_decay: float = 1.0  # "decay": alpha is multiplied by this once per epoch, in (0, 1]
    schedule: str = "decay"  # constant | decay | cosine
    warmup_batches: int = 0  # linear warm-up over this many training batches, >= 0
    total_batches: int | None = None  # "cosine": the length T in training batches (None: the harness sets it)
    min_factor: float = 0.0  # "cosine": the factor at the end, in [0, 1]
    hidden_batches: int | None = None  # the hidden layers' rates also anneal to 0 over this many batches (None: off)
    layer_alpha: tuple[float, ...] | None = None  # per receiving layer rate multipliers (None: all 1)
    layer_alpha_pairs: bool = False  # weight blocks take layer_alpha of the upper layer they join
    hidden_alpha: float = 1.0  # with layer_alpha None: the multiplier of every hidden layer (inputs, outputs: 1)
    block_alpha: dict[str, float] | None = None  # per block rate multipliers by block name (None: all 1)
    feedback_alpha: float = 1.0  # rate multiplier of the blocks from a layer into the one below, >= 0
    weight_decay: float = 0.0  # per training batch, >= 0
    epoch: int = 0  # set by the training loop
    batch: int = 0  # training batches done so far (global), set by the training loop

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha_decay <= 1.0:
            raise ValueError(f"learner.alpha_decay must lie in (0, 1], got {self.alpha_decay}")
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise ValueError(f"learner.alpha must be a finite number >= 0, got {self.alpha}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"model.reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.smoothing < 0:
            raise ValueError(f"model.smoothing must be >= 0, got {self.smoothing}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"learner.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.warmup_batches < 0:
            raise ValueError(f"learner.warmup_batches must be >= 0, got {self.warmup_batches}")
        if self.total_batches is not None and self.total_batches < 1:
            raise ValueError(f"learner.total_batches must be >= 1 or null, got {self.total_batches}")
        if not 0.0 <= self.min_factor <= 1.0:
            raise ValueError(f"learner.min_factor must lie in [0, 1], got {self.min_factor}")
        if self.hidden_batches is not None and not (isinstance(self.hidden_batches, int) and self.hidden_batches >= 1):
            raise ValueError(f"learner.hidden_batches must be an integer >= 1 or null, got {self.hidden_batches}")
        if self.layer_alpha is not None:
            self.layer_alpha = tuple(float(a) for a in self.layer_alpha)
            if min(self.layer_alpha) < 0:
                raise ValueError(f"learner.layer_alpha must be null or a list of numbers >= 0, got {list(self.layer_alpha)}")
        if not (self.hidden_alpha >= 0 and math.isfinite(self.hidden_alpha)):
            raise ValueError(f"learner.hidden_alpha must be a finite number >= 0, got {self.hidden_alpha}")
        if self.block_alpha is not None:
            self.block_alpha = {str(k): float(v) for k, v in dict(self.block_alpha).items()}
            if min(self.block_alpha.values(), default=0.0) < 0:
                raise ValueError(f"learner.block_alpha must map block names to numbers >= 0, got {self.block_alpha}")
        if not (self.feedback_alpha >= 0 and math.isfinite(self.feedback_alpha)):
            raise ValueError(f"learner.feedback_alpha must be a finite number >= 0, got {self.feedback_alpha}")
        if not 0.0 <= self.weight_decay < 1.0:
            raise ValueError(f"learner.weight_decay must lie in [0, 1), got {self.weight_decay}")

    @property
    def factor(self) -> float:
        """The schedule's multiplier of ``alpha`` for the current training batch."""
        if self.schedule == "decay":
            f = self.alpha_decay ** self.epoch
        elif self.schedule == "cosine":
            if not self.total_batches:
                raise ValueError("learner.schedule=cosine needs the run's length: set learner.total_batches, "
                                 "or a finite trainer.max_epochs / trainer.max_steps")
            t = min(self.batch / self.total_batches, 1.0)
            f = self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
        else:
            f = 1.0
        if self.warmup_batches:
            f *= min(1.0, (self.batch + 1) / self.warmup_batches)
        return f

    @property
    def hidden_factor(self) -> float:
        """The hidden layers' own multiplier for the current training batch (``hidden_batches``)."""
        if self.hidden_batches is None:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(self.batch / self.hidden_batches, 1.0)))

    @property
    def current_alpha(self) -> float:
        return self.alpha * self.factor

    def rate(self, rate: float, batch: int) -> float:
        return rate / batch if self.reduction == "mean" else rate

    def scales(self, topology) -> tuple[list[float], list[float]] | None:
        """Rate multipliers (per weight block, per bias layer), or None when all are 1."""
        if (self.layer_alpha is None and self.hidden_alpha == 1.0 and not self.block_alpha
                and self.feedback_alpha == 1.0 and self.hidden_batches is None):
            return None
        n_layers = topology.n_layers
        layer = self.layer_alpha or (1.0, *(self.hidden_alpha,) * (n_layers - 2), 1.0)
        if len(layer) != n_layers:
            raise ValueError(f"learner.layer_alpha needs one multiplier per layer ({n_layers}: input, hidden..., "
                             f"output), got {len(layer)}")
        if self.hidden_batches is not None:
            h = self.hidden_factor
            layer = (layer[0], *(x * h for x in layer[1:-1]), layer[-1])
        names = [topology.block_name(k) for k in range(len(topology.blocks))]
        unknown = sorted(set(self.block_alpha or {}) - set(names))
        if unknown:
            raise ValueError(f"learner.block_alpha names unknown blocks {unknown}; this net's blocks are {names}")
        if self.layer_alpha_pairs:
            block_layer = [max(b.post, *topology.block_senders(k)) for k, b in enumerate(topology.blocks)]
        else:
            block_layer = [b.post for b in topology.blocks]
        blocks = [layer[l] * (self.block_alpha or {}).get(name, 1.0) for l, name in zip(block_layer, names)]
        if self.feedback_alpha != 1.0:
            for k, blk in enumerate(topology.blocks):
                above = [pre > blk.post for pre in topology.block_senders(k)]
                if any(above) and not all(above):
                    raise ValueError(f"learner.feedback_alpha needs feedback blocks of their own, but {names[k]} mixes "
                                     "feedback with other senders (a lateral hidden layer): set depth.lateral=false")
                if all(above):
                    blocks[k] *= self.feedback_alpha
        return blocks, list(layer)

    def decay_weights(self, net: Network) -> None:
        """``W <- (1 - weight_decay * factor) W`` for every learning block (once per training batch)."""
        if self.weight_decay > 0:
            keep = 1.0 - self.weight_decay * self.factor
            for k in range(len(net.weights)):
                if k not in net.frozen:
                    net.learning(k).mul_(keep)


def difference_into(z: torch.Tensor, dz: torch.Tensor, adz: torch.Tensor) -> None:
    """eq (15)'s post-synaptic factor: ``dz = rho(s_l) - rho(s_s)`` from ``z`` (2, B, N), and ``|dz|``."""
    torch.sub(z[1], z[0], out=dz)
    torch.abs(dz, out=adz)


def smoothing_signal_into(drive: torch.Tensor, d: torch.Tensor, s: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """eq (21)-(22)'s post-synaptic factor on net_s: ``ds * rho'(s)`` with ``ds = rho'(s) drive - s``.

    ``drive = W rho(s) + b`` (eq 2 without ``rho'``); all (B, N). Passed to :func:`apply` with the
    rate ``-gamma`` it is the gradient step of eq (23).
    """
    return torch.mul(drive, d, out=out).sub_(s).mul_(d)


def block_learns(net: Network, k: int, scales: tuple[list[float], list[float]] | None) -> bool:
    """Block ``k`` takes updates: not frozen, and not at a zero rate (e.g. ``feedback_alpha=0``),
    whose update GEMM would only be scaled by 0."""
    return k not in net.frozen and not (scales and scales[0][k] == 0.0)


def _learning_blocks(net: Network, post_signal: torch.Tensor, pre_rate: torch.Tensor, scales, skip_posts, skip_blocks):
    """``(k, post_signal^T view, pre_rate view)`` of every block that takes this update (:func:`apply`)."""
    t = net.topology
    return [(k, post_signal[:, t.slice(blk.post)].t(), pre_rate[:, blk.lo + net.frozen_cols.get(k, 0) : blk.hi])
            for k, blk in enumerate(t.blocks)
            if block_learns(net, k, scales) and blk.post not in skip_posts and k not in skip_blocks]


def update_ops(net: Network, post_signal: torch.Tensor, pre_rate: torch.Tensor, rate: float,
               skip_posts: tuple[int, ...] = (), scales: tuple[list[float], list[float]] | None = None,
               skip_blocks: tuple[int, ...] = (), narrow: bool = False, column_sums: torch.Tensor | None = None,
               patches: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None, cast: Products | None = None) -> list:
    """:func:`apply` without a reduce hook, as a list of calls on views of ``post_signal``,
    ``pre_rate`` and the parameters: built once, run at every step while those change in place.

    ``patches[i]``: conv block ``i``'s sending maps unfolded once per phase (a clamped layer; see
    ``dynamics.drive_ops``).

    ``column_sums`` (N,): kept equal to ``post_signal.sum(0)`` by the caller (the fused step
    writes it with the next step's ``dz``), so the biases take it instead of a batch sum here.

    ``narrow``: a block with fewer than ``dynamics.NARROW`` pre-synaptic columns (from the outputs)
    takes its update as ``(pre^T @ post)^T``: a (span, n_post) product into a buffer, added
    transposed, several times faster in BLAS than the (n_post, B) @ (B, span) one.

    ``cast`` (:mod:`astdp.core.precision`): the calls first cast ``post_signal`` (computed in fp32)
    and ``pre_rate``; each block's product is formed from the casts into a buffer and added to the
    fp32 weights; the biases take the fp32 column sums."""
    t = net.topology
    ops = []
    signals = post_signal, pre_rate  # the operands of the products
    if cast is not None:
        (post_c, cast_post), (pre_c, cast_pre) = cast.cast_op(("post",), post_signal), cast.cast_op(("pre",), pre_rate)
        ops += [cast_post, cast_pre]
        signals = post_c, pre_c
    for k, post_t, pre in _learning_blocks(net, *signals, scales, skip_posts, skip_blocks):
        w, r = net.learning(k), rate * scales[0][k] if scales else rate
        if cast is not None:
            buf = cast.buffer(("update", k), w.shape, w.device)
            ops += [functools.partial(torch.mm, post_t, pre, out=buf), functools.partial(w.add_, buf, alpha=r)]
        elif _transposed(w, narrow):
            buf = w.new_empty(w.shape[1], w.shape[0])
            ops += [functools.partial(torch.mm, pre.t(), post_t.t(), out=buf), functools.partial(w.add_, buf.t(), alpha=r)]
        else:
            ops.append(functools.partial(w.addmm_, post_t, pre, alpha=r))
    layers = [l for l in range(t.n_layers) if l not in net.frozen_bias]
    if layers:
        bias_sum = column_sums
        if bias_sum is None:
            bias_sum = torch.empty(post_signal.shape[1], dtype=post_signal.dtype, device=post_signal.device)  # (N,)
            ops.append(functools.partial(torch.sum, post_signal, 0, out=bias_sum))
        ops += [functools.partial(net.biases[l].add_, bias_sum[t.slice(l)], alpha=rate * scales[1][l] if scales else rate)
                for l in layers]
    for i, conv, w, r in _learning_convs(net, rate, scales, skip_posts):
        if patches and i in patches:  # the sending layer is clamped: dz_pre = 0, its maps unfolded once
            rows = patches[i][1] if cast is None else cast.copy(patches[i][1])  # cast once per phase
            ops.append(functools.partial(_add_conv_update, functools.partial(conv.update_patches, signals[0],
                                                                             rows), w, r))
        else:
            ops.append(functools.partial(_add_conv_update, functools.partial(
                conv.update, *signals, conv.pre not in skip_posts), w, r))
    return ops + [diag.zero_ for diag in net.self_connections()]


def _learning_convs(net: Network, rate: float, scales, skip_posts) -> list:
    """``(index, conv, kernel, rate)`` of every conv block that learns: at its receiving layer's multiplier,
    over the number of positions the kernel is applied at (:attr:`Conv2dPool.positions`)."""
    out = []
    for i, (conv, w) in enumerate(zip(net.topology.convs, net.kernels)):
        # the kernel moves by the mean update of the synapses it stands for (summed over the batch)
        r = (rate * scales[1][conv.post] if scales else rate) / conv.positions
        if r != 0.0 and conv.post not in skip_posts:
            out.append((i, conv, w, r))
    return out


def _add_conv_update(update, w: torch.Tensor, rate: float) -> None:
    """eq (15) for a conv kernel (:meth:`astdp.core.blocks.Conv2dPool.update`), in place: ``w += rate update()``."""
    w.add_(update(), alpha=rate)


def _transposed(w: torch.Tensor, narrow: bool) -> bool:
    """``narrow`` and few pre-synaptic columns: the block's update is formed as ``(pre^T @ post)``."""
    return narrow and w.shape[1] < NARROW <= w.shape[0]


def partial_buffer(net: Network, k: int, narrow: bool = False) -> torch.Tensor:
    """A buffer for block ``k``'s unscaled update ``post_signal^T @ pre_rate`` (transposed where
    :func:`update_ops` forms it transposed): what a process sends when a block's update is summed
    over processes as a dense matrix (:func:`partial_ops`, :func:`summed_ops`)."""
    w = net.learning(k)
    return w.new_empty(w.shape[1], w.shape[0]) if _transposed(w, narrow) else torch.empty_like(w)


def partial_ops(net: Network, post_signal: torch.Tensor, pre_rate: torch.Tensor, buffers: dict[int, torch.Tensor],
                narrow: bool = False) -> list:
    """Calls that write each block ``k`` of ``buffers``'s own ``post_signal^T @ pre_rate`` into its buffer."""
    ops = []
    for k, post_t, pre in _learning_blocks(net, post_signal, pre_rate, None, (), ()):
        if k in buffers:
            a, b = (pre.t(), post_t.t()) if _transposed(net.learning(k), narrow) else (post_t, pre)
            ops.append(functools.partial(torch.mm, a, b, out=buffers[k]))
    return ops


def summed_ops(net: Network, buffers: dict[int, torch.Tensor], rate: float,
               scales: tuple[list[float], list[float]] | None = None, narrow: bool = False) -> list:
    """Calls that add ``rate x`` each block's summed update (from :func:`partial_buffer` s summed over
    processes) to its weights, at the block's rate multiplier."""
    ops = []
    for k, summed in buffers.items():
        w = net.learning(k)
        ops.append(functools.partial(w.add_, summed.t() if _transposed(w, narrow) else summed,
                                     alpha=rate * scales[0][k] if scales else rate))
    return ops


def apply(net: Network, post_signal: torch.Tensor, pre_rate: torch.Tensor, rate: float, reduce_hook=None,
          skip_posts: tuple[int, ...] = (), scales: tuple[list[float], list[float]] | None = None,
          skip_blocks: tuple[int, ...] = (), patches: dict | None = None, cast: Products | None = None) -> None:
    """In place: ``W += rate * post_signal^T @ pre_rate`` and ``b += rate * sum_b post_signal``.

    One GEMM per learning block, straight into the stored weights (``addmm_``; the transposed
    ``post_signal`` slice is passed as a strided view, which BLAS reads without a copy), and one
    batch sum for all biases. Only blocks that learn take part: not frozen, not into a layer of
    ``skip_posts`` (where ``post_signal`` is known to be zero, e.g. exactly clamped inputs), not in
    ``skip_blocks`` (updated by the caller: the relaxation loop defers the update of blocks whose
    pre-synaptic layer is clamped, :class:`astdp.core.engine.Relaxer`), and without the leading
    columns ``net.frozen_cols`` keeps. ``reduce_hook(deltas)``, when given, receives those blocks'
    deltas and the per-layer bias deltas (weights first) before they are applied, so a
    data-parallel wrapper can sum them across processes in place.
    ``scales = (per block, per bias layer)`` multiplies the rate of each (:meth:`Plasticity.scales`).
    ``cast``: low-precision products without a reduce hook (:func:`update_ops`); the dense deltas a
    reduce hook sums stay fp32.
    """
    if reduce_hook is None:
        for op in update_ops(net, post_signal, pre_rate, rate, skip_posts, scales, skip_blocks, patches=patches,
                             cast=cast):
            op()
        return
    t = net.topology
    bias_sum = post_signal.sum(0)  # (N,)
    bias_deltas = [bias_sum[t.slice(l)] for l in range(t.n_layers)]
    learning = _learning_blocks(net, post_signal, pre_rate, scales, skip_posts, skip_blocks)
    deltas = [post_t @ pre for _, post_t, pre in learning]
    convs = _learning_convs(net, rate, scales, skip_posts)
    conv_deltas = [conv.update(post_signal, pre_rate, conv.pre not in skip_posts) for _, conv, _, _ in convs]
    reduce_hook(deltas + conv_deltas + bias_deltas)  # a conv block sends its dense kernel delta
    for (k, _, _), d in zip(learning, deltas):
        net.learning(k).add_(d, alpha=rate * scales[0][k] if scales else rate)
    for (_, _, w, r), d in zip(convs, conv_deltas):
        w.add_(d, alpha=r)
    for l, (b, d) in enumerate(zip(net.biases, bias_deltas)):
        if l not in net.frozen_bias:
            b.add_(d, alpha=rate * scales[1][l] if scales else rate)
    net.zero_self_connections()
