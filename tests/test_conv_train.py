"""End to end on a conv depth: train.py with a few hundred fallback digits, aSTDP, EP and backprop; a conv
depth whose input shape does not fit the data is one line before any data loads."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import FALLBACK_DATA, TINY, last_line

CONV = ["depth=conv_mnist", "data.n_train=150", "data.val_size=50", "data.n_test=50", "logger=none"]


@pytest.mark.slow  # a conv run trains in the default run too: test_a_conv_run_resumes_bit_for_bit_inside_an_epoch
@pytest.mark.parametrize("learner", ["supervised", "ep", "bp_ce"])
def test_conv_depth_trains_end_to_end(run_script, tmp_path, learner):
    steps = [] if learner.startswith("bp_") else [*TINY, "learner.steps=10", "learner.free_steps=5"]
    proc = run_script("train.py", *FALLBACK_DATA, *steps, *CONV, f"learner={learner}")
    (path,) = (tmp_path / "outputs").glob("*/runs/**/metrics.json")
    m = json.loads(path.read_text())
    assert m["trainer/global_step"] == 2 and m["train/samples_seen"] == 100 and 0.0 <= m["test/acc"] <= 1.0
    assert last_line(proc.stdout).startswith("summary: test/acc=")


@pytest.mark.slow  # the same message in process: tests/test_configs.py
def test_a_conv_depth_for_other_images_is_one_line(run_script):
    proc = run_script("train.py", *FALLBACK_DATA, *TINY, "depth=conv_cifar_small", "logger=none", check=False)
    assert proc.returncode != 0
    assert "depth=conv_cifar_small takes inputs of shape [3, 32, 32]" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_conv_run_resumes_bit_for_bit_inside_an_epoch(compose_cfg, tmp_path, monkeypatch):
    """As the dense nets' test in test_reliability.py: stopped after batch 5 of 8, resumed, the same run."""
    from tests.test_reliability import SMALL, StopAt, _assert_same_run, _cfg, _fit, _interrupt

    monkeypatch.setenv("ASTDP_DATA_ROOT", str(tmp_path / "no_mnist_here"))
    small = [a for a in SMALL if not a.startswith("depth.hidden")] + ["depth=conv_mnist", "model.engine=eager"]
    straight, t_straight = _fit(_cfg(compose_cfg, tmp_path / "straight", *small))
    cfg = _cfg(compose_cfg, tmp_path / "mid", *small)
    ckpt = _interrupt(cfg, StopAt(step=5))
    resumed, t_resumed = _fit(cfg, ckpt_path=str(ckpt))
    _assert_same_run(straight, resumed, t_straight, t_resumed)
    assert all(torch.equal(a, b) for a, b in zip(straight.system.net.kernels, resumed.system.net.kernels))
