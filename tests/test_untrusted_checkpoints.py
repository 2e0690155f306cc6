"""A checkpoint cannot run code: every reader loads with ``weights_only=True`` and refuses, in one
line that names the type, a file whose pickle asks for anything but tensors and plain data."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from astdp.errors import CheckpointError
from astdp.lit.checkpoints import read_checkpoint
from tests.conftest import ROOT, TOY, last_line


class _Payload:
    """Unpickling this calls ``os.system(command)``: what a hostile checkpoint would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture
def hostile(tmp_path):
    """(a checkpoint whose unpickling would create ``marker``, the marker's path)."""
    marker = tmp_path / "payload_ran"
    path = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {}, "astdp_config": _Payload(f"touch {marker}")}, path)
    return path, marker


def test_the_payload_would_run_if_fully_unpickled(hostile):
    """The test's own check: the marker does appear when the file is loaded without weights_only."""
    path, marker = hostile
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_read_checkpoint_refuses_it_naming_the_type_and_nothing_runs(hostile):
    path, marker = hostile
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "system" in message and "refused without running anything" in message and "--trust" in message
    assert not marker.exists()


@pytest.mark.parametrize("script,extra", [("train.py", [*TOY, "logger=none"]), ("evaluate.py", ["logger=none"])])
def test_train_and_evaluate_refuse_it_with_a_non_zero_exit(run_script, hostile, script, extra):
    path, marker = hostile
    proc = run_script(script, f"ckpt_path={path}", *extra, check=False, timeout=120)
    assert proc.returncode != 0
    line = last_line(proc.stderr)
    assert line.startswith("error: ckpt_path=") and "refused without running anything" in line, proc.stderr[-2000:]
    assert not marker.exists()


def test_a_trusted_old_checkpoint_converts_once_and_then_loads(run_script, tmp_path):
    """An old-style file (config as a DictConfig) is refused, then converted with --trust and accepted."""
    run_script("train.py", *TOY, "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    old = torch.load(ckpt, weights_only=True)
    old["astdp_config"] = OmegaConf.create(old["astdp_config"])
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="omegaconf"):
        read_checkpoint(tmp_path / "old.ckpt")
    convert = [sys.executable, str(ROOT / "scripts" / "convert_checkpoint.py"), str(tmp_path / "old.ckpt"),
               str(tmp_path / "new.ckpt")]
    refused = subprocess.run(convert, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--trust" in refused.stderr and not (tmp_path / "new.ckpt").exists()
    subprocess.run([*convert, "--trust"], check=True, capture_output=True, text=True, timeout=120)
    new = read_checkpoint(tmp_path / "new.ckpt")
    assert new["astdp_config"] == OmegaConf.to_container(old["astdp_config"])
    assert torch.equal(new["state_dict"]["system.net.weights.0"], old["state_dict"]["system.net.weights.0"])
    run_script("evaluate.py", f"ckpt_path={tmp_path / 'new.ckpt'}", "logger=none")
