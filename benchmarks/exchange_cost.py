"""What ``sync=step``'s exchange of factors costs a process by itself, with no other process to meet.

    python -m benchmarks.exchange_cost [--engine eager fused] [--batches 20] [--rounds 2]

One process trains 784-512-10 (the default model, 64 samples per batch, one thread) twice in turns:
alone, and with a stand-in for two processes' exchange (:class:`Mirror`: "the other process" sent
exactly this process's parts, so every step runs the products of the factor path over a gathered
batch of 128 and copies as many bytes as a real exchange reads). Prints ms per step for both and
their difference: the factor path's own cost, which ``benchmarks.scaling``'s two processes add to
their waits for each other.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.scaling import build


class Mirror:
    """A two-process ``reduce_hook`` in one process: everyone's parts are this process's."""

    world = 2

    def __init__(self) -> None:
        self._pending = None

    def factors(self, batch: int, factor_elements: int, dense_elements: int) -> bool:
        return True

    def gather(self, parts, outs) -> None:
        self.gather_start(parts, outs)
        self.gather_wait()

    def gather_start(self, parts, outs, sums=(), sum_outs=()) -> None:
        self._pending = (parts, outs, sums, sum_outs)

    def gather_wait(self) -> None:
        parts, outs, sums, sum_outs = self._pending
        for part, out in zip(parts, outs):
            both = out.view(2, *part.shape)
            both[0].copy_(part)
            both[1].copy_(part)
        for part, out in zip(sums, sum_outs):
            torch.add(part, part, out=out)


def ms_per_step(engine: str, hook, batches: int, batch: int = 64) -> float:
    system, steps = build(batch, [512], None, engine)
    system.relaxer.reduce_hook = hook
    gen = torch.Generator().manual_seed(0)
    data = [(torch.rand(batch, 784, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
            for _ in range(batches + 1)]
    system.train_batch(*data[0])  # warm-up (and the fused engine's compile)
    start = time.perf_counter()
    for k, (x, y) in enumerate(data[1:]):
        system.relaxer.plast.batch = k
        system.train_batch(x, y)
    return 1e3 * (time.perf_counter() - start) / (batches * steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", nargs="+", choices=("eager", "fused"), default=["eager", "fused"])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2, help="measurements in turns; the fastest of each counts")
    args = p.parse_args()
    torch.set_num_threads(1)
    for engine in args.engine:
        alone, mirror = float("inf"), float("inf")
        for _ in range(args.rounds):
            alone = min(alone, ms_per_step(engine, None, args.batches))
            mirror = min(mirror, ms_per_step(engine, Mirror(), args.batches))
        print(f"{engine}: alone {alone:.3f} ms/step, with the factor path over two processes' batch "
              f"{mirror:.3f} ms/step (+{mirror - alone:.3f})", flush=True)


if __name__ == "__main__":
    main()
