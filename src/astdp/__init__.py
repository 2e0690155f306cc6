"""astdp: approximate STDP on continuous Hopfield networks."""

__version__ = "0.1.0"
