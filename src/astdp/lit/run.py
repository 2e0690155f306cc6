"""The bodies of ``train.py`` and ``evaluate.py``: build, fit/test, write ``metrics.json``."""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from astdp.data import ensure_files
from astdp.data.datamodule import has_val_split
from astdp.errors import CheckpointError, ConfigError, DataError, DivergenceError, Interrupted, PeerLostError
from astdp.lit import images, launch, rundir  # noqa: F401 (rundir: the run folder's resolver, for evaluate.py)
from astdp.lit import metrics as M
from astdp.lit.build import (build_callbacks, build_datamodule, build_logger, build_module, build_trainer, finish_logger,
                             plain)
from astdp.lit.checkpoints import ARCHITECTURE_KEYS, check_compatible, check_writable, read_checkpoint
from astdp.lit.config import validate, validate_eval
from astdp.lit.ddp import is_rank_zero, run_scope


log = logging.getLogger(__name__)
USER_ERRORS = (ConfigError, DataError, DivergenceError, CheckpointError)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*`training_step` returns `None`.*")
warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")
# The position inside an epoch is restored by AstdpDataModule.load_state_dict, which Lightning cannot see.
warnings.filterwarnings("ignore", ".*your dataloader is not resumable.*")
# Epoch-level figures come from compute() (torchmetrics, InferTally), already reduced over the processes.
warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed setting.*")


def in_search() -> bool:
    """True inside a trial of a hyperparameter search (``hparams_search=...``, e.g. Optuna)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    target = str(HydraConfig.get().sweeper.get("_target_", ""))
    return "BasicSweeper" not in target and bool(target)


def failed_trial(cfg: DictConfig, error: Exception) -> dict:
    """metrics.json of a search trial that diverged or failed; the sweeper gets the worst value."""
    from hydra.core.hydra_config import HydraConfig

    direction = str(HydraConfig.get().sweeper.get("direction", "maximize"))
    worst = 0.0 if "max" in direction.lower() else 1e9  # accuracies are >= 0; a minimised loss is < 1e9
    status = "diverged" if isinstance(error, DivergenceError) else "failed"
    _write({M.RUN_STATUS: status, M.RUN_ERROR: str(error)}, cfg.output_dir)
    print(f"error: {error} (trial {status}: it reports {cfg.optimized_metric}={worst:g} to the search)",
          file=sys.stderr, flush=True)
    return {cfg.optimized_metric: worst}


def guarded(fn: Callable[[DictConfig], dict], cfg: DictConfig) -> dict:
    """Run ``fn``; a config or data error ends the program with one line on stderr. Prints the summary.

    In a hyperparameter search a trial that diverges or fails scores the worst value and the search
    goes on (its metrics.json says why).
    """
    try:
        metrics = fn(cfg)
    except USER_ERRORS as e:
        if in_search():
            return failed_trial(cfg, e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except PeerLostError as e:  # a process of a data-parallel run died or hung: this one ends too
        print(f"error: {e}; {_resume_hint(cfg)}", file=sys.stderr, flush=True)
        _write({M.RUN_STATUS: "failed", M.RUN_ERROR: str(e)}, cfg.output_dir)
        sys.exit(1)
    except Interrupted as e:
        _write({M.RUN_STATUS: "interrupted", M.RUN_ERROR: str(e)}, cfg.output_dir)
        if is_rank_zero():  # the process that saved the checkpoint says so, once
            print(f"interrupted: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted: stopped by Ctrl-C outside training (checkpoints written so far are kept)",
              file=sys.stderr, flush=True)
        sys.exit(130)
    if is_rank_zero():
        print(M.summary_line(metrics, str(Path(cfg.output_dir) / "metrics.json")), flush=True)
    return metrics


def resolve_last(cfg: DictConfig) -> None:
    """``ckpt_path=last``: this run folder's ``checkpoints/last.ckpt`` if it exists, else a fresh start,
    so that one command line serves the first start and every restart (torchrun ``--max-restarts``,
    a requeued SLURM job, a rerun with ``hydra.run.dir`` of the run)."""
    if str(cfg.get("ckpt_path")) != "last":
        return
    folder = OmegaConf.select(cfg, "callbacks.checkpoint.dirpath", default=None) or Path(cfg.output_dir) / "checkpoints"
    last = Path(str(folder)) / "last.ckpt"
    with open_dict(cfg):
        cfg.ckpt_path = str(last) if last.exists() else None
    log.info("ckpt_path=last: %s", f"resuming from {last}" if last.exists() else f"no {last} yet, starting afresh")


def _resume_hint(cfg: DictConfig) -> str:
    """Which checkpoint a failed run resumes from, as the command-line value to give."""
    folder = OmegaConf.select(cfg, "callbacks.checkpoint.dirpath", default=None)
    last = Path(str(folder)) / "last.ckpt" if folder else None
    if last is not None and last.exists():
        return f"resume with ckpt_path={last}"
    if cfg.get("ckpt_path"):
        return f"no newer checkpoint was saved: resume again with ckpt_path={cfg.ckpt_path}"
    return "no checkpoint was saved yet: start the run again"


def _setup(cfg: DictConfig, ckpt: dict | None = None, before_data: Callable | None = None):
    """Checks, module, then (last, as it is the slow part) the data. ``ckpt``, a checkpoint read by
    :func:`read_checkpoint`, must fit the module; ``before_data(module)`` runs just before the data load."""
    launch.hold()  # a process started early by train.py waits here for rank 0's checks (once)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    validate(plain(cfg))
    ensure_files(plain(cfg.data))  # a missing data set is one line before the model is built
    from pytorch_lightning import seed_everything

    seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = build_module(cfg)
    if ckpt is not None:
        check_compatible(ckpt, cfg.ckpt_path, cfg, module)
    if before_data is not None:
        before_data(module)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    launch.release()  # rank 0: the config and data are good, the other processes go on
    return module, dm


def _write(metrics: dict, out_dir: str) -> dict:
    """metrics.json, written by one process (rank 0) when several train together."""
    metrics = M.flat(metrics)
    if not is_rank_zero():
        return metrics
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def _final(trainer, module, dm, start: float, fit_metrics: dict) -> dict:
    """Final metrics: the last validation (``val/*``) from fitting, then testing's."""
    out = {k: v for k, v in fit_metrics.items() if k.startswith("val/")}
    out.update(trainer.callback_metrics)
    if getattr(module, "weight_spread", None) is not None:
        out[M.DIST_SPREAD] = module.weight_spread
    out.update({M.DATA_SOURCE: dm.source, M.TRAIN_SAMPLES: int(module.samples_seen), "trainer/global_step":
                trainer.global_step, M.WALL: time.perf_counter() - start, M.DIST_WORLD_SIZE: trainer.world_size,
                M.DIST_SYNC: getattr(trainer.strategy, "sync", "none") if trainer.world_size > 1 else "none"})
    return out


def train(cfg: DictConfig) -> dict:
    """Fit, then test; ``ckpt_path`` resumes (weights, biases, persistent states, counters)."""
    start = time.perf_counter()
    if cfg.get("experiment_fn"):
        return run_plain_experiment(cfg)
    def before_data(module) -> None:  # callback values and the checkpoint folder, before the data load
        for cb in build_callbacks(cfg):
            if getattr(cb, "dirpath", None):
                check_writable(cb.dirpath)

    resolve_last(cfg)
    ckpt = read_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    module, dm = _setup(cfg, ckpt, before_data)
    del ckpt
    logger = build_logger(cfg)
    with run_scope():
        return _fit_and_test(cfg, module, dm, logger, start)


def _fit_and_test(cfg: DictConfig, module, dm, logger, start: float) -> dict:
    try:
        if logger:
            logger.log_hyperparams({**plain(cfg), M.DATA_SOURCE: dm.source})
        figure = images.GenerationFigure(plain(cfg.generation), int(cfg.seed), cfg.output_dir) \
            if cfg.get("generation") else None
        trainer = build_trainer(cfg, logger, extra_callbacks=[figure] if figure else [])
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        fit_metrics = dict(trainer.callback_metrics)
        trainer.test(module, datamodule=dm, verbose=False)
        metrics = _final(trainer, module, dm, start, fit_metrics)
        metrics.update(figure.metrics if figure else {})
    finally:
        finish_logger()
    return _write(metrics, cfg.output_dir)


def run_plain_experiment(cfg: DictConfig) -> dict:
    """Experiments that are plain functions (``experiment_fn``), e.g. the two-neuron STDP protocol."""
    from astdp.experiments.runner import run_experiment

    logger = build_logger(cfg)
    try:
        if logger and hasattr(logger, "experiment"):
            logger.experiment  # starts the W&B run the runner logs into
        return run_experiment(plain(cfg), cfg.output_dir)
    finally:
        finish_logger()


def saved_config(ckpt: Path, stored: dict) -> DictConfig:
    """The config stored in the checkpoint; for checkpoints written without one, the training run's
    ``.hydra/config.yaml`` above it."""
    if stored.get("astdp_config") is not None:
        return OmegaConf.create(stored["astdp_config"])
    for parent in list(ckpt.parents)[:3]:
        path = parent / ".hydra" / "config.yaml"
        if path.exists():
            return OmegaConf.load(path)
    raise ConfigError(f"ckpt_path={ckpt}: no config inside it and no .hydra/config.yaml above it")


def evaluate(cfg: DictConfig) -> dict:
    """Test a checkpoint with its own config, once per step budget in ``test_steps`` (or at the learner's own)."""
    start = time.perf_counter()
    budgets = validate_eval(plain(cfg))
    ckpt = Path(str(cfg.ckpt_path))
    stored = read_checkpoint(ckpt)
    run = saved_config(ckpt, stored)
    changes = OmegaConf.create({"data": cfg.data, "model": cfg.model, "learner": cfg.learner})
    for dotted in ARCHITECTURE_KEYS:
        new = OmegaConf.select(changes, dotted, default=None)
        if new is not None and plain(new) != plain(OmegaConf.select(run, dotted, default=None)):
            raise ConfigError(f"{dotted} cannot be changed when testing a checkpoint (it has "
                              f"{plain(OmegaConf.select(run, dotted, default=None))}, got {plain(new)}): "
                              f"train a new run for that")
    run = OmegaConf.merge(run, changes)
    run.logger, run.output_dir, run.ckpt_path = cfg.logger, cfg.output_dir, str(ckpt)
    run.threads = cfg.get("threads") or run.get("threads")
    on_val = cfg.get("split", "test") == "val"
    if on_val and not has_val_split(run.data.name, run.data.get("val_size")):
        raise ConfigError(f"split=val needs a validation split, but this run was trained with "
                          f"data.val_size={run.data.get('val_size')}: test it with split=test")
    module, dm = _setup(run, stored)
    del stored
    logger = build_logger(run)
    metrics: dict = {"ckpt_path": str(ckpt)}
    try:
        figure = images.GenerationFigure(plain(cfg.generation), int(run.seed), cfg.output_dir) \
            if cfg.get("generation") else None
        trainer = build_trainer(run, logger, with_callbacks=False, enable_checkpointing=False,
                                extra_callbacks=[figure] if figure else [])
        default = getattr(module, "test_steps", None)
        for b in budgets:
            if default is not None:
                module.test_steps = b or default
            if on_val:
                trainer.validate(module, datamodule=dm, ckpt_path=str(ckpt), verbose=False, weights_only=True)
                if figure:  # it draws after a test (inside its inference mode); once per trainer
                    with torch.inference_mode():
                        figure.on_test_end(trainer, module)
            else:
                trainer.test(module, datamodule=dm, ckpt_path=str(ckpt), verbose=False, weights_only=True)
            res = {k: v for k, v in trainer.callback_metrics.items()
                   if k.startswith(("val/",) if on_val else ("test/", "infer/")) and k != M.VAL_ACC_BEST}
            if len(budgets) > 1:
                metrics.update({f"{k}@{b}": v for k, v in res.items()})
            metrics.update(res)
        metrics.update(figure.metrics if figure else {})
        metrics.update({M.DATA_SOURCE: dm.source, M.TRAIN_SAMPLES: int(module.samples_seen),
                        M.WALL: time.perf_counter() - start})
    finally:
        finish_logger()
    return _write(metrics, cfg.output_dir)
