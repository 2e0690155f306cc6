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

Each block ``(post, [lo, hi))`` costs one GEMM ``(n_post, B) @ (B, hi - lo)`` per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from astdp.core.network import Network

REDUCTIONS = ("sum", "mean")


@dataclass
class Plasticity:
    alpha: float = 1e-4  # learning rate of eq (15), >= 0
    reduction: str = "sum"  # over the batch: "sum" | "mean"
    smoothing: float = 0.0  # gamma of eq (23), >= 0 (0 = off)
    alpha_decay: float = 1.0  # alpha is multiplied by this once per epoch, in (0, 1]
    epoch: int = 0  # set by the training loop; the rate in use is alpha * alpha_decay ** epoch

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha_decay <= 1.0:
            raise ValueError(f"learner.alpha_decay must lie in (0, 1], got {self.alpha_decay}")
        if self.alpha < 0:
            raise ValueError(f"learner.alpha must be >= 0, got {self.alpha}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"model.reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.smoothing < 0:
            raise ValueError(f"model.smoothing must be >= 0, got {self.smoothing}")

    @property
    def current_alpha(self) -> float:
        return self.alpha * self.alpha_decay ** self.epoch

    def rate(self, rate: float, batch: int) -> float:
        return rate / batch if self.reduction == "mean" else rate


def block_deltas(net: Network, post_signal: torch.Tensor, pre_rate: torch.Tensor) -> list[torch.Tensor]:
    """``post_signal^T @ pre_rate`` per block: post_signal (B, N), pre_rate (B, N)."""
    t = net.topology
    return [post_signal[:, t.slice(b.post)].t() @ pre_rate[:, b.lo : b.hi] for b in t.blocks]


def apply(net: Network, post_signal: torch.Tensor, pre_rate: torch.Tensor, rate: float, reduce_hook=None) -> None:
    """In place: ``W += rate * post_signal^T @ pre_rate`` and ``b += rate * sum_b post_signal``.

    One GEMM per learning block, straight into the stored weights (``addmm_``; the transposed
    ``post_signal`` slice is passed as a strided view, which BLAS reads without a copy), and one
    batch sum for all biases. ``reduce_hook(deltas)``, when given, receives the per-block and
    per-layer deltas (weights first, then biases) before they are applied, so a data-parallel
    wrapper can average them across processes in place.
    """
    t = net.topology
    bias_sum = post_signal.sum(0)  # (N,)
    bias_deltas = [bias_sum[t.slice(l)] for l in range(t.n_layers)]
    if reduce_hook is None:
        for k, (blk, w) in enumerate(zip(t.blocks, net.weights)):
            if k not in net.frozen:
                w.addmm_(post_signal[:, t.slice(blk.post)].t(), pre_rate[:, blk.lo : blk.hi], alpha=rate)
    else:
        deltas = block_deltas(net, post_signal, pre_rate)
        reduce_hook(deltas + bias_deltas)
        for k, (w, d) in enumerate(zip(net.weights, deltas)):
            if k not in net.frozen:
                w.add_(d, alpha=rate)
    for l, (b, d) in enumerate(zip(net.biases, bias_deltas)):
        if l not in net.frozen_bias:
            b.add_(d, alpha=rate)
    net.zero_self_connections()
