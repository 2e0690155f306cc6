"""astdp: approximate STDP on continuous Hopfield networks."""

import os

# OpenMP threads wait between parallel regions by spinning, then sleeping. A relaxation step is
# dozens of short regions back to back: threads that sleep at once (OMP_WAIT_POLICY=PASSIVE) pay a
# wake-up in every region, and two threads ran 2x slower than one here (docs/BENCHMARKS.md). A
# bounded spin keeps them awake across a step. On a machine shared with other busy processes,
# spinning threads stall each other: set OMP_WAIT_POLICY=PASSIVE there. Only effective when astdp
# is imported before torch; the environment's own settings win.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "200000")

__version__ = "0.1.0"
