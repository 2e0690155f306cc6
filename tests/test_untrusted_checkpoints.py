"""A checkpoint cannot run code: every reader loads with ``weights_only=True`` and refuses, in one
line that names the type, a file whose pickle asks for anything but tensors and plain data."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from omegaconf import OmegaConf, open_dict

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


@pytest.mark.slow  # a real process; in process: test_evaluate_refuses_it_in_one_line
def test_evaluate_refuses_it_with_a_non_zero_exit(run_script, hostile):
    path, marker = hostile
    proc = run_script("evaluate.py", f"ckpt_path={path}", "logger=none", check=False, timeout=120)
    assert proc.returncode != 0
    line = last_line(proc.stderr)
    assert line.startswith("error: ckpt_path=") and "refused without running anything" in line, proc.stderr[-2000:]
    assert not marker.exists()


def test_train_refuses_it_in_one_line_with_exit_code_2(compose_cfg, hostile, capsys):
    from astdp.lit import run as R

    path, marker = hostile
    cfg = compose_cfg([*TOY, "logger=none", f"ckpt_path={path}"])
    with pytest.raises(SystemExit) as info:
        R.guarded(R.train, cfg)
    assert info.value.code == 2 and not marker.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a Python object of type posix.system" in err, err


def _convert_main():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", ROOT / "scripts" / "convert_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.slow  # a one-off conversion of files from before weights_only; the refusals stay in the default run
def test_a_trusted_old_checkpoint_converts_once_and_then_loads(compose_cfg, run_script, tmp_path, capsys):
    """An old-style file (config as a DictConfig) is refused, then converted with --trust and accepted."""
    from astdp.lit.build import build_datamodule, build_module, build_trainer

    cfg = compose_cfg([*TOY, "logger=none"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "run")
    module, dm = build_module(cfg), build_datamodule(cfg)
    build_trainer(cfg, None).fit(module, datamodule=dm)
    old = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    old["astdp_config"] = OmegaConf.create(old["astdp_config"])
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="omegaconf"):
        read_checkpoint(tmp_path / "old.ckpt")
    convert, paths = _convert_main(), [str(tmp_path / "old.ckpt"), str(tmp_path / "new.ckpt")]
    assert convert(paths) == 2 and "--trust" in capsys.readouterr().err and not (tmp_path / "new.ckpt").exists()
    assert convert([*paths, "--trust"]) == 0
    new = read_checkpoint(tmp_path / "new.ckpt")
    assert new["astdp_config"] == OmegaConf.to_container(old["astdp_config"])
    assert torch.equal(new["state_dict"]["system.net.weights.0"], old["state_dict"]["system.net.weights.0"])
    run_script("evaluate.py", f"ckpt_path={tmp_path / 'new.ckpt'}", "logger=none")


def test_evaluate_refuses_it_in_one_line(compose_cfg, hostile, capsys):
    from astdp.lit import run as R

    path, marker = hostile
    with pytest.raises(SystemExit) as info:
        R.guarded(R.evaluate, compose_cfg([f"ckpt_path={path}", "logger=none"], name="eval"))
    assert info.value.code == 2 and not marker.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a Python object of type posix.system" in err, err
