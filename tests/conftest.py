"""Shared helpers: compose configs in-process, run the entry points as subprocesses, tiny budgets."""

from __future__ import annotations

import os
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


@pytest.fixture
def compose_cfg(tmp_path):
    """``compose_cfg(overrides, name="train")`` -> a DictConfig with ``output_dir`` in tmp_path."""
    from hydra import compose, initialize_config_dir

    def _compose(overrides=(), name: str = "train", hydra: bool = False):
        extra = [] if hydra else [f"output_dir={tmp_path / 'run'}"]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=name, overrides=[*overrides, *extra], return_hydra_config=hydra)

    return _compose


@pytest.fixture
def run_script(tmp_path):
    """Run ``train.py``/``evaluate.py`` in tmp_path (W&B offline, no MNIST files, one thread)."""

    def _run(script: str, *args: str, check: bool = True, timeout: int = 300,
             quiet: bool = True) -> subprocess.CompletedProcess:
        """``quiet=False``: the console as a user sees it (W&B's messages and Python's warnings shown)."""
        env = dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(tmp_path), ASTDP_DATA_ROOT=str(tmp_path / "no_mnist_here"),
                   OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
        if quiet:
            env.update(WANDB_SILENT="true", PYTHONWARNINGS="ignore")
        else:
            for key in ("WANDB_SILENT", "PYTHONWARNINGS"):
                env.pop(key, None)
        proc = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    return _run


def last_line(text: str) -> str:
    return [ln for ln in text.strip().splitlines() if ln.strip()][-1]
