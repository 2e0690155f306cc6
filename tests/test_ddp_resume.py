"""A data-parallel run stopped inside an epoch and resumed from its checkpoint equals the run that was
never stopped, bit for bit on CPU, in both sync modes: every process gets its own generators,
persistent states and (sync=periodic) weights and sum in flight back."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import FALLBACK_MNIST
from tests.test_train import run_dirs

# 200 training digits, 20 per process and batch: 5 batches per epoch, 10 in two; the rate schedule's
# length is pinned so that stopping early does not change it
RUN = [*FALLBACK_MNIST, "trainer=ddp", "trainer.devices=2", "data.batch_size=20", "logger=none",
       "trainer.max_epochs=2", "learner.total_batches=10"]


def _tensors(ckpt) -> dict:
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith("system.")}


@pytest.mark.slow  # two-process runs, three each: about a minute per mode
@pytest.mark.parametrize("sync", ["step", "periodic"])
def test_stopped_and_resumed_equals_uninterrupted(run_script, tmp_path, sync):
    mode = [f"trainer.strategy.sync={sync}"]
    run_script("train.py", *RUN, *mode, f"hydra.run.dir={tmp_path / 'straight'}",
               "callbacks.checkpoint.every_n_train_steps=0")
    run_script("train.py", *RUN, *mode, f"hydra.run.dir={tmp_path / 'stopped'}", "trainer.max_steps=7",
               "callbacks.checkpoint.every_n_train_steps=7", "+callbacks.checkpoint.every_n_epochs=0")
    ckpt = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 7  # inside the second epoch
    assert (ckpt.parent / "last.ckpt.rank1").exists()
    run_script("train.py", *RUN, *mode, f"hydra.run.dir={tmp_path / 'resumed'}", f"ckpt_path={ckpt}",
               "callbacks.checkpoint.every_n_train_steps=0")
    straight = _tensors(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = _tensors(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert straight.keys() == resumed.keys()
    for key in straight:  # weights, biases and rank 0's persistent states
        assert torch.equal(straight[key], resumed[key]), key
