"""Build a :class:`~astdp.system.System` from plain config mappings (no Hydra import here).

``model`` (dynamics, plasticity, fake targets, readout), ``learner`` (schedule and rate) and
``depth`` (hidden layer sizes) are the dicts of the same-named config groups; validation happens
in the dataclasses they feed, so a bad value fails here, before any data loads.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Mapping

import torch

from astdp.core.dynamics import Dynamics
from astdp.core.engine import FakeTargets
from astdp.core.network import Topology
from astdp.core.plasticity import Plasticity
from astdp.learners import LEARNERS
from astdp.system import System

HARNESS_SUPPLIED = ("self", "topology", "dynamics", "image_size", "generator")  # not config keys


def dataclass_keys(cls) -> tuple[str, ...]:
    """The config keys a dataclass takes: its fields."""
    return tuple(f.name for f in dataclasses.fields(cls))


def _init_params(cls) -> list[str]:
    """The named parameters of every ``__init__`` along the MRO of ``cls``, first seen first."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names:
                names.append(p.name)
    return names


def init_keys(cls) -> tuple[str, ...]:
    """The config keys a class takes: its ``__init__`` parameters that the harness does not supply."""
    return tuple(k for k in _init_params(cls) if k not in HARNESS_SUPPLIED)


def takes(cls, key: str) -> bool:
    """Whether some ``__init__`` along the MRO of ``cls`` has a parameter ``key``."""
    return key in _init_params(cls)


def _pick(cfg: Mapping[str, Any], keys) -> dict[str, Any]:
    return {k: cfg[k] for k in keys if cfg.get(k) is not None}


CONV_LEARNERS = ("supervised", "unsupervised", "ep")  # the learners that run on conv nets (depth.hidden with mappings)


def build_topology(depth: Mapping[str, Any], n_in: int, n_out: int) -> Topology:
    """``depth.hidden``: integers (dense layers) and mappings (conv layers, which need ``depth.input_shape``)."""
    return Topology.build(n_in, list(depth["hidden"]), n_out, depth.get("lateral"), depth.get("input_shape"))


def build_dynamics(model: Mapping[str, Any]) -> Dynamics:
    return Dynamics(**_pick(model, dataclass_keys(Dynamics)))


def build_fake(model: Mapping[str, Any]) -> FakeTargets:
    fake = dict(model.get("fake_target") or {})
    if fake.get("beta") is not None:
        fake["beta"] = tuple(fake["beta"])
    return FakeTargets(**fake)


def build_system(
    model: Mapping[str, Any],
    learner: Mapping[str, Any],
    depth: Mapping[str, Any],
    n_in: int,
    n_out: int,
    batch_size: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
) -> System:
    name = learner["name"]
    if name not in LEARNERS:
        raise ValueError(f"learner.name must be one of {sorted(LEARNERS)}, got {name!r}")
    topology = build_topology(depth, n_in, n_out)
    if topology.convs and name not in CONV_LEARNERS:
        raise ValueError(f"learner={name} does not run on conv nets (depth={depth.get('name', 'this depth')} has "
                         f"conv layers): use one of {list(CONV_LEARNERS)} or bp_ce / bp_mse")
    dynamics = build_dynamics(model)
    plasticity = Plasticity(**{"alpha": 1e-4, **_pick(learner, dataclass_keys(Plasticity)),
                               **_pick(model, ("reduction", "smoothing"))})
    plasticity.scales(topology)  # per-layer / per-block rates must fit this net (fails here, not in training)
    kwargs = _pick(learner, init_keys(LEARNERS[name]))
    if name == "self_supervised":
        kwargs["image_size"] = image_size or int(round(n_in ** 0.5))
    if takes(LEARNERS[name], "generator"):  # the learner's own draws (covered pixels)
        kwargs["generator"] = torch.Generator().manual_seed(seed + 1)
    learner_obj = LEARNERS[name](topology, dynamics, **kwargs)
    return System(topology, dynamics, plasticity, build_fake(model), learner_obj, batch_size, seed=seed,
                  readout=model.get("readout", "l"), infer_fake=bool(model.get("infer_fake", False)),
                  persistent=bool(model.get("persistent", True)), pairs=str(learner.get("pairs") or model.get("pairs", "own")),
                  device=device, engine=str(model.get("engine", "auto")))
