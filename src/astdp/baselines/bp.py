"""Backprop baselines on the aSTDP architecture (same layer sizes, plain torch autograd).

``depth.hidden`` of integers gives an MLP; with conv layers (mappings: channels, kernel, stride,
padding, pool) the same architecture as a feed-forward net: each conv layer is ``Conv2d`` then
``AvgPool2d(pool)`` (the pooling folded into the Hopfield net's interaction, core/blocks.py), then
the activation; dense layers follow on the flattened maps (:func:`build`).

``bp_mse``: sigmoid outputs, ``C = 1/2 sum_k (y_k - sigmoid(a_k))^2`` against the one-hot label
(the cost the aSTDP network minimises, eq 6). ``bp_ce``: softmax cross-entropy on the logits.
Shapes: x (B, n_in), logits (B, n_out), y (B,) class indices.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LOSSES = ("bp_mse", "bp_ce")
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


class MLP(nn.Module):
    def __init__(self, sizes: list[int], activation: str = "sigmoid") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"learner.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)
        self.n_layers = len(sizes) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, n_out) logits


class ConvNet(nn.Module):
    """Conv layers (conv, average pooling, activation), then dense layers: the feed-forward twin of a conv depth."""

    def __init__(self, input_shape, hidden, n_out: int, activation: str = "sigmoid") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"learner.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        from astdp.core.network import Topology  # the layer shapes as the Hopfield net has them

        shape = tuple(int(v) for v in input_shape)
        topo = Topology.build(math.prod(shape), hidden, n_out, False, shape)
        self.input_shape = shape
        layers: list[nn.Module] = []
        for conv in topo.convs:
            spec = conv.spec
            layers += [nn.Conv2d(conv.in_shape[0], spec.channels, spec.kernel, spec.stride, spec.padding)]
            if spec.pool > 1:
                layers.append(nn.AvgPool2d(spec.pool))
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Flatten())
        sizes = topo.sizes[len(topo.convs):]  # the last conv layer's size, the dense layers, the outputs
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)
        self.n_layers = len(topo.sizes) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.view(x.shape[0], *self.input_shape))  # (B, n_out) logits


def build(depth, n_in: int, n_out: int, activation: str = "sigmoid") -> nn.Module:
    """An MLP for a dense ``depth``, a :class:`ConvNet` for one with conv layers."""
    hidden = list(depth["hidden"])
    if all(isinstance(h, int) for h in hidden):
        return MLP([n_in, *hidden, n_out], activation)
    if depth.get("input_shape") is None:
        raise ValueError("a depth with conv layers needs depth.input_shape [C, H, W]")
    return ConvNet(depth["input_shape"], hidden, n_out, activation)


def loss(kind: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if kind == "bp_ce":
        return F.cross_entropy(logits, y)
    if kind == "bp_mse":
        onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        return 0.5 * (torch.sigmoid(logits) - onehot).pow(2).sum(1).mean()
    raise ValueError(f"learner.name must be one of {LOSSES}, got {kind!r}")


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"learner.optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if not lr > 0:
        raise ValueError(f"learner.lr must be > 0, got {lr}")
    return OPTIMIZERS[name](params, lr=lr)


def train_step(model: MLP, opt: torch.optim.Optimizer, kind: str, x: torch.Tensor, y: torch.Tensor) -> float:
    """One autograd step (for scripts and tests; the Lightning module lets the trainer do this)."""
    opt.zero_grad()
    value = loss(kind, model(x), y)
    value.backward()
    opt.step()
    return float(value.detach())
