"""A fault trial of a data-parallel run: start it, kill one process once it has saved a checkpoint,
and see how the others end; then resume from the checkpoint it names.

    python scripts/fault_trial.py --kill-rank 1 -- trainer.strategy.sync=step data.root=../shared/data \
        data.n_train=30000 data.max_epochs=3 data.batch_size=64 threads=1 logger=none

Everything after ``--`` goes to ``train.py trainer=ddp trainer.devices=2``. Prints one JSON line:
``ended_s`` (seconds from the kill until every other process had ended; null: still running after
``--deadline``, and they were then killed), ``exit_code`` (rank 0's, or of the survivor), ``last_lines``
(the last lines of stderr), ``shm_left`` (files of the run left in ``/dev/shm``), ``left`` (processes
of the run still alive), ``resumed_exit_code`` (with ``--resume``: the same command with
``ckpt_path=<run>/checkpoints/last.ckpt``).

``--torchrun``: the run is started by ``torchrun --standalone --nproc_per_node=2 --max-restarts=K``
with ``ckpt_path=last``; after the kill, torchrun restarts the group, which resumes by itself. The
script waits (``--deadline``) for the launch to end and prints its exit code and test accuracy;
``--no-kill`` runs the same command uninterrupted, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            found.append(c)
            todo.append(c)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie has ended
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def rank_pid(root: int, rank: int) -> int | None:
    """The process of ``rank``: ``root`` for 0, else the python descendant whose command line names it."""
    if rank == 0:
        return root
    for pid in descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"_rank{rank}" in cmd or f"LOCAL_RANK={rank}" in cmd:
            return pid
    try:  # started by Lightning or torchrun: the environment says which rank
        for pid in descendants(root):
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"LOCAL_RANK={rank}".encode() in env:
                return pid
    except OSError:
        pass
    return None


def shm_files() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("astdp-*")} if Path("/dev/shm").is_dir() else set()


def _finish(command: list[str], run_dir: Path, args) -> int:
    """Start ``command``; unless ``--no-kill``, kill ``--kill-rank`` once a checkpoint exists; wait for
    the launch to end by itself; report its exit code, test accuracy and wall time."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    err_path = run_dir.parent / f"{run_dir.name}.stderr"
    start = time.perf_counter()
    killed = None
    with open(err_path, "w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if not args.no_kill:
            while not ckpt.exists() and proc.poll() is None:
                time.sleep(0.2)
            time.sleep(args.after)
            victim = rank_pid(proc.pid, args.kill_rank)
            if victim is not None and proc.poll() is None:
                os.kill(victim, signal.SIGKILL)
                killed = victim
        try:
            proc.wait(timeout=args.deadline)
        except subprocess.TimeoutExpired:
            for p in [*descendants(proc.pid), proc.pid]:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            proc.wait()
    metrics = run_dir / "metrics.json"
    m = json.loads(metrics.read_text()) if metrics.exists() else {}
    lines = [ln for ln in err_path.read_text().splitlines() if ln.strip()]
    print(json.dumps({"killed_pid": killed, "exit_code": proc.returncode, "test_acc": m.get("test/acc"),
                      "run_status": m.get("run/status"), "wall_s": round(time.perf_counter() - start, 1),
                      "global_step": m.get("trainer/global_step"), "last_lines": lines[-3:],
                      "run_dir": str(run_dir)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kill-rank", type=int, default=1)
    ap.add_argument("--after", type=float, default=3.0, help="seconds after the first last.ckpt appears")
    ap.add_argument("--deadline", type=float, default=120.0, help="seconds the others get to end")
    ap.add_argument("--run-dir", type=Path, default=None, help="hydra.run.dir (default: a new folder in outputs/)")
    ap.add_argument("--resume", action="store_true", help="then resume from the checkpoint and report its exit code")
    ap.add_argument("--torchrun", action="store_true",
                    help="start through torchrun --standalone with ckpt_path=last; the kill should restart the group")
    ap.add_argument("--max-restarts", type=int, default=1, help="with --torchrun")
    ap.add_argument("--no-kill", action="store_true", help="the same run, uninterrupted (for comparison)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    run_dir = (args.run_dir or ROOT / "outputs" / "fault_trials" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    before_shm = shm_files()
    if args.torchrun:
        # each restart its own store: torch shares the agent's store with the workers, whose keys outlive a
        # failed attempt (pytorch/pytorch#135712)
        os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                  f"--max-restarts={args.max_restarts}", str(ROOT / "train.py"), "ckpt_path=last"]
    else:
        launch = [sys.executable, str(ROOT / "train.py")]
    command = [*launch, "trainer=ddp", "trainer.devices=2", *args.overrides, f"hydra.run.dir={run_dir}"]
    if args.torchrun or args.no_kill:  # the whole launch must finish by itself
        return _finish(command, run_dir, args)
    err_path = run_dir.parent / f"{run_dir.name}.stderr"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(err_path, "w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        while not ckpt.exists() and proc.poll() is None:
            time.sleep(0.2)
        if proc.poll() is not None:
            print(json.dumps({"error": f"the run ended before its first checkpoint (exit {proc.returncode})",
                              "stderr": err_path.read_text()[-2000:]}))
            return 1
        time.sleep(args.after)
        victim = rank_pid(proc.pid, args.kill_rank)
        everyone = [proc.pid, *descendants(proc.pid)]
        if victim is None:
            proc.kill()
            print(json.dumps({"error": f"no process of rank {args.kill_rank} found"}))
            return 1
        os.kill(victim, signal.SIGKILL)
        killed_at = time.perf_counter()
        others = [p for p in everyone if p != victim]
        ended_s = None
        while time.perf_counter() - killed_at < args.deadline:
            proc.poll()
            if not any(alive(p) for p in others):
                ended_s = time.perf_counter() - killed_at
                break
            time.sleep(0.1)
        left = [p for p in others if alive(p)]
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        proc.wait()
    lines = [ln for ln in err_path.read_text().splitlines() if ln.strip()]
    result = {"killed_rank": args.kill_rank, "ended_s": None if ended_s is None else round(ended_s, 2),
              "exit_code": proc.returncode, "last_lines": lines[-4:], "shm_left": sorted(shm_files() - before_shm),
              "left": left, "run_dir": str(run_dir)}
    if args.resume:
        resumed = subprocess.run([*command, f"ckpt_path={ckpt}"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, cwd=ROOT)
        result["resumed_exit_code"] = resumed.returncode
        if resumed.returncode:
            result["resumed_stderr"] = resumed.stderr[-1500:]
        metrics = run_dir / "metrics.json"
        if metrics.exists():
            result["resumed_test_acc"] = json.loads(metrics.read_text()).get("test/acc")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
