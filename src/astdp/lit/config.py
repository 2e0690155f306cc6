"""Harness-level checks of a composed run config, before anything is built or loaded.

The science dataclasses (``astdp.factory.build_system``) check the dynamics ranges themselves;
this adds types, counts and the harness keys they do not see. Every failure is a
:class:`ConfigError` whose message names the key and the allowed range.
"""

from __future__ import annotations

from typing import Any, Mapping

from astdp.baselines.bp import LOSSES as BP_LEARNERS
from astdp.data.datamodule import NAMES as DATA_NAMES
from astdp.data.toy import STRIDES
from astdp.learners import LEARNERS


class ConfigError(ValueError):
    """A config value outside its allowed range."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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
    fake = model.get("fake_target") or {}
    for key in ("k", "t_c", "m", "center"):
        if key in fake:
            need(_is_num(fake[key]), f"model.fake_target.{key} must be a number, got {fake[key]!r}")


def validate(cfg: Mapping[str, Any]) -> None:
    """Checks a resolved run config (plain dict or DictConfig)."""
    int_at_least("seed", cfg.get("seed"), 0)
    int_at_least("threads", cfg.get("threads"), 1, optional=True)
    validate_data(cfg["data"])
    validate_learner(cfg["learner"])
    if cfg["learner"]["name"] not in BP_LEARNERS:
        validate_model(cfg["model"])
    hidden = cfg["depth"].get("hidden")
    need(bool(hidden) and all(_is_int(h) and h >= 1 for h in hidden),
         f"depth.hidden must be a non-empty list of integers >= 1, got {hidden!r}")
    trainer = cfg.get("trainer") or {}
    for key in ("max_epochs", "max_steps"):
        if trainer.get(key) is not None:
            int_at_least(f"trainer.{key}", trainer[key], -1)
    need(cfg["data"]["name"] != "stdp_pair",
         "data=stdp_pair is the two-neuron STDP protocol, not a training set: run `python train.py experiment=fig6_stdp`")
