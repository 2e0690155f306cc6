"""A data-parallel run whose process dies or hangs ends everywhere within seconds, with one line that
names the process and the checkpoint to resume from, a non-zero exit, no process and no /dev/shm
file left. Every test here has a deadline of its own: a hang fails it instead of the suite."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import ROOT

# fallback MNIST (4,000 digits), small per-process batches and many epochs, so the run outlives the kill
LONG_RUN = ["data=mnist", "data.download=false", "data.n_train=2000", "data.val_size=100", "data.n_test=100",
            "data.batch_size=10", "data.max_epochs=50", "learner.steps=10", "learner.free_steps=5",
            "learner.test_steps=10", "threads=1", "logger=none", "callbacks.checkpoint.every_n_train_steps=10"]


def _trial(tmp_path: Path, kill_rank: int, *overrides: str, timeout: int = 150) -> dict:
    env = dict(os.environ, ASTDP_DATA_ROOT=str(tmp_path / "no_mnist_here"), OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore", WANDB_MODE="offline")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "fault_trial.py"), "--kill-rank", str(kill_rank),
                           "--after", "1", "--deadline", "60", "--run-dir", str(tmp_path / "run"), "--",
                           *LONG_RUN, *overrides], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(result: dict, kill_rank: int, tmp_path: Path) -> None:
    assert result["ended_s"] is not None and result["ended_s"] < 60, result  # every other process ended
    assert result["left"] == [] and result["shm_left"] == [], result
    assert result["exit_code"] != 0
    line = result["last_lines"][-1]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert line.startswith(f"error: process rank {kill_rank} (pid ") and "has died" in line, result
    assert line.endswith(f"resume with ckpt_path={ckpt}"), result


def test_killed_second_process_ends_the_run_in_one_line(tmp_path):
    _check(_trial(tmp_path, 1, "trainer=ddp"), 1, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("kill_rank,overrides", [
    (0, ["trainer.strategy.sync=periodic"]),
    (1, ["trainer.strategy.sync=periodic"]),
    (0, ["trainer.strategy.sync=step"]),
    (1, ["trainer.strategy.exchange=dense"]),  # gloo's all_reduce: a closed connection, not a spin
])
def test_killed_process_ends_the_run_in_every_mode(tmp_path, kill_rank, overrides):
    _check(_trial(tmp_path, kill_rank, *overrides), kill_rank, tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exchange_worker(rank: int, port: int, stop_rank: int, out) -> None:
    """Two processes exchange through shared memory; ``stop_rank`` stops answering (or dies) after one."""
    from astdp.lit import ddp

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    table = [None, None]
    dist.all_gather_object(table, (socket.gethostname(), os.getpid()))
    ddp._peers = ddp.Peers([h for h, _ in table], [p for _, p in table], timeout_s=3.0)
    gather = ddp.SharedGather()
    outs = [torch.zeros(2, 4)]
    gather.start([torch.full((1, 4), float(rank))], outs)
    gather.wait()
    if rank == stop_rank:
        out.put(("ready", os.getpid()))
        time.sleep(120)  # stuck (the parent may also kill it)
        return
    start = time.monotonic()
    gather.start([torch.ones(1, 4)], outs)
    try:
        gather.wait()
        out.put(("returned", 0.0))
    except ddp.PeerLostError as e:
        out.put((str(e), time.monotonic() - start))


@pytest.mark.slow  # a dead peer is also checked end to end above, in the default run
@pytest.mark.parametrize("how", ["stuck", "killed"])
def test_shared_exchange_gives_up_on_a_stuck_or_dead_peer(how):
    ctx = mp.get_context("spawn")
    outs = [ctx.Queue(), ctx.Queue()]  # one each: a killed writer could leave a shared queue's lock held
    port = _free_port()
    procs = [ctx.Process(target=_exchange_worker, args=(r, port, 1, outs[r]), daemon=True) for r in (0, 1)]
    before = set(Path("/dev/shm").glob("astdp-*"))
    for p in procs:
        p.start()
    try:
        tag, pid = outs[1].get(timeout=60)
        assert tag == "ready"
        if how == "killed":
            os.kill(pid, signal.SIGKILL)
        message, waited = outs[0].get(timeout=60)
    finally:
        for p in procs:
            p.kill()
            p.join(10)
    if how == "stuck":
        assert "rank 1" in message and "gave no answer within trainer.strategy.timeout=3 s" in message
        assert 2.5 < waited < 10
    else:
        assert message.startswith(f"process rank 1 (pid {pid} ") and "has died" in message
        assert waited < 3  # the liveness check, well before the deadline
    assert set(Path("/dev/shm").glob("astdp-*")) == before


def _torchrun(tmp_path: Path, *flags: str, timeout: int = 400) -> dict:
    env = dict(os.environ, ASTDP_DATA_ROOT=str(tmp_path / "no_mnist_here"), OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore", WANDB_MODE="offline")
    budget = [o for o in LONG_RUN if not o.startswith("data.max_epochs")] + ["data.max_epochs=3"]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "fault_trial.py"), "--torchrun", *flags,
                           "--deadline", "300", "--run-dir", str(tmp_path / "run"), "--", *budget],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_torchrun_restarts_a_killed_worker_and_the_run_resumes_and_finishes(tmp_path):
    """torchrun --max-restarts=1 with ckpt_path=last: the same command line resumes after the restart."""
    killed = _torchrun(tmp_path / "killed", "--kill-rank", "1", "--after", "1")
    straight = _torchrun(tmp_path / "straight", "--no-kill")
    assert killed["killed_pid"] is not None and killed["exit_code"] == 0 and straight["exit_code"] == 0, killed
    assert killed["global_step"] == straight["global_step"]
    assert abs(killed["test_acc"] - straight["test_acc"]) <= 0.05  # 100 test digits
