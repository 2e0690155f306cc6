"""Config -> objects: the Lightning module, data module, logger and trainer of one run."""

from __future__ import annotations

import sys
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from astdp.baselines.bp import LOSSES as BP_LEARNERS
from astdp.lit.bp_module import BpLitModule
from astdp.lit.checkpoints import AtomicCheckpointIO
from astdp.lit.config import ConfigError
from astdp.lit.console import ParamSummary
from astdp.lit.ddp import TIMEOUT_S
from astdp.lit.module import AstdpLitModule
from astdp.tracking import sweep_group


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_module(cfg: DictConfig):
    """aSTDP System in a :class:`AstdpLitModule`, or a backprop MLP for ``learner=bp_*``.

    Value errors raised by the science dataclasses become :class:`ConfigError` s.
    """
    learner, data = plain(cfg.learner), cfg.data
    cls = BpLitModule if learner["name"] in BP_LEARNERS else AstdpLitModule
    try:
        module = cls(model=plain(cfg.model), learner=learner, depth=plain(cfg.depth), n_inputs=int(data.n_inputs),
                     n_outputs=int(data.n_outputs), batch_size=int(data.batch_size), seed=int(cfg.seed),
                     image_size=data.get("image_size"), precision=precision(cfg))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    module.run_config = plain(cfg)
    return module


def precision(cfg: DictConfig) -> str | None:
    """``trainer.precision`` (None where a config has no such key, e.g. a checkpoint's older one)."""
    return OmegaConf.select(cfg, "trainer.precision", default=None)


def lightning_precision(cfg: DictConfig) -> str | None:
    """What Lightning is told: the backprop baselines take ``trainer.precision`` as it is (Lightning's
    autocast); the aSTDP module runs at ``32-true``, as its engine casts the operands of its products
    itself (:mod:`astdp.core.precision`): under Lightning's autocast the out-of-place products would
    turn bf16 and the in-place ones stay fp32."""
    want = precision(cfg)
    if cfg.learner.name in BP_LEARNERS or want is None:
        return want
    return "32-true"


def matmul_precision(cfg: DictConfig) -> None:
    """On CUDA, fp32 products use TF32 (``torch.set_float32_matmul_precision("high")``) unless
    ``trainer.precision=32-true`` asks for full fp32."""
    import torch

    if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        torch.set_float32_matmul_precision("highest" if precision(cfg) == "32-true" else "high")


def build_datamodule(cfg: DictConfig):
    """The run's ``seed`` also fixes the training order of every epoch (``data.split_seed`` the split)."""
    try:
        return instantiate(cfg.data, order_seed=int(cfg.get("seed") or 0))
    except ValueError as e:
        raise ConfigError(str(e)) from e


def _hydra():
    """The running Hydra job's config, or None outside one."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _experiment() -> str | None:
    hc = _hydra()
    return str(hc.runtime.choices["experiment"]) if hc and hc.runtime.choices.get("experiment") else None


def wandb_group(cfg: DictConfig) -> str | None:
    """The run's W&B group: ``group``, else the multirun sweep (one group per sweep folder), else the
    experiment name."""
    from hydra.types import RunMode

    if cfg.get("group"):
        return str(cfg.group)
    hc = _hydra()
    if hc and hc.mode == RunMode.MULTIRUN:
        return sweep_group(cfg.task_name, hc.sweep.dir)
    return _experiment()


def run_tags(cfg: DictConfig) -> list[str]:
    """Learner, depth and data names, the experiment's where one is chosen, then ``tags``."""
    tags = [str(cfg.learner.name), str(cfg.depth.get("name", "depth")), str(cfg.data.name), _experiment()]
    tags = [t for t in tags if t]
    return tags + [str(t) for t in cfg.get("tags") or [] if str(t) not in tags]


def build_logger(cfg: DictConfig):
    node = cfg.get("logger")
    if not node or "_target_" not in node:
        return False
    if node._target_.endswith("WandbLogger"):
        logger = instantiate(node, group=wandb_group(cfg), tags=run_tags(cfg))
        # Lightning passes anonymous=None, which W&B answers with a deprecation warning on every run
        logger._wandb_init.pop("anonymous", None)
        return logger
    return instantiate(node)


def build_callbacks(cfg: DictConfig) -> list:
    try:
        return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    except InstantiationException as e:
        raise ConfigError(str(e.__cause__ or e).splitlines()[-1]) from e


def build_trainer(cfg: DictConfig, logger, with_callbacks: bool = True, extra_callbacks=(), **overrides):
    """Every checkpoint is written atomically (:class:`~astdp.lit.checkpoints.AtomicCheckpointIO`); the
    model summary is :class:`~astdp.lit.console.ParamSummary`."""
    callbacks = (build_callbacks(cfg) if with_callbacks else []) + list(extra_callbacks)
    if overrides.pop("enable_model_summary", cfg.trainer.get("enable_model_summary", True)):
        callbacks.append(ParamSummary())
    overrides.setdefault("plugins", [AtomicCheckpointIO()])
    overrides.setdefault("precision", lightning_precision(cfg))
    matmul_precision(cfg)
    trainer_cfg = cfg.trainer
    strategy = trainer_cfg.get("strategy")
    if isinstance(strategy, DictConfig) and "timeout" in strategy and strategy.timeout is None:
        trainer_cfg = trainer_cfg.copy()  # the deadline of every wait by accelerator (AstdpDDPStrategy)
        trainer_cfg.strategy.timeout = TIMEOUT_S["gpu" if str(trainer_cfg.get("accelerator")) in ("gpu", "cuda")
                                                 else "cpu"]
    return instantiate(trainer_cfg, logger=logger, callbacks=callbacks, enable_model_summary=False, **overrides)


def finish_logger() -> None:
    """End the active W&B run (so the next multirun job starts its own)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
