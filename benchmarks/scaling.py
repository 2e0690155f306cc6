"""Data-parallel scaling of aSTDP training (``sync=step`` and ``sync=periodic``) on this machine's CPUs.

    python -m benchmarks.scaling                       # 784-512-10, 64 samples per process, 60 steps per batch
    python -m benchmarks.scaling --batch 128 --batches 4 --processes 1 2 --sync-every 2
    python -m benchmarks.scaling --engine fused        # the compiled step in every process

Each process trains the default model (``model=astdp``, supervised, the MNIST schedule's steps per
batch) on ``--batch`` random inputs per batch, one thread per process, without Lightning around it.
With ``sync=step`` it sums every relaxation step's weight and bias updates over the processes, as
``trainer=ddp`` does (:class:`astdp.lit.ddp.AllReduceSum`): ``step`` with the exchange ``auto``
chooses (the factors ``dz`` and ``z_s`` gathered, when they are fewer bytes), ``step_dense`` always
sums the dense updates with one ``all_reduce`` (gloo); with
``sync=periodic`` each process learns on its own (the once-per-phase path of one process) and every
``--sync-every`` batches, and after the last one, the weight changes since the last synchronisation
are summed (:class:`astdp.lit.ddp.PeriodicSum`; one synchronisation after the warm-up batch, untimed,
puts the processes in step). A sum arrives at the next synchronisation while the processes go on
learning, as with ``trainer.strategy.overlap=true``; ``--blocking`` waits for each. Printed per
process count N (``sync=step``; the ``p<N>_periodic_*`` figures beside them):

- ``samples_per_s``: N x batch x batches / the slowest process's wall time (after one warm-up batch),
  the best of ``--rounds`` measurements taken in turns (other jobs on a shared machine slow single
  rounds by tens of per cent);
- ``allreduce_share``: the share of that time spent in the hook (packing, all_reduce, unpacking);
- ``bytes_per_step``: the payload one process contributes per step (dense: the updates of the blocks
  that learn and of all biases, float32; factors: the ``dz`` and ``z_s`` columns the gathered
  updates need, the own updates of blocks cheaper to send dense, and the column sums of ``dz``;
  ``periodic_bytes_per_sync``: every weight and bias that changes, a flag for each other); a ring
  all_reduce sends ``2 (N - 1) / N`` times the dense payload per process, an all_gather ``N - 1``
  times the factors;
  ``phase_bytes``: the inputs gathered once per phase (factors);
- ``speedup``: samples/s over the one-process figure (the same batch per process: weak scaling);
  ``speedup_step_combined``: ``sync=step`` over one process with the combined batch (``p1_combined_*``,
  N x ``--batch`` samples), the run it equals step for step: what a user gains in samples/s at the
  same learning;
- ``comm_s``: the slowest process's seconds in the all_reduce (packing included) over the timed
  batches; ``periodic_syncs``: the synchronisations timed.

With dense sums the relaxation applies every block's update at every step; one process (and the
exchange of factors) runs the blocks from exactly clamped inputs once per phase instead
(``Relaxer.defer_clamped``), so the one-process figure of that per-step path (``p1_per_step_path_*``)
is printed too: it separates what dense sums lose to that path from what they lose to the messages.

Other processes on the machine slow every figure alike only if they leave a core per process;
``cores`` and the load average at the start are printed with the figures. The last line printed is
one JSON object with all figures; at the largest process count N it also holds ``speedup_step``,
``speedup_step_dense`` and ``speedup_periodic`` (N processes' samples/s over one process's, one
thread each) and, under ``step``, ``step_dense`` and ``periodic``, each mode's samples/s, bytes per
step (per sync), the exchange it used and seconds in communication.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def build(batch: int, hidden: list[int], steps: int | None, engine: str = "eager"):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from astdp.factory import build_system

    conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        overrides = ["logger=none", "output_dir=.", f"depth.hidden=[{','.join(map(str, hidden))}]",
                     f"model.engine={engine}"]
        if steps:
            overrides += [f"learner.steps={steps}", f"learner.free_steps={max(1, steps // 3)}"]
        cfg = OmegaConf.to_container(compose("train", overrides=overrides), resolve=True)
    system = build_system(cfg["model"], cfg["learner"], cfg["depth"], 784, 10, batch, seed=0)
    system.relaxer.plast.total_batches = 10**6
    system.choose_engine()
    return system, int(cfg["learner"]["steps"])


def worker(rank: int, world: int, port: int, args, results, mode: str = "step") -> None:
    """``mode``: ``step`` (exchange auto), ``step_dense``, ``periodic`` or ``per_step_path`` (one
    process on the path a dense reduce hook takes)."""
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    from astdp.lit.ddp import AllReduceSum, PeriodicSum

    system, steps = build(args.batch, args.hidden, args.steps, args.engine)
    step = mode.startswith("step")
    hook = AllReduceSum(exchange="dense" if mode == "step_dense" else "auto") if world > 1 and step else None
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
        comm.phase_bytes = 0
        dist.barrier()
    start = time.perf_counter()
    for k, (x, y) in enumerate(data[1:]):
        system.relaxer.plast.batch = k
        system.train_batch(x, y)
        if periodic is not None and ((k + 1) % args.sync_every == 0 or k + 1 == args.batches):
            periodic.sync(overlap=not args.blocking and k + 1 < args.batches)
    if comm is not None:
        dist.barrier()
    wall = time.perf_counter() - start
    results.put({"rank": rank, "wall": wall, "steps": steps, "calls": comm.calls if comm else 0,
                 "bytes": comm.bytes if comm else 0, "comm_s": comm.seconds if comm else 0.0,
                 "phase_bytes": getattr(comm, "phase_bytes", 0), "exchange": getattr(comm, "exchanged", None),
                 "engine": system.relaxer.engine})
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
           "s_per_step": wall / steps, "engine": rows[0]["engine"]}
    if world > 1:
        comm_s = max(r["comm_s"] for r in rows)
        per_call = rows[0]["bytes"] // max(1, rows[0]["calls"])
        out.update(comm_s=comm_s, allreduce_share=comm_s / wall)
        if mode.startswith("step"):
            out.update(bytes_per_step=per_call, allreduce_ms_per_step=1e3 * comm_s / steps,
                       exchange=rows[0]["exchange"], phase_bytes=rows[0]["phase_bytes"] // args.batches)
        else:
            out.update(bytes_per_sync=per_call, syncs=rows[0]["calls"])
    return out


MODES = ("step", "step_dense", "periodic")  # at more than one process
# of the JSON keys, after p<N>_
PREFIX = {"step": "", "step_dense": "dense_", "periodic": "periodic_", "combined": "combined_"}


def describe(world: int, mode: str, args, row: dict) -> str:
    """One printed line per measurement."""
    how = "the combined batch" if mode == "combined" else f"sync={mode}"
    line = (f"{world} process(es), {args.batch} samples each, {how}: {row['samples_per_s']:.1f} samples/s, "
            f"{1e3 * row['s_per_step']:.2f} ms/step")
    if world > 1:
        line += f", communication {100 * row['allreduce_share']:.1f} % of the time ({row['comm_s']:.3f} s, "
        line += (f"{row['allreduce_ms_per_step']:.2f} ms/step), {row['exchange']}: {row['bytes_per_step']} bytes/step"
                 if mode.startswith("step") else f"{row['syncs']} sync(s)), {row['bytes_per_sync']} bytes/sync")
    return line + (f", speedup {row['speedup']:.2f}" if "speedup" in row else "")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=64, help="samples per process and batch")
    p.add_argument("--batches", type=int, default=30, help="timed batches (after one warm-up)")
    p.add_argument("--sync-every", type=int, default=1,
                   help="sync=periodic: batches between two synchronisations (as trainer.strategy.sync_every)")
    p.add_argument("--blocking", action="store_true",
                   help="sync=periodic: every process waits for each sum (trainer.strategy.overlap=false)")
    p.add_argument("--hidden", type=int, nargs="+", default=[512])
    p.add_argument("--steps", type=int, default=None, help="relaxation steps per batch (default: the MNIST schedule's)")
    p.add_argument("--engine", choices=("eager", "fused"), default="eager",
                   help="every process's engine (fused: compiled in the untimed warm-up batch)")
    p.add_argument("--rounds", type=int, default=2,
                   help="every measurement this many times, in turns; the fastest of each counts (shared machines)")
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args(argv)
    if args.batches < 1 or args.sync_every < 1 or args.rounds < 1:
        p.error("--batches, --sync-every and --rounds must be >= 1")
    path = measure(1, args, args.port, mode="per_step_path")
    print(f"1 process, {args.batch} samples, every block updated at every step (the path dense sums "
          f"take): {path['samples_per_s']:.1f} samples/s, {1e3 * path['s_per_step']:.2f} ms/step", flush=True)
    figures = {"cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "engine": path["engine"],
               "net": f"784-{'-'.join(map(str, args.hidden))}-10"}
    top = max(args.processes)
    runs = [(world, mode) for world in args.processes for mode in (MODES if world > 1 else ("step",))]
    # one process with the combined batch of the largest count: the run that sync=step equals
    combined = argparse.Namespace(**{**vars(args), "batch": top * args.batch})
    if top > 1:
        runs.insert(1, (1, "combined"))

    def args_of(mode: str) -> argparse.Namespace:
        return combined if mode == "combined" else args
    best: dict[tuple[int, str], dict] = {}
    port = args.port
    for r in range(args.rounds):  # the runs in turns; each keeps its fastest round
        for world, mode in runs:
            port += 1
            row = measure(world, args_of(mode), port, "step" if mode == "combined" else mode)
            if (world, mode) not in best or row["samples_per_s"] > best[world, mode]["samples_per_s"]:
                best[world, mode] = row
            print(f"round {r + 1}: " + describe(world, mode, args_of(mode), row), flush=True)
    base = best.get((1, "step"), {}).get("samples_per_s")
    for world, mode in runs:
        row = best[world, mode]
        if base:
            row["speedup"] = row["samples_per_s"] / base
        print(("best: " if args.rounds > 1 else "") + describe(world, mode, args_of(mode), row), flush=True)
        prefix = f"p{world}_{PREFIX[mode]}"
        figures.update({prefix + key: value for key, value in row.items() if key not in ("processes", "engine")})
    figures.update({f"p1_per_step_path_{key}": value for key, value in path.items()
                    if key not in ("processes", "engine")})
    if top > 1 and base:
        figures["speedup_processes"] = top
        figures["speedup_step_combined"] = figures[f"p{top}_samples_per_s"] / figures["p1_combined_samples_per_s"]
        for mode in MODES:
            pre = f"p{top}_{PREFIX[mode]}"
            figures[f"speedup_{mode}"] = figures[pre + "speedup"]
            keys = (("bytes_per_step", "phase_bytes", "exchange") if mode.startswith("step")
                    else ("bytes_per_sync", "syncs"))
            figures[mode] = {"samples_per_s": figures[pre + "samples_per_s"], "comm_s": figures[pre + "comm_s"],
                             **{key: figures[pre + key] for key in keys}}
        figures["periodic"].update(sync_every=args.sync_every, overlap=not args.blocking)
    print(json.dumps(figures), flush=True)
    return figures


if __name__ == "__main__":
    main()
