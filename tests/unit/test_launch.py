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
