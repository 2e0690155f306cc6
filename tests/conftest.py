"""Shared helpers: compose configs in-process, run the entry points as subprocesses, tiny budgets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Smallest budgets that still exercise every phase (free + clamped, val, test).
TINY = ["learner.steps=10", "learner.free_steps=5", "learner.test_steps=10", "threads=1"]
TOY = ["data=toy_order", "depth=toy16", "data.repeats=2", "trainer.max_epochs=1", *TINY]
FALLBACK_DATA = ["data=mnist", "data.download=false", "data.n_train=240", "data.val_size=40", "data.n_test=100",
                 "data.batch_size=50", "trainer.max_epochs=1", "threads=1"]
FALLBACK_MNIST = [*FALLBACK_DATA, *TINY]


def pinned(experiment: str, group: str) -> str | None:
    """The option an experiment file pins for a config group (``override /data: cifar10``), or None."""
    found = re.search(rf"override /{group}: (\w+)", (CONF / "experiment" / f"{experiment}.yaml").read_text())
    return found.group(1) if found else None


@pytest.fixture
def compose_cfg(tmp_path):
    """``compose_cfg(overrides, name="train")`` -> a DictConfig with ``output_dir`` in tmp_path."""
    from hydra import compose, initialize_config_dir

    def _compose(overrides=(), name: str = "train", hydra: bool = False):
        extra = [] if hydra else [f"output_dir={tmp_path / 'run'}"]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=name, overrides=[*overrides, *extra], return_hydra_config=hydra)

    return _compose


def run_entry(folder: Path, script: str, *args: str, check: bool = True, timeout: int = 300,
              quiet: bool = True) -> subprocess.CompletedProcess:
    """Run ``train.py``/``evaluate.py`` (or ``-m <module>``) in ``folder`` (W&B offline, no MNIST
    files, one thread). ``quiet=False``: the console as a user sees it (W&B's messages and Python's
    warnings shown)."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(folder), ASTDP_DATA_ROOT=str(folder / "no_mnist_here"),
               OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    if quiet:
        env.update(WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    else:
        for key in ("WANDB_SILENT", "PYTHONWARNINGS"):
            env.pop(key, None)
    command = [script, *args] if script == "-m" else [str(ROOT / script), *args]
    proc = subprocess.run([sys.executable, *command], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def run_script(tmp_path):
    """``run_script(script, *args, ...)``: :func:`run_entry` in tmp_path."""

    def _run(script: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_entry(tmp_path, script, *args, **kwargs)

    return _run


def last_line(text: str) -> str:
    return [ln for ln in text.strip().splitlines() if ln.strip()][-1]
