"""train.py starts a data-parallel run's other processes itself (astdp.lit.launch), only where
Lightning would start them on this machine and nobody else has."""

from __future__ import annotations

import pytest

from astdp.lit.launch import early_devices

DDP = {"_target_": "astdp.lit.ddp.AstdpDDPStrategy", "sync": "step"}


def _cfg(**trainer):
    return {"trainer": {"devices": 2, "num_nodes": 1, "strategy": DDP, **trainer}}


@pytest.mark.parametrize("cfg,want", [
    (_cfg(), 2),
    (_cfg(devices=4), 4),
    (_cfg(devices=1), 0),
    (_cfg(devices="auto"), 0),
    (_cfg(devices=True), 0),
    (_cfg(num_nodes=2), 0),  # other machines start their own
    (_cfg(strategy=None), 0),  # trainer=cpu
    ({**_cfg(), "experiment_fn": "astdp.experiments.stdp.run"}, 0),
])
def test_early_start_only_for_one_machine_ddp(cfg, want, monkeypatch):
    for key in ("LOCAL_RANK", "RANK", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    assert early_devices(cfg) == want


@pytest.mark.parametrize("key", ["LOCAL_RANK", "RANK", "SLURM_NTASKS"])
def test_no_early_start_in_a_process_started_by_someone_else(key, monkeypatch):
    monkeypatch.setenv(key, "1")
    assert early_devices(_cfg()) == 0


def test_a_failed_process_stops_rank_zero(monkeypatch, capsys):
    import os
    import signal
    import subprocess
    import sys

    from astdp.lit import launch

    sent = []
    monkeypatch.setattr(launch.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    launch._ending.clear()
    ok = subprocess.Popen([sys.executable, "-c", "pass"])
    failed = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    launch._watch([ok, failed])  # returns once it has acted
    assert sent == [(os.getpid(), signal.SIGTERM)]
    assert "ended with exit code 3" in capsys.readouterr().err


def test_processes_of_one_torchrun_or_srun_launch_share_a_run_folder_across_restarts(tmp_path, monkeypatch):
    from astdp.lit.rundir import new_dir

    for key in ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    timed = str(tmp_path / "runs" / "2026-01-01_00-00-00")
    assert new_dir(timed) == timed and new_dir(timed) == timed + "_1"  # alone: a new folder each time
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    first = new_dir(timed)
    assert first == str(tmp_path / "runs" / "torchrun_abc") and new_dir(timed + "x") == first  # rank 1, a restart
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert new_dir(timed).startswith(timed)  # one task: no launch to share with
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert new_dir(timed) == str(tmp_path / "runs" / "slurm_77_0")
