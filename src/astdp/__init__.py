"""astdp: approximate STDP on continuous Hopfield networks."""

import os

# OpenMP threads wait between parallel regions by spinning for a while, then sleeping. A relaxation
# step is dozens of short regions back to back: threads put to sleep at once (OMP_WAIT_POLICY=PASSIVE)
# pay a wake-up in each and two threads run slower than one; threads that spin without end
# (ACTIVE, or the default count) stall every region when another busy process shares the cores.
# A bounded spin (about a tenth of a millisecond) keeps the threads awake across a step and lets
# them sleep between batches (docs/BENCHMARKS.md). Only effective when astdp is imported before
# torch; the environment's own settings win.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")

__version__ = "0.1.0"
