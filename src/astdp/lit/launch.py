"""Starting the processes of a data-parallel run (``trainer=ddp``) early, and ending them with it.

Lightning starts the processes of ranks >= 1 when fitting begins, by running the script again:
each of them then spends its import of torch and Lightning (6-7 s here) and its set-up while
rank 0 waits for it. :func:`ranks` starts them as soon as the Hydra job begins, before rank 0's own
imports, so that every process imports at once. They are held just after their imports
(:func:`hold`) until rank 0 has checked the config and loaded the data (:func:`release`): a bad
config or missing data is reported once, by rank 0, and the held processes end quietly. Lightning
sees the launch variables set and starts no processes of its own.

Hydra: run again with the command line of a multirun (``-m ...``), a process would run the whole
sweep; :func:`job_command` makes it run the one job in progress instead, from the config that job
saved (``<run dir>/.hydra/config.yaml``), in the same run folder.

This module imports neither torch nor Lightning: ``train.py`` uses it before them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Sequence

LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")  # set by the launcher
HELD = "ASTDP_HELD"  # set in a process started by ranks(): it waits for rank 0's go (hold)
EXTERNAL = ("LOCAL_RANK", "RANK", "SLURM_NTASKS")  # processes started by someone else (Lightning, torchrun, SLURM)
WAIT_S = 120  # after rank 0's run, how long the other processes may take to end before they are stopped

_children: list[subprocess.Popen] = []  # the processes started by ranks() in this one (rank 0)
_ending = threading.Event()  # set when rank 0's job ends: the watch no longer acts
_connected = threading.Event()  # set once the processes talk (process group up): their waits watch each other


def job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command (and working folder) that starts rank ``local_rank`` of the Hydra job in progress.

    It composes the job's saved config (so multirun values, sweeps and searches are not re-run)
    and writes into the job's own folder; the saved config is left as rank 0 wrote it.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    if hc.output_subdir is None:  # no saved config to read: the job's own overrides, as a single run
        command += list(hc.overrides.task)
    else:
        command += ["--config-path", str(run_dir / hc.output_subdir), "--config-name", "config"]
    command += [f'hydra.run.dir="{run_dir}"', f"hydra.job.name={hc.job.name}_rank{local_rank}",
                "hydra.output_subdir=null"]
    return command, get_original_cwd()


def early_devices(cfg: Any) -> int:
    """How many processes :func:`ranks` starts on this machine for ``cfg`` (0: leave it to Lightning):
    ``trainer=ddp`` with an integer ``trainer.devices`` > 1 on one machine, launched by nobody else."""
    trainer = cfg.get("trainer") or {}
    strategy = trainer.get("strategy")
    target = str(strategy.get("_target_", "")) if hasattr(strategy, "get") else ""
    devices = trainer.get("devices")
    if (not target.endswith("AstdpDDPStrategy") or cfg.get("experiment_fn") or trainer.get("num_nodes", 1) != 1
            or not isinstance(devices, int) or isinstance(devices, bool) or devices < 2
            or any(k in os.environ for k in EXTERNAL)):
        return 0
    return devices


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ranks(cfg: Any):
    """Around a Hydra job: start its other processes now (when :func:`early_devices` says so) and
    end them with it. If this process fails, they are stopped; otherwise they are waited for. The
    launch variables are restored afterwards, so that the next job of a multirun starts its own."""
    devices = early_devices(cfg)
    if not devices:
        yield
        return
    before = {k: os.environ.get(k) for k in LAUNCH_VARIABLES}
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), NODE_RANK="0", LOCAL_RANK="0",
                      WORLD_SIZE=str(devices))
    ok = False
    _ending.clear()
    _connected.clear()
    try:
        for local_rank in range(1, devices):
            command, cwd = job_command(local_rank)
            env = {**os.environ, "LOCAL_RANK": str(local_rank), HELD: "1"}
            _children.append(subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.PIPE))
        yield
        ok = True
    except SystemExit as e:
        ok = not e.code
        raise
    finally:
        _ending.set()
        children = list(_children)
        _children.clear()
        for child in children:
            _close(child)
            if ok:
                try:
                    child.wait(WAIT_S)
                except subprocess.TimeoutExpired:
                    pass
            if child.poll() is None:
                child.kill()
                child.wait()
        restore_variables(before)


def restore_variables(before: dict[str, str | None]) -> None:
    """Set the environment variables back to ``before`` (None: unset)."""
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _close(child: subprocess.Popen) -> None:
    try:
        child.stdin.close()
    except OSError:
        pass


def hold() -> None:
    """In a process started by :func:`ranks`: wait for rank 0's go; without it (rank 0 failed or
    ended), end quietly, as rank 0 reports why."""
    if os.environ.pop(HELD, None) is None:
        return
    if sys.stdin.readline().strip() != "go":
        os._exit(0)


def release() -> None:
    """In rank 0: let the held processes go on, and watch them until they have met (:func:`connected`):
    if one fails before, rank 0 would wait for it at the rendezvous, so it is stopped as by a SIGTERM.
    Afterwards a dead process is noticed by the waits themselves (:class:`astdp.lit.ddp.Peers`)."""
    if not _children:
        return
    for child in _children:
        try:
            child.stdin.write(b"go\n")
            child.stdin.flush()
        except OSError:
            pass
        _close(child)
    threading.Thread(target=_watch, args=(list(_children),), daemon=True).start()


def connected() -> None:
    """The processes have met (their process group exists): from now on a wait for a dead process
    ends by itself, with one line naming it (:class:`astdp.lit.ddp.Peers`), so the watch stays quiet."""
    _connected.set()


def _watch(children: list[subprocess.Popen]) -> None:
    """Before the processes meet, rank 0 would wait for a dead one until the rendezvous deadline: stop it."""
    while not _ending.is_set():
        for child in children:
            try:
                code = child.wait(1.0)
            except subprocess.TimeoutExpired:
                continue
            if code and not _ending.is_set() and not _connected.is_set():
                print(f"error: process rank {1 + _children.index(child) if child in _children else '?'} (pid "
                      f"{child.pid}) of this data-parallel run ended with exit code {code} before training began; "
                      f"stopping the run", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            children = [c for c in children if c is not child]
            break
        if not children:
            return
