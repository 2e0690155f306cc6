"""Small helpers shared by the toy experiments: one-hot data and visible-only networks.

The paper's rivalry and adaptation nets have 4 visible and 8 hidden neurons and no label layer.
A :class:`~astdp.core.network.Topology` always has an output layer, so we give it one *silent*
output neuron: its incoming block and bias are zero and frozen, its state is held at 0, and its
column in the hidden layer's weights is zeroed after every batch. It then sends nothing, receives
nothing and never has a target, so the trained net is exactly "4 visible + 8 hidden".
"""

from __future__ import annotations

from typing import Any

import torch

from astdp.factory import build_system
from astdp.system import System


def model_cfg(
    activation: str = "sigmoid4_centered",
    eps: tuple[float, float] = (0.5, 0.4),
    beta: tuple[float, float] = (0.4, 0.5),
    beta_input: tuple[float, float] | None = None,
    beta_output: tuple[float, float] | None = None,
    momentum: float = 1.0,
    fake: bool = True,
    k: float = 50.0,
    t_c: float = 0.25,
    m: float = 0.95,
    init_scale: float = 0.1,
    readout: str = "l",
) -> dict[str, Any]:
    return {
        "activation": activation, "eps": list(eps), "beta": list(beta),
        "beta_input": None if beta_input is None else list(beta_input),
        "beta_output": None if beta_output is None else list(beta_output),
        "momentum": momentum, "init_scale": init_scale, "reduction": "sum", "readout": readout,
        "fake_target": {"enabled": bool(fake), "k": k, "t_c": t_c, "m": m, "rule": "algorithm1"},
    }


def visible_only_system(n_visible: int, hidden: int, model: dict, alpha: float, steps: int,
                        batch: int, seed: int) -> System:
    """``n_visible`` inputs + ``hidden`` hidden neurons, with a silent output neuron (see module doc)."""
    learner = {"name": "unsupervised", "alpha": alpha, "steps": steps}
    sys_ = build_system(model, learner, {"hidden": [hidden]}, n_in=n_visible, n_out=1, batch_size=batch, seed=seed)
    net, topo = sys_.net, sys_.topology
    out = topo.output_layer
    for k, blk in enumerate(topo.blocks):
        if blk.post == out:
            net.weights[k].zero_()
            net.frozen.add(k)
    net.biases[out].zero_()
    net.frozen_bias.add(out)
    silence_output(sys_)
    return sys_


def silence_output(sys_: System, *states) -> None:
    """Zero every weight from the silent output neuron and hold its state (and velocity) at 0."""
    topo, net = sys_.topology, sys_.net
    o = topo.slice(topo.output_layer)
    for blk, w in zip(topo.blocks, net.weights):
        if blk.lo < o.stop and o.start < blk.hi:
            w[:, o.start - blk.lo : o.stop - blk.lo].zero_()
    for st in (sys_.train_state, sys_.eval_state, *states):
        st.s[:, :, o] = 0.0
        st.v[:, :, o] = 0.0


def one_hot_epochs(n: int, epochs: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``epochs`` batches, each the ``n`` one-hot patterns in a fresh random order (B = n)."""
    eye = torch.eye(n)
    return [eye[torch.randperm(n, generator=generator)] for _ in range(epochs)]


def train_visible(sys_: System, data: list[torch.Tensor]) -> list[float]:
    """Unsupervised training on visible-only data; returns mean |dz| per batch."""
    dz = []
    for x in data:
        stats = sys_.train_batch(x, None)
        silence_output(sys_)
        dz.append(float(stats.dz_abs))
    return dz
