"""Data-parallel scaling of aSTDP training (``sync=step`` and ``sync=periodic``) on this machine's CPUs.

    python -m benchmarks.scaling                       # 784-512-10, 64 samples per process, 60 steps per batch
    python -m benchmarks.scaling --batch 128 --batches 4 --processes 1 2 --sync-every 2

Each process trains the default model (``model=astdp``, supervised, the MNIST schedule's steps per
batch) on ``--batch`` random inputs per batch, one thread per process, without Lightning around it.
With ``sync=step`` it sums every relaxation step's weight and bias updates over the processes with
one ``all_reduce`` (gloo), as ``trainer=ddp`` does (:class:`astdp.lit.ddp.AllReduceSum`); with
``sync=periodic`` each process learns on its own (the once-per-phase path of one process) and every
``--sync-every`` batches, and after the last one, the weight changes since the last synchronisation
are summed (:class:`astdp.lit.ddp.PeriodicSum`; one synchronisation after the warm-up batch, untimed,
puts the processes in step). Printed per process count N (``sync=step``; the ``p<N>_periodic_*``
figures beside them):

- ``samples_per_s``: N x batch x batches / the slowest process's wall time (after one warm-up batch);
- ``allreduce_share``: the share of that time spent in the hook (packing, all_reduce, unpacking);
- ``bytes_per_step``: the payload one process contributes per step (the updates of the blocks that
  learn and of all biases, float32; ``periodic_bytes_per_sync``: every weight and bias);
  a ring all_reduce sends ``2 (N - 1) / N`` times that per process;
- ``speedup``: samples/s over the one-process figure (the same batch per process: weak scaling);
- ``comm_s``: the slowest process's seconds in the all_reduce (packing included) over the timed
  batches; ``periodic_syncs``: the synchronisations timed.

With a reduce hook the relaxation applies every block's update at every step; one process normally
runs the blocks from exactly clamped inputs once per phase instead (``Relaxer.defer_clamped``), so
the one-process figure of that per-step path (``p1_per_step_path_*``) is printed too: it separates
what the processes lose to that path from what they lose to the messages.

Other processes on the machine slow every figure alike only if they leave a core per process;
``cores`` and the load average at the start are printed with the figures. The last line printed is
one JSON object with all figures; at the largest process count N it also holds ``speedup_step`` and
``speedup_periodic`` (N processes' samples/s over one process's, one thread each) and, under ``step``
and ``periodic``, each mode's samples/s, bytes per step (per sync) and seconds in communication.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def build(batch: int, hidden: list[int], steps: int | None):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from astdp.factory import build_system

    conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        overrides = ["logger=none", "output_dir=.", f"depth.hidden=[{','.join(map(str, hidden))}]"]
        if steps:
            overrides += [f"learner.steps={steps}", f"learner.free_steps={max(1, steps // 3)}"]
        cfg = OmegaConf.to_container(compose("train", overrides=overrides), resolve=True)
    system = build_system(cfg["model"], cfg["learner"], cfg["depth"], 784, 10, batch, seed=0)
    system.relaxer.plast.total_batches = 10**6
    return system, int(cfg["learner"]["steps"])


def worker(rank: int, world: int, port: int, args, results, mode: str = "step") -> None:
    """``mode``: ``step``, ``periodic`` or ``per_step_path`` (one process on the path a reduce hook takes)."""
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    from astdp.lit.ddp import AllReduceSum, PeriodicSum

    system, steps = build(args.batch, args.hidden, args.steps)
    hook = AllReduceSum() if world > 1 and mode == "step" else None
    system.relaxer.reduce_hook = hook
    system.relaxer.defer_clamped = mode != "per_step_path"
    periodic = PeriodicSum(list(system.parameters())) if world > 1 and mode == "periodic" else None
    comm = hook or periodic
    gen = torch.Generator().manual_seed(rank)
    data = [(torch.rand(args.batch, 784, generator=gen), torch.randint(0, 10, (args.batch,), generator=gen))
            for _ in range(args.batches + 1)]
    system.train_batch(*data[0])  # warm-up
    if periodic is not None:
        periodic.sync()
    if comm is not None:
        comm.calls, comm.bytes, comm.seconds = 0, 0, 0.0
        dist.barrier()
    start = time.perf_counter()
    for k, (x, y) in enumerate(data[1:]):
        system.relaxer.plast.batch = k
        system.train_batch(x, y)
        if periodic is not None and ((k + 1) % args.sync_every == 0 or k + 1 == args.batches):
            periodic.sync()
    if comm is not None:
        dist.barrier()
    wall = time.perf_counter() - start
    results.put({"rank": rank, "wall": wall, "steps": steps, "calls": comm.calls if comm else 0,
                 "bytes": comm.bytes if comm else 0, "comm_s": comm.seconds if comm else 0.0})
    if world > 1:
        dist.destroy_process_group()


def measure(world: int, args, port: int, mode: str = "step") -> dict:
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.start_processes(worker, args=(world, port, args, results, mode), nprocs=world, start_method="spawn")
    rows = [results.get() for _ in range(world)]
    wall = max(r["wall"] for r in rows)
    steps = rows[0]["steps"] * args.batches
    out = {"processes": world, "batch_per_process": args.batch, "samples_per_s": world * args.batch * args.batches / wall,
           "s_per_step": wall / steps}
    if world > 1:
        comm_s = max(r["comm_s"] for r in rows)
        per_call = rows[0]["bytes"] // max(1, rows[0]["calls"])
        out.update(comm_s=comm_s, allreduce_share=comm_s / wall)
        if mode == "step":
            out.update(bytes_per_step=per_call, allreduce_ms_per_step=1e3 * comm_s / steps)
        else:
            out.update(bytes_per_sync=per_call, syncs=rows[0]["calls"])
    return out


def describe(world: int, mode: str, args, row: dict) -> str:
    """One printed line per measurement."""
    line = (f"{world} process(es), {args.batch} samples each, sync={mode}: {row['samples_per_s']:.1f} samples/s, "
            f"{1e3 * row['s_per_step']:.2f} ms/step")
    if world > 1:
        line += f", all_reduce {100 * row['allreduce_share']:.1f} % of the time ({row['comm_s']:.3f} s, "
        line += (f"{row['allreduce_ms_per_step']:.2f} ms/step), {row['bytes_per_step']} bytes/step" if mode == "step"
                 else f"{row['syncs']} sync(s)), {row['bytes_per_sync']} bytes/sync")
    return line + (f", speedup {row['speedup']:.2f}" if "speedup" in row else "")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=64, help="samples per process and batch")
    p.add_argument("--batches", type=int, default=10, help="timed batches (after one warm-up)")
    p.add_argument("--sync-every", type=int, default=10,
                   help="sync=periodic: batches between two synchronisations (as trainer.strategy.sync_every)")
    p.add_argument("--hidden", type=int, nargs="+", default=[512])
    p.add_argument("--steps", type=int, default=None, help="relaxation steps per batch (default: the MNIST schedule's)")
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args(argv)
    if args.batches < 1 or args.sync_every < 1:
        p.error("--batches and --sync-every must be >= 1")
    path = measure(1, args, args.port - 1, mode="per_step_path")
    print(f"1 process, {args.batch} samples, every block updated at every step (the path a reduce hook "
          f"takes): {path['samples_per_s']:.1f} samples/s, {1e3 * path['s_per_step']:.2f} ms/step", flush=True)
    figures = {"cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "net": f"784-{'-'.join(map(str, args.hidden))}-10"}
    base = None
    for k, world in enumerate(args.processes):
        for mode in ("step", "periodic") if world > 1 else ("step",):
            row = measure(world, args, args.port + 2 * k + (mode == "periodic"), mode)
            base = base or (row["samples_per_s"] if world == 1 else None)
            if base:
                row["speedup"] = row["samples_per_s"] / base
            print(describe(world, mode, args, row), flush=True)
            prefix = f"p{world}_" if mode == "step" else f"p{world}_periodic_"
            figures.update({prefix + key: value for key, value in row.items() if key != "processes"})
    figures.update({f"p1_per_step_path_{key}": value for key, value in path.items() if key != "processes"})
    top = max(args.processes)
    if top > 1 and base:
        st, pe = f"p{top}_", f"p{top}_periodic_"
        figures.update({
            "speedup_processes": top, "speedup_step": figures[st + "speedup"], "speedup_periodic": figures[pe + "speedup"],
            "step": {"samples_per_s": figures[st + "samples_per_s"], "bytes_per_step": figures[st + "bytes_per_step"],
                     "comm_s": figures[st + "comm_s"]},
            "periodic": {"samples_per_s": figures[pe + "samples_per_s"], "bytes_per_sync": figures[pe + "bytes_per_sync"],
                         "syncs": figures[pe + "syncs"], "sync_every": args.sync_every, "comm_s": figures[pe + "comm_s"]}})
    print(json.dumps(figures), flush=True)
    return figures


if __name__ == "__main__":
    main()
