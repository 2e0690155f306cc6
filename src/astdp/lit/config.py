"""Harness-level checks of a composed run config, before anything is built or loaded.

The science dataclasses (``astdp.factory.build_system``) check the dynamics ranges themselves;
this adds types, counts and the harness keys they do not see. Every failure is a
:class:`ConfigError` whose message names the key and the allowed range.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from astdp.baselines.bp import LOSSES as BP_LEARNERS
from astdp.core.engine import FakeTargets
from astdp.core.precision import PRECISIONS
from astdp.data.datamodule import NAMES as DATA_NAMES
from astdp.data.datamodule import AstdpDataModule
from astdp.data.toy import STRIDES
from astdp.data.vision import SETS as IMAGE_SETS
from astdp.errors import ConfigError
from astdp.learners import LEARNERS
from astdp.system import ENGINE_CHOICES


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    """A finite number (``inf`` and ``nan`` are never valid values)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def need(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def int_at_least(key: str, v: Any, low: int, optional: bool = False) -> None:
    if optional and v is None:
        return
    need(_is_int(v) and v >= low, f"{key} must be an integer >= {low}{' or null' if optional else ''}, got {v!r}")


def pair(key: str, v: Any) -> None:
    ok = v is not None and not isinstance(v, (str, bytes)) and hasattr(v, "__len__") and len(v) == 2
    need(ok and all(_is_num(x) for x in v), f"{key} must be a pair of numbers [net_s, net_l], got {v!r}")


def validate_data(data: Mapping[str, Any]) -> None:
    name = data.get("name")
    need(name in DATA_NAMES, f"data.name must be one of {list(DATA_NAMES)}, got {name!r}")
    if name == "mnist" or name in IMAGE_SETS:
        check_root(data.get("root"), "MNIST/raw/" if name == "mnist" else (IMAGE_SETS[name].folder or ".") + "/")
    int_at_least("data.batch_size", data.get("batch_size"), 1)
    int_at_least("data.n_train", data.get("n_train"), 1, optional=True)
    int_at_least("data.n_test", data.get("n_test"), 1, optional=True)
    vs = data.get("val_size", 0)
    need(_is_num(vs) and vs >= 0 and (_is_int(vs) or vs < 1),
         f"data.val_size must be a fraction in [0, 1) or a count >= 0, got {vs!r}")
    if name == "toy_order":
        need(data.get("stride") in STRIDES, f"data.stride must be one of {list(STRIDES)}, got {data.get('stride')!r}")
    if "repeats" in data:
        int_at_least("data.repeats", data.get("repeats"), 1)


def validate_learner(learner: Mapping[str, Any]) -> None:
    name = learner.get("name")
    names = sorted(LEARNERS) + list(BP_LEARNERS)
    need(name in names, f"learner.name must be one of {names}, got {name!r}")
    if name in BP_LEARNERS:
        need(_is_num(learner.get("lr")) and learner["lr"] > 0, f"learner.lr must be a number > 0, got {learner.get('lr')!r}")
        need(learner.get("optimizer") in ("sgd", "adam"), f"learner.optimizer must be sgd or adam, got {learner.get('optimizer')!r}")
        return
    int_at_least("learner.steps", learner.get("steps"), 1)
    int_at_least("learner.test_steps", learner.get("test_steps"), 1, optional=True)
    if "free_steps" in learner:
        fs, steps = learner.get("free_steps"), learner["steps"]
        need(_is_int(fs) and 0 <= fs <= steps, f"learner.free_steps must be an integer in [0, learner.steps={steps}], got {fs!r}")
    need(_is_num(learner.get("alpha")) and learner["alpha"] >= 0, f"learner.alpha must be a number >= 0, got {learner.get('alpha')!r}")
    need(_is_num(learner.get("tol", 1e-3)) and learner.get("tol", 1e-3) > 0, f"learner.tol must be a number > 0, got {learner.get('tol')!r}")


def validate_model(model: Mapping[str, Any]) -> None:
    pair("model.eps", model.get("eps"))
    pair("model.beta", model.get("beta"))
    for key in ("beta_input", "beta_output"):
        if model.get(key) is not None:
            pair(f"model.{key}", model[key])
    if model.get("bounds") is not None:
        pair("model.bounds", model["bounds"])
    for key in ("momentum", "init_scale", "smoothing"):
        if key in model:
            need(_is_num(model[key]), f"model.{key} must be a number, got {model[key]!r}")
    need(model.get("engine", "auto") in ENGINE_CHOICES,
         f"model.engine must be one of {list(ENGINE_CHOICES)}, got {model.get('engine')!r}")
    fake = model.get("fake_target") or {}
    for key in ("k", "t_c", "m", "center"):
        if key in fake:
            need(_is_num(fake[key]), f"model.fake_target.{key} must be a number, got {fake[key]!r}")


def validate_depth(depth: Mapping[str, Any], data: Mapping[str, Any], learner: str) -> None:
    """``depth.hidden``: integers (dense layers) and mappings (conv layers: channels, kernel, stride,
    padding, pool); a conv depth's ``input_shape`` must be ``data.image_shape``, and its maps must fit."""
    hidden = depth.get("hidden")
    ok = bool(hidden) and not isinstance(hidden, (str, Mapping))
    ok = ok and all((_is_int(h) and h >= 1) or isinstance(h, Mapping) for h in hidden)
    need(ok, "depth.hidden must be a non-empty list of integers >= 1 (dense layers) or mappings "
             f"(conv layers: channels, kernel, stride, padding, pool), got {hidden!r}")
    if not any(isinstance(h, Mapping) for h in hidden):
        return
    shape, image = depth.get("input_shape"), data.get("image_shape")
    name = depth.get("name", "this depth")
    need(image is not None, f"depth={name} has conv layers, which need images, but data={data.get('name')} has no "
                            "data.image_shape")
    need(shape is not None and list(shape) == list(image),
         f"depth={name} takes inputs of shape {None if shape is None else list(shape)} (depth.input_shape), but "
         f"data={data.get('name')} gives {list(image)}: choose a depth for these images or set depth.input_shape")
    from astdp.factory import CONV_LEARNERS, build_topology

    need(learner in CONV_LEARNERS or learner in BP_LEARNERS,
         f"learner={learner} does not run on conv nets (depth={name}): use one of {list(CONV_LEARNERS)} or bp_ce / bp_mse")
    try:
        build_topology(depth, math.prod(image), int(data.get("n_outputs") or 1))
    except ValueError as e:
        raise ConfigError(str(e)) from e


GRAYSCALE_LEARNERS = ("self_supervised", "generation")  # their squares and drawings are of one-channel images


def validate(cfg: Mapping[str, Any]) -> None:
    """Checks a resolved run config (plain dict or DictConfig)."""
    int_at_least("seed", cfg.get("seed"), 0)
    int_at_least("threads", cfg.get("threads"), 1, optional=True)
    validate_data(cfg["data"])
    validate_learner(cfg["learner"])
    if cfg["learner"]["name"] not in BP_LEARNERS:
        validate_model(cfg["model"])
    validate_depth(cfg["depth"], cfg["data"], cfg["learner"]["name"])
    shape = cfg["data"].get("image_shape")
    if cfg["learner"]["name"] in GRAYSCALE_LEARNERS and shape is not None and int(shape[0]) != 1:
        raise ConfigError(f"learner={cfg['learner']['name']} draws and covers one-channel images, but "
                          f"data={cfg['data'].get('name')} has {int(shape[0])} channels: use it with learner=supervised, "
                          f"unsupervised, ep or bp_ce / bp_mse")
    trainer = cfg.get("trainer") or {}
    for key in ("max_epochs", "max_steps"):
        v = trainer.get(key)
        if v is not None:
            need(_is_int(v) and (v == -1 or v >= 1),
                 f"trainer.{key} must be an integer >= 1 or -1 (no limit), got {v!r}")
    if trainer.get("max_epochs") == -1 and trainer.get("max_steps") in (None, -1) and "max_time" not in trainer:
        raise ConfigError("trainer.max_epochs=-1 needs a budget: set trainer.max_steps or +trainer.max_time")
    precision = trainer.get("precision")
    need(precision in PRECISIONS, "trainer.precision must be one of null, 32-true, bf16-mixed or 16-mixed (GPU), "
                                  f"got {precision!r}")
    need(precision != "16-mixed" or str(trainer.get("accelerator")) in ("gpu", "cuda"),
         "trainer.precision=16-mixed needs a GPU (trainer=gpu); on the CPU use trainer.precision=bf16-mixed")
    strategy = trainer.get("strategy")
    if isinstance(strategy, Mapping) and "sync" in strategy:
        from astdp.lit.ddp import EXCHANGES, SYNC_MODES

        need(strategy["sync"] in SYNC_MODES,
             f"trainer.strategy.sync must be one of {list(SYNC_MODES)}, got {strategy['sync']!r}")
        every = strategy.get("sync_every", 1)
        need(_is_int(every) and every >= 1, f"trainer.strategy.sync_every must be an integer >= 1, got {every!r}")
        exchange = strategy.get("exchange", "auto")
        need(exchange in EXCHANGES, f"trainer.strategy.exchange must be one of {list(EXCHANGES)}, got {exchange!r}")
        overlap = strategy.get("overlap", True)
        need(isinstance(overlap, bool), f"trainer.strategy.overlap must be true or false, got {overlap!r}")
    for group in ("learner", "model", "data", "depth"):
        unknown_keys(group, cfg.get(group) or {})
    need(cfg["data"]["name"] != "stdp_pair",
         "data=stdp_pair is the two-neuron STDP protocol, not a training set: run `python train.py experiment=fig6_stdp`")


# -- keys that nothing reads, data folders, evaluate.py ---------------------------------------------
CONF = Path(__file__).resolve().parents[3] / "conf"


@lru_cache(maxsize=None)
def known_keys(group: str) -> frozenset[str]:
    """Keys of ``group`` that some config file sets or the code reads."""
    from astdp import factory

    keys = set()
    if CONF.is_dir():
        import yaml

        files = list((CONF / group).glob("*.yaml")) + list((CONF / "experiment").rglob("*.yaml"))
        for path in files:
            doc = yaml.safe_load(path.read_text()) or {}
            node = doc.get(group) if path.parent.name == "experiment" else doc
            if isinstance(node, dict):
                keys |= set(node)
    if group == "learner":
        from astdp.core.plasticity import Plasticity
        from astdp.learners import LEARNERS

        keys |= {"name", "test_steps", "tol", "infer_stop", *factory.dataclass_keys(Plasticity),
                 *(k for cls in LEARNERS.values() for k in factory.init_keys(cls))}
    elif group == "model":
        from astdp.core.dynamics import Dynamics

        keys |= {*factory.dataclass_keys(Dynamics), "fake_target", "readout", "infer_fake", "persistent", "pairs",
                 "reduction", "smoothing", "engine"}
    elif group == "data":
        keys |= set(inspect.signature(AstdpDataModule.__init__).parameters) - {"self", "protocol"}
    elif group == "depth":
        keys |= {"hidden", "lateral", "name", "input_shape", "feedback_alpha", "hidden_batches"}  # the learners read the last two
    return frozenset(keys)


def unknown_keys(group: str, node: Mapping[str, Any]) -> None:
    """A key that no config file sets and no code reads (a typo such as ``+learner.alpah``) is refused."""
    known = known_keys(group)
    for key in node:
        if key not in known:
            near = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"did you mean {group}.{near[0]}?" if near else f"known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"{group}.{key} is not a {group} setting that anything reads ({hint})")
    if group == "model" and isinstance(node.get("fake_target"), Mapping):
        fields = {f.name for f in dataclasses.fields(FakeTargets)}
        for key in node["fake_target"]:
            if key not in fields:
                near = difflib.get_close_matches(str(key), sorted(fields), n=1)
                hint = f" (did you mean model.fake_target.{near[0]}?)" if near else ""
                raise ConfigError(f"model.fake_target.{key} is not a fake-target setting{hint}")


def default_root() -> str:
    return os.environ.get("ASTDP_DATA_ROOT", "data")


def check_root(root: Any, holds: str = "MNIST/raw/") -> None:
    """An explicit ``data.root`` must be an existing folder; only the default root may be created (by
    the download) or, for MNIST, fall back to the 5,000 bundled digits. ``holds``: the data set's
    folder under it, in torchvision's layout."""
    need(isinstance(root, str) and root != "", f"data.root must be a folder path, got {root!r}")
    path = Path(root)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"data.root={root} is a file, not a folder: give the folder that holds {holds}")
    if not path.exists() and os.path.normpath(root) != os.path.normpath(default_root()):
        raise ConfigError(f"data.root={root} does not exist: give the folder that holds {holds} "
                          f"(or leave data.root unset to download into {default_root()}/)")


EVAL_KEYS = ("task_name", "ckpt_path", "split", "test_steps", "threads", "seed", "output_dir", "data", "model", "learner",
             "generation", "logger")


def validate_eval(cfg: Mapping[str, Any]) -> list:
    """evaluate.py's own keys; returns the step budgets to test (``[None]``: the learner's own)."""
    for key in cfg:
        need(key in EVAL_KEYS, f"{key} cannot be set when testing a checkpoint: evaluate.py uses the checkpoint's "
                               f"own {key} (changeable: data, model, learner, split, test_steps, generation, threads)")
    need(bool(cfg.get("ckpt_path")), "ckpt_path is required: python evaluate.py ckpt_path=<run>/checkpoints/last.ckpt")
    int_at_least("threads", cfg.get("threads"), 1, optional=True)
    need(cfg.get("split", "test") in ("test", "val"), f"split must be test or val, got {cfg.get('split')!r}")
    steps = cfg.get("test_steps")
    if steps is None:
        return [None]
    budgets = [steps] if not isinstance(steps, (list, tuple)) else list(steps)
    need(len(budgets) > 0 and all(_is_int(b) and b >= 1 for b in budgets),
         f"test_steps must be null, an integer >= 1 or a list of them (e.g. [20,40,80]), got {steps!r}")
    return budgets
