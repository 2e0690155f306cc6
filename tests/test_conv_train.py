"""End to end on a conv depth: train.py with a few hundred fallback digits, aSTDP, EP and backprop; a conv
depth whose input shape does not fit the data is one line before any data loads."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FALLBACK_DATA, TINY, last_line

CONV = ["depth=conv_mnist", "data.n_train=150", "data.val_size=50", "data.n_test=50", "logger=none"]


@pytest.mark.parametrize("learner", ["supervised", pytest.param("ep", marks=pytest.mark.slow), "bp_ce"])
def test_conv_depth_trains_end_to_end(run_script, tmp_path, learner):
    steps = [] if learner.startswith("bp_") else [*TINY, "learner.steps=10", "learner.free_steps=5"]
    proc = run_script("train.py", *FALLBACK_DATA, *steps, *CONV, f"learner={learner}")
    (path,) = (tmp_path / "outputs").glob("*/runs/**/metrics.json")
    m = json.loads(path.read_text())
    assert m["trainer/global_step"] == 2 and m["train/samples_seen"] == 100 and 0.0 <= m["test/acc"] <= 1.0
    assert last_line(proc.stdout).startswith("summary: test/acc=")


def test_a_conv_depth_for_other_images_is_one_line(run_script):
    proc = run_script("train.py", *FALLBACK_DATA, *TINY, "depth=conv_cifar_small", "logger=none", check=False)
    assert proc.returncode != 0
    assert "depth=conv_cifar_small takes inputs of shape [3, 32, 32]" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
