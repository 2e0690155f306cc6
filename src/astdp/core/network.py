"""Topology and parameters of the continuous Hopfield network (CHNN), stored as connected blocks.

Neurons are laid out in one state vector, layer after layer:

    [ input (n_in) | hidden_1 | ... | hidden_L | output (n_out) ]

Layer ``i`` receives from its neighbours ``i-1`` and ``i+1`` and, for hidden layers with
``lateral=True``, from itself (self-connections excluded, §3.1.1). With the single hidden layer
of §3.1.1 this is exactly "visible <-> hidden both ways, hidden <-> hidden, no visible <-> visible".

Weights follow the paper's convention ``W[i, j]`` = weight *from* ``j`` *to* ``i``. Each receiving
layer owns one matrix per *contiguous span* of sending neurons, so a hidden layer with lateral
connections reads ``[h_{k-1} | h_k | h_{k+1}]`` with one GEMM, and nothing is stored for pairs
that are not connected (no dense N x N matrix, no masks except the lateral diagonal).

Convolutional layers (``Topology.build`` with mappings in ``hidden``; not in the paper): a layer of
maps (C, H, W) is still a flat slice of the state; the pair of layers a convolution joins has no dense
blocks but one kernel (``Network.kernels``, :class:`~astdp.core.blocks.Conv2dPool`) serving both
directions; dense blocks remain where a conv layer meets a dense one (the outputs).

Initialisation (§3.1): ``W[i, j] ~ U(-x, x)``, ``x = sqrt(6 / fan_in(i))``, with independent draws
for ``W[i, j]`` and ``W[j, i]`` (the weights are asymmetric and never symmetrised). Biases are zero
by default (``bias_init="uniform"`` draws them like the weights).

Pairs of synapses (``pairs``; options beside the paper, which keeps ``"own"``): with ``"own"``
each of ``W[i, j]`` and ``W[j, i]`` learns its own eq (15) update. With ``"shared"`` both learn
the sum of the two, ``dz_i rho_j + rho_i dz_j``, which is the change of ``rho_i rho_j`` between the
two networks to first order (the contrastive update of Equilibrium Propagation): what they learn
is symmetric, their initial difference stays. ``"tied"`` also starts them equal (the block towards
the outputs is drawn and its transpose copied back), so ``W[j, i] = W[i, j]`` throughout, as in
Equilibrium Propagation. :meth:`Network.share_updates_` applies the sum after each learning run.
Pairs with a frozen side keep their own updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from astdp.core.blocks import Conv2dPool, ConvSpec, pooled_shape

PAIRS = ("own", "shared", "tied")


@dataclass(frozen=True)
class Block:
    """Weights into layer ``post`` from the state slice ``[lo, hi)`` (one or more whole layers)."""

    post: int
    lo: int
    hi: int
    lateral_offset: int | None  # column where post's own (lateral) square starts, if inside [lo, hi)


@dataclass(frozen=True)
class Topology:
    """Layer sizes ``[n_in, *hidden, n_out]`` and which layers connect.

    ``lateral``: dense hidden layers connect to themselves (default: only for a single hidden layer,
    as §3.1.1 describes; deep nets have none unless asked). ``convs``: the pairs of layers joined
    by a convolution (:class:`~astdp.core.blocks.Conv2dPool`) instead of two dense blocks;
    :attr:`blocks` lists the dense blocks only.
    """

    sizes: tuple[int, ...]
    lateral: bool
    convs: tuple[Conv2dPool, ...] = ()  # convolutional blocks (one kernel for both directions each)

    @classmethod
    def build(cls, n_in: int, hidden, n_out: int, lateral: bool | None = None,
              input_shape: tuple[int, int, int] | list[int] | None = None) -> Topology:
        """``hidden``: one entry per hidden layer, an integer (a dense layer of that many neurons) or a
        mapping (a convolutional layer, :class:`~astdp.core.blocks.ConvSpec`: channels, kernel, stride,
        padding, pool). Conv layers come first and need ``input_shape`` (C, H, W), the input's maps."""
        hidden = list(hidden)
        if not hidden:
            raise ValueError("depth.hidden must list at least one hidden layer size")
        is_conv = [not isinstance(h, (int, float)) or isinstance(h, bool) for h in hidden]
        convs: list[Conv2dPool] = []
        sizes = [int(n_in)]
        if any(is_conv):
            if input_shape is None:
                raise ValueError("a depth with conv layers needs depth.input_shape [C, H, W]")
            shape = tuple(int(v) for v in input_shape)
            if len(shape) != 3 or math.prod(shape) != int(n_in):
                raise ValueError(f"depth.input_shape={list(shape)} does not fit inputs of {n_in} values")
            for i, (h, conv) in enumerate(zip(hidden, is_conv)):
                where = f"depth.hidden[{i}]"
                if not conv:
                    sizes.append(int(h))
                    continue
                if i and not is_conv[i - 1]:
                    raise ValueError(f"{where}: a conv layer must follow the input or another conv layer, not a dense one")
                spec = ConvSpec.parse(h, where)
                out = pooled_shape(shape, spec, where)
                lo = sum(sizes)
                convs.append(Conv2dPool(pre=i, post=i + 1, in_shape=shape, spec=spec,
                                        pre_cols=(lo - sizes[-1], lo), post_cols=(lo, lo + math.prod(out))))
                sizes.append(math.prod(out))
                shape = out
        else:
            sizes += [int(h) for h in hidden]
        sizes.append(int(n_out))
        if min(sizes) <= 0:
            raise ValueError(f"layer sizes must be positive, got {tuple(sizes)}")
        if lateral is None:
            lateral = len(hidden) == 1
        return cls(sizes=tuple(sizes), lateral=bool(lateral), convs=tuple(convs))

    # -- layout ---------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.sizes)

    @cached_property
    def n(self) -> int:
        return sum(self.sizes)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        out, acc = [], 0
        for size in self.sizes:
            out.append(acc)
            acc += size
        return tuple(out)

    def slice(self, layer: int) -> slice:
        lo = self.offsets[layer]
        return slice(lo, lo + self.sizes[layer])

    @property
    def input_layer(self) -> int:
        return 0

    @property
    def output_layer(self) -> int:
        return self.n_layers - 1

    @property
    def hidden_layers(self) -> range:
        return range(1, self.n_layers - 1)

    @cached_property
    def hidden_slice(self) -> slice:
        """Hidden neurons are contiguous: between input and output."""
        return slice(self.sizes[0], self.n - self.sizes[-1])

    @cached_property
    def conv_pairs(self) -> frozenset[tuple[int, int]]:
        """``(pre, post)`` of every conv block."""
        return frozenset((c.pre, c.post) for c in self.convs)

    def lateral_at(self, layer: int) -> bool:
        """A dense hidden layer with lateral connections (conv layers have none)."""
        return self.lateral and layer in self.hidden_layers and all(c.post != layer for c in self.convs)

    def senders(self, layer: int) -> list[int]:
        """Layers that send to ``layer`` through dense blocks, in state order."""
        out = []
        if layer > 0 and (layer - 1, layer) not in self.conv_pairs:
            out.append(layer - 1)
        if self.lateral_at(layer):
            out.append(layer)
        if layer < self.n_layers - 1 and (layer, layer + 1) not in self.conv_pairs:
            out.append(layer + 1)
        return out

    @cached_property
    def blocks(self) -> tuple[Block, ...]:
        """One block per contiguous run of sending layers, for every receiving layer."""
        blocks = []
        for post in range(self.n_layers):
            runs: list[list[int]] = []
            for pre in self.senders(post):
                if runs and runs[-1][-1] == pre - 1:
                    runs[-1].append(pre)
                else:
                    runs.append([pre])
            for run in runs:
                lo = self.offsets[run[0]]
                hi = self.offsets[run[-1]] + self.sizes[run[-1]]
                lateral = self.offsets[post] - lo if post in run else None
                blocks.append(Block(post=post, lo=lo, hi=hi, lateral_offset=lateral))
        return tuple(blocks)

    @cached_property
    def blocks_into(self) -> tuple[tuple[int, ...], ...]:
        """Per receiving layer, the indices of the blocks into it (in :attr:`blocks` order)."""
        return tuple(tuple(k for k, b in enumerate(self.blocks) if b.post == layer) for layer in range(self.n_layers))

    def block_senders(self, k: int) -> list[int]:
        """The layers block ``k`` reads from, in state order."""
        blk = self.blocks[k]
        return [l for l in range(self.n_layers) if blk.lo <= self.offsets[l] < blk.hi]

    def block_name(self, k: int) -> str:
        """``"<post>_from_<pre>[_<pre>]"`` in layer indices (0 = input), e.g. ``"1_from_2"``: output -> hidden."""
        return f"{self.blocks[k].post}_from_{'_'.join(map(str, self.block_senders(k)))}"

    def fan_in(self, layer: int) -> int:
        dense = sum(self.sizes[p] for p in self.senders(layer)) - (1 if self.lateral_at(layer) else 0)
        return dense + sum(c.fan_in() for c in self.convs if c.post == layer) + sum(
            c.fan_out() for c in self.convs if c.pre == layer)

    def connected_mask(self) -> torch.Tensor:
        """Dense (N, N) boolean mask of connected pairs ``[i, j]``; for tests and diagnostics only."""
        mask = torch.zeros(self.n, self.n, dtype=torch.bool)
        for blk in self.blocks:
            rows = self.slice(blk.post)
            mask[rows, blk.lo : blk.hi] = True
        mask.fill_diagonal_(False)
        return mask


def _cosine_of(dot: float, aa: float, bb: float) -> float:
    """``a . b / (|a| |b|)`` from the dot product and the two squared norms."""
    return dot / max((aa * bb) ** 0.5, 1e-12)


class Network(nn.Module):
    """Weights (one tensor per block) and biases (one tensor per layer) shared by net_s and net_l.

    Both are ``nn.Parameter`` s that require no gradient: the aSTDP rule changes them in place
    inside the relaxation, and being parameters they follow ``.to()``, appear in checkpoints and
    in model summaries like any other network's weights.
    """

    def __init__(self, topology: Topology, weights: list[torch.Tensor], biases: list[torch.Tensor],
                 frozen: set[int] | None = None, frozen_bias: set[int] | None = None, pairs: str = "own",
                 kernels: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        if pairs not in PAIRS:
            raise ValueError(f"model.pairs must be one of {PAIRS}, got {pairs!r}")
        self.topology = topology
        self.pairs = pairs  # own | shared | tied: how the two synapses of a pair learn (module docstring)
        self.weights = nn.ParameterList(nn.Parameter(w, requires_grad=False) for w in weights)  # (n_post, hi - lo)
        self.biases = nn.ParameterList(nn.Parameter(b, requires_grad=False) for b in biases)  # (n_l,)
        kernels = list(kernels or [])
        if len(kernels) != len(topology.convs):
            raise ValueError(f"{len(topology.convs)} conv blocks need as many kernels, got {len(kernels)}")
        # one kernel per conv block, (C_out, C_in, k, k), for both directions (core/blocks.py)
        self.kernels = nn.ParameterList(nn.Parameter(k, requires_grad=False) for k in kernels)
        self.frozen: set[int] = set(frozen or ())  # block indices that do not learn
        self.frozen_bias: set[int] = set(frozen_bias or ())  # layer indices whose bias does not learn
        self.frozen_cols: dict[int, int] = {}  # block index -> how many of its leading columns do not learn

    @classmethod
    def init(
        cls,
        topology: Topology,
        generator: torch.Generator | None = None,
        bias_init: str = "zero",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        pairs: str = "own",
    ) -> Network:
        if bias_init not in ("zero", "uniform"):
            raise ValueError(f"model.bias_init must be 'zero' or 'uniform', got {bias_init!r}")
        weights = []
        for blk in topology.blocks:
            bound = math.sqrt(6.0 / topology.fan_in(blk.post))
            w = (torch.rand(topology.sizes[blk.post], blk.hi - blk.lo, generator=generator, dtype=dtype) * 2 - 1) * bound
            weights.append(w.to(device))
        biases = []
        for layer, size in enumerate(topology.sizes):
            if bias_init == "zero":
                b = torch.zeros(size, dtype=dtype)
            else:
                bound = math.sqrt(6.0 / topology.fan_in(layer))
                b = (torch.rand(size, generator=generator, dtype=dtype) * 2 - 1) * bound
            biases.append(b.to(device))
        kernels = []
        for conv in topology.convs:  # drawn after the dense blocks: a dense net's draws are unchanged
            bound = math.sqrt(6.0 / topology.fan_in(conv.post))
            kernels.append(((torch.rand(conv.weight_shape, generator=generator, dtype=dtype) * 2 - 1) * bound).to(device))
        net = cls(topology, weights, biases, pairs=pairs, kernels=kernels)
        if pairs == "tied":
            for ab, ba in net.pair_views():
                if ba is None:  # lateral: mirror the upper triangle
                    ab.copy_(ab.triu(1) + ab.triu(1).t())
                else:
                    ab.copy_(ba.t())  # ab is into the lower layer: copy the forward draw back
        net.zero_self_connections()
        return net

    def pair_views(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """``(W into a from b, W into b from a)`` views for every connected pair of layers ``a < b``
        whose two directions both learn (not frozen, not frozen columns), and ``(W into a from a,
        None)`` for a lateral layer. The views share memory with the stored blocks."""
        t = self.topology
        views: dict[tuple[int, int], torch.Tensor] = {}
        for k, blk in enumerate(t.blocks):
            if k in self.frozen:
                continue
            for pre in t.block_senders(k):
                lo = t.offsets[pre] - blk.lo
                if lo >= self.frozen_cols.get(k, 0):
                    views[(blk.post, pre)] = self.weights[k][:, lo : lo + t.sizes[pre]]
        out: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for (a, b), w in views.items():
            if a == b:
                out.append((w, None))
            elif a < b and (b, a) in views:
                out.append((w, views[(b, a)]))
        return out

    def pair_snapshot(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Copies of :meth:`pair_views`, taken before a learning run for :meth:`share_updates_`."""
        return [(ab.clone(), None if ba is None else ba.clone()) for ab, ba in self.pair_views()]

    def share_updates_(self, before: list[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        """Give both synapses of every pair the sum of their changes since ``before``
        (:meth:`pair_snapshot`): ``W[i, j] += dW[j, i]`` and ``W[j, i] += dW[i, j]``."""
        for (ab, ba), (old_ab, old_ba) in zip(self.pair_views(), before):
            if ba is None:  # lateral: the pair's other synapse is in the same matrix
                ab.add_((ab - old_ab).t())
            else:
                d_ab = ab - old_ab
                ab.add_((ba - old_ba).t())
                ba.add_(d_ab.t())
        self.zero_self_connections()

    def self_connections(self) -> list[torch.Tensor]:
        """Views of the diagonals of the lateral squares (self-connections, kept at zero)."""
        t = self.topology
        return [w[:, blk.lateral_offset : blk.lateral_offset + t.sizes[blk.post]].diagonal()
                for blk, w in zip(t.blocks, self.weights) if blk.lateral_offset is not None]

    def zero_self_connections(self) -> None:
        for diag in self.self_connections():
            diag.zero_()

    def reinit_block(self, k: int, generator: torch.Generator | None = None) -> None:
        blk = self.topology.blocks[k]
        bound = math.sqrt(6.0 / self.topology.fan_in(blk.post))
        w = self.weights[k]
        w.copy_((torch.rand(w.shape, generator=generator, dtype=w.dtype) * 2 - 1).to(w.device) * bound)
        self.zero_self_connections()

    def blocks_touching(self, layer: int) -> list[int]:
        """Indices of blocks into or out of ``layer``."""
        t = self.topology
        lo, hi = t.offsets[layer], t.offsets[layer] + t.sizes[layer]
        return [k for k, b in enumerate(t.blocks) if b.post == layer or (b.lo < hi and lo < b.hi)]

    # -- views for tests, reports and checkpoints -------------------------------------------------
    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense ``W`` (N, N) with zeros where unconnected, and ``b`` (N,)."""
        t = self.topology
        w_dense = torch.zeros(t.n, t.n, dtype=self.weights[0].dtype, device=self.weights[0].device)
        for blk, w in zip(t.blocks, self.weights):
            w_dense[t.slice(blk.post), blk.lo : blk.hi] = w
        return w_dense, torch.cat(list(self.biases))

    def layer_weights(self) -> dict[tuple[int, int], torch.Tensor]:
        """``{(post, pre): W[post rows, pre columns]}``: views of every dense connection between two
        layers (conv blocks, one kernel for both directions, are not among them)."""
        t = self.topology
        out = {}
        for k, (blk, w) in enumerate(zip(t.blocks, self.weights)):
            for pre in t.block_senders(k):
                lo = t.offsets[pre] - blk.lo
                out[(blk.post, pre)] = w[:, lo : lo + t.sizes[pre]]
        return out

    def _pair_sums(self):
        """Per pair of layers ``a <= b`` joined both ways: (sum W[i,j] W[j,i], sum W[i,j]^2, sum W[j,i]^2)
        over the connected pairs of neurons (a layer's own diagonal left out); and, over every connected
        ``[i, j]``, the same three sums with ``W[j, i] = 0`` where ``j -> i`` is not connected. Block by
        block, without the dense (N, N) matrix, which for a conv net of CIFAR size would not fit."""
        lw = self.layer_weights()
        pairs, total = {}, [0.0, 0.0, 0.0]
        for (post, pre), w in lw.items():
            w = w.double()  # sums of many small terms
            if post == pre:  # a lateral square: its own transpose, a neuron's self-connection not a pair
                w = w - torch.diag_embed(torch.diagonal(w))
                back_t = w.t()
            else:
                back = lw.get((pre, post))
                back_t = back.double().t() if back is not None else None
            w2 = float((w * w).sum())
            total[1] += w2
            if back_t is None:
                continue
            sums = (float((w * back_t).sum()), w2, float((back_t * back_t).sum()))
            total[0] += sums[0]
            total[2] += sums[2]
            if post >= pre:
                pairs[(pre, post)] = sums
        return pairs, total

    def symmetry_index(self) -> float:
        """Cosine between ``W[i, j]`` and ``W[j, i]`` over connected pairs (§4.2): 1 = symmetric."""
        _, (dot, aa, bb) = self._pair_sums()
        return _cosine_of(dot, aa, bb)

    def pair_symmetry(self) -> dict[str, float]:
        """The symmetry index of each two connected layers ``a <= b``, keyed ``"<a>_<b>"``: the cosine
        between the weights ``a -> b`` and the transposed ``b -> a``. A loop whose index nears -1
        rotates the states instead of settling them (docs/FINDINGS.md section 17)."""
        pairs, _ = self._pair_sums()
        return {f"{a}_{b}": _cosine_of(*pairs[(a, b)]) for a, b in sorted(pairs)}

    def clone(self) -> Network:
        net = Network(self.topology, [w.detach().clone() for w in self.weights],
                      [b.detach().clone() for b in self.biases], self.frozen, self.frozen_bias, self.pairs,
                      [k.detach().clone() for k in self.kernels])
        net.frozen_cols = dict(self.frozen_cols)
        return net

    def learning(self, k: int) -> torch.Tensor:
        """The part of block ``k`` that learns: the block, or a view without its frozen leading columns."""
        c = self.frozen_cols.get(k, 0)
        return self.weights[k][:, c:] if c else self.weights[k]

    def freeze_from(self, layer: int, scale: float = 1.0) -> None:
        """The weights *from* ``layer`` keep their values (times ``scale``, once, here): whole blocks
        when ``layer`` is their only sender, else their leading columns (``layer`` is then the first
        of the block's senders)."""
        t = self.topology
        sl = t.slice(layer)
        for k, b in enumerate(t.blocks):
            if b.lo == sl.start:
                width = sl.stop - sl.start
                self.weights[k][:, :width].mul_(scale)
                if b.hi <= sl.stop:
                    self.frozen.add(k)
                else:
                    self.frozen_cols[k] = width
            elif b.lo < sl.stop and sl.start < b.hi:
                raise ValueError(f"layer {layer} is not the first sender of block {t.block_name(k)}")
