"""astdp: approximate STDP on continuous Hopfield networks."""

# OpenMP threads wait between parallel regions by spinning, then sleeping. A relaxation step is
# dozens of short regions back to back, and its compiled pass several more: threads put to sleep at
# once (OMP_WAIT_POLICY=PASSIVE) or after a short spin pay a wake-up in each, and two threads then
# ran slower than one (docs/BENCHMARKS.md). astdp therefore leaves OpenMP's own long spin in place.
# On a machine shared with other busy processes, spinning threads stall each other: export
# OMP_WAIT_POLICY=PASSIVE there (or run one thread per process, where no thread waits).

__version__ = "0.1.0"
