"""Eager against fused engine on one net: full training batches alternating in one process.

    python scripts/engine_ab.py                          # 784-512-10, the default 20 + 40 steps, one thread
    python scripts/engine_ab.py --threads 2 --hidden 512 512 512 --steps 240 --free-steps 80

Both systems are the default bounded model with fake targets on, built from the same seed, trained
on the same random batch; after two warm-up batches each, the best of ``--rounds`` batches of each
is printed, and their ratio. ``compile``: the fused engine's first batch less its best one (the
compile of its step; run with ``TORCHINDUCTOR_CACHE_DIR=$(mktemp -d)`` for an empty cache).
``--profile``: then the self time per operation of three batches of each engine (``torch.profiler``).
"""

from __future__ import annotations

import argparse
import time

import torch

from astdp.factory import build_system

MODEL = dict(activation="hardsigmoid", eps=[0.5, 0.5], beta=[0.4, 0.5], beta_input=[1.0, 1.0], beta_output=[0.0, 1.0],
             bounds=[0.0, 1.0], input_clamp="exact", fake_target=dict(enabled=True, k=50.0, t_c=0.25, m=0.95))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden", type=int, nargs="+", default=[512])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--free-steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--profile", action="store_true", help="print where each engine's batches spend their time")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    learner = {"name": "supervised", "alpha": 1e-3, "steps": args.steps, "free_steps": args.free_steps,
               "schedule": "constant"}
    systems = [build_system({**MODEL, "engine": engine}, learner, {"hidden": args.hidden, "lateral": False}, 784, 10, 128)
               for engine in ("eager", "fused")]
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(128, 784, generator=g), torch.randint(0, 10, (128,), generator=g)
    first = []
    for sysm in systems:
        t0 = time.perf_counter()
        sysm.train_batch(x, y)
        first.append(time.perf_counter() - t0)
        sysm.train_batch(x, y)
    best = [float("inf")] * 2
    for _ in range(args.rounds):
        for i, sysm in enumerate(systems):
            t0 = time.perf_counter()
            sysm.train_batch(x, y)
            best[i] = min(best[i], time.perf_counter() - t0)
    print(f"784-{'-'.join(map(str, args.hidden))}-10, {args.threads} thread(s), {args.steps} steps: "
          f"eager {best[0] * 1e3:.1f} ms, fused {best[1] * 1e3:.1f} ms per batch, eager / fused {best[0] / best[1]:.2f}; "
          f"compile {first[1] - best[1]:.1f} s")
    if args.profile:
        from torch.profiler import profile

        for engine, sysm in zip(("eager", "fused"), systems):
            with profile() as prof:
                for _ in range(3):
                    sysm.train_batch(x, y)
            print(f"{engine} engine, three batches:")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
