"""scripts/readout_ceiling.py's readouts on small synthetic features: each fits what is linearly separable."""

import importlib
import sys
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _readouts():
    sys.path.insert(0, str(SCRIPTS))
    try:
        return importlib.import_module("readout_ceiling")
    finally:
        sys.path.remove(str(SCRIPTS))


def _features(n, seed):
    """Ten classes, each a bump on its own 4 of 40 non-negative features, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    f = torch.rand(n, 40, generator=gen, dtype=torch.float64) * 0.3
    for c in range(10):
        f[y == c, 4 * c : 4 * c + 4] += 0.7
    return f, y


def test_ridge_logistic_and_the_one_pass_rule_fit_separable_features():
    rc = _readouts()
    f, y = _features(1280, 0)
    fv, yv = _features(512, 1)
    assert rc.ridge(f, y, fv, yv, 0.1) == 1.0
    assert rc.logistic(f, y, fv, yv) == 1.0
    assert rc.one_pass(f, y, fv, yv, 1e-3, 5) > 0.95
    assert rc.one_pass(f, y, fv, yv, 0.0, 5) == float((yv == 0).double().mean())  # no learning: all read as class 0
