"""astdp: approximate STDP on continuous Hopfield networks."""

import os

# OpenMP threads that spin while waiting make multi-threaded runs many times slower on a shared
# machine (measured: docs/BENCHMARKS.md); passive waiting costs nothing when the cores are free.
# Only effective when astdp is imported before torch; the environment's own value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
