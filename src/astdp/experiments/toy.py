"""Shared by the toy experiments: building a system from the composed config groups, the training loop,
one-hot data and visible-only networks.

Every toy experiment takes the ``model``, ``learner`` and ``depth`` config groups as plain dicts (the
runner passes the composed ones), so ``python train.py experiment=<name> model.eps=[0.4,0.5]`` reaches
the network; ``experiment_params`` hold only the protocol (cycles, test budgets, test-time constants).

The paper's rivalry and adaptation nets have 4 visible and 8 hidden neurons and no label layer.
A :class:`~astdp.core.network.Topology` always has an output layer, so we give it one *silent*
output neuron: its incoming block and bias are zero and frozen, its state is held at 0, and its
column in the hidden layer's weights is zeroed after every batch. It then sends nothing, receives
nothing and never has a target, so the trained net is exactly "4 visible + 8 hidden".
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from astdp.factory import build_system
from astdp.system import System


def model_cfg(**changes: Any) -> dict[str, Any]:
    """The toy experiments' model as a plain dict (conf/model/paper.yaml with the zero-centred rho), for
    calling an experiment function from Python; ``changes`` replace keys (``fake_target`` merges)."""
    model = {
        "activation": "sigmoid4_centered", "eps": [0.5, 0.4], "beta": [0.4, 0.5], "beta_input": None,
        "beta_output": None, "momentum": 1.0, "init_scale": 0.1, "bounds": None, "input_clamp": "nudge",
        "reduction": "sum", "smoothing": 0.0, "readout": "l", "infer_fake": False, "persistent": True,
        "fake_target": {"enabled": True, "k": 50.0, "t_c": 0.25, "center": 0.0, "m": 0.95, "rule": "algorithm1",
                        "beta": None},
    }
    fake = changes.pop("fake_target", None)
    model.update(changes)
    if fake:
        model["fake_target"] = {**model["fake_target"], **fake}
    return model


def hidden_size(depth: Mapping[str, Any]) -> list[int]:
    hidden = list(depth.get("hidden") or [])
    if not hidden:
        raise ValueError(f"depth.hidden must be a non-empty list of layer sizes, got {depth.get('hidden')!r}")
    return hidden


def build(model: Mapping[str, Any], learner: Mapping[str, Any], depth: Mapping[str, Any], n_in: int, n_out: int,
          batch: int, seed: int) -> System:
    """A system from the three config groups; learners outside the aSTDP ones are refused in one line."""
    name = learner.get("name")
    if name not in ("supervised", "unsupervised"):
        raise ValueError(f"toy experiments learn with learner=supervised or learner=unsupervised, got {name!r}")
    return build_system(dict(model), dict(learner), {"hidden": hidden_size(depth), "lateral": depth.get("lateral")},
                        n_in=n_in, n_out=n_out, batch_size=batch, seed=seed)


def train(sys_: System, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], n_batches: int,
          after_batch=None) -> list[float]:
    """Train on ``batches`` (``n_batches`` of them) with the learner's rate schedule; mean |dz| per batch.

    The schedule's clock is the batch count, as in training through train.py; ``schedule=cosine`` with
    ``learner.total_batches`` unset runs over these ``n_batches``.
    """
    plast = sys_.relaxer.plast
    if plast.schedule == "cosine" and plast.total_batches is None:
        plast.total_batches = n_batches
    dz = []
    for i, (x, y) in enumerate(batches):
        plast.batch = i
        dz.append(float(sys_.train_batch(x, y).dz_abs))
        if after_batch is not None:
            after_batch(sys_)
    return dz


def visible_only_system(model: Mapping[str, Any], learner: Mapping[str, Any], depth: Mapping[str, Any],
                        n_visible: int, batch: int, seed: int) -> System:
    """``n_visible`` inputs + one hidden layer, with a silent output neuron (see module doc)."""
    if learner.get("name") != "unsupervised":
        raise ValueError(f"the visible-only toy nets learn with learner=unsupervised (no labels), got "
                         f"{learner.get('name')!r}")
    sys_ = build(model, learner, depth, n_visible, 1, batch, seed)
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
    return train(sys_, ((x, None) for x in data), len(data), after_batch=silence_output)
