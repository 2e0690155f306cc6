"""Speed benchmarks (run as modules, e.g. ``python -m benchmarks.relax``)."""
