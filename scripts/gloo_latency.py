"""What one gloo collective costs between two processes on this machine, by message size.

    python scripts/gloo_latency.py [--repeats 300]

Prints, per payload, the mean time of an ``all_gather`` and an ``all_reduce`` (one thread per
process, after 20 untimed calls). A relaxation step of the default net takes about a millisecond,
so a collective per step costs as much as the step whenever these times approach it; that is why
``sync=step`` gathers its factors through shared memory on one machine (:class:`astdp.lit.ddp.SharedGather`).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

PAYLOADS = (4, 16 * 1024, 64 * 1024, 256 * 1024)  # bytes per process


def _mean_seconds(call, repeats: int) -> float:
    for _ in range(20):
        call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def _worker(rank: int, port: int, repeats: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    for nbytes in PAYLOADS:
        x = torch.zeros(nbytes // 4)
        parts = [torch.empty_like(x) for _ in range(2)]
        gather = _mean_seconds(lambda: dist.all_gather(parts, x), repeats)
        reduce = _mean_seconds(lambda: dist.all_reduce(x), repeats)
        if rank == 0:
            print(f"{nbytes:>8} bytes: all_gather {1e3 * gather:.3f} ms, all_reduce {1e3 * reduce:.3f} ms", flush=True)
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--port", type=int, default=29655)
    args = p.parse_args()
    mp.start_processes(_worker, args=(args.port, args.repeats), nprocs=2, start_method="spawn")


if __name__ == "__main__":
    main()
