"""How long the tied CHNN takes to settle, and how close EP's estimate then is to the loss gradient.

    python scripts/ep_settling.py --root ../shared/data                 # the project's weight draw
    python scripts/ep_settling.py --root ../shared/data --gain 0.41     # x 1/sqrt(6), torch.nn.Linear's draw

A 784-64-10 net (the default model and depth: no lateral block, states in [0, 1], hardsigmoid, inputs set to the pixels, tied
pairs), its initial weights times ``--gain``, 64 MNIST training images, float64. Printed:

1. the free relaxation from a zero state at ``--eps``: the largest state change every 50 steps, and
   the first step at which it falls below 1e-6;
2. for a few weights, EP's symmetric estimate (beta 1e-3, both phases ``T`` steps) against minus the
   finite-difference derivative of the loss ``1/2 |y - s_out|^2`` after ``T`` free steps, for each
   ``T`` of ``--steps``: they agree once both have settled (docs/FINDINGS.md section 28).

The relaxation here is a plain dense loop of the same equations (the engine's is tested against
it in tests/unit/test_ep.py), so that weights can be perturbed one at a time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from astdp.data.mnist import load_torchvision
from astdp.factory import build_system

CONF = Path(__file__).resolve().parents[1] / "conf"

PAIRS = ((784 + 3, 100), (784 + 64 + 2, 784 + 5), (784 + 10, 300))  # (hidden, input), (output, hidden), (hidden, input)


def relax(w, b, x, onehot, steps, eps, beta=0.0, report_every=0):
    """``steps`` steps from a zero state, inputs set to ``x``, outputs nudged with ``beta``."""
    n_in, n_out = x.shape[1], onehot.shape[1]
    s = torch.zeros(x.shape[0], w.shape[0], dtype=w.dtype)
    s[:, :n_in] = x
    settled = None
    for step in range(1, steps + 1):
        z, d = s.clamp(0, 1), ((s >= 0) & (s <= 1)).to(s.dtype)
        f = d * (z @ w.t() + b) - s
        f[:, -n_out:] += beta * (onehot - s[:, -n_out:])
        new = (s + eps * f).clamp(0, 1)
        new[:, :n_in] = x
        change = float((new - s).abs().max())
        s = new
        if settled is None and change < 1e-6:
            settled = step
        if report_every and step % report_every == 0:
            print(f"  step {step}: max change {change:.2e}")
    return s, settled


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="data", help="folder holding MNIST/raw (as data.root)")
    p.add_argument("--gain", type=float, default=1.0, help="initial weights x this")
    p.add_argument("--eps", type=float, default=0.5, help="step size")
    p.add_argument("--steps", type=int, nargs="+", default=[40, 300, 2000], help="phase lengths to compare")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    x, y = load_torchvision(args.root)["train"]
    x, y = x.reshape(len(y), -1)[:64].double(), y[:64]
    x = x / 255.0 if x.max() > 1 else x
    onehot = torch.nn.functional.one_hot(y, 10).double()
    model = yaml.safe_load((CONF / "model" / "astdp.yaml").read_text())
    net = build_system(model, {"name": "ep", "pairs": "tied", "steps": 2, "free_steps": 1}, {"hidden": [64], "lateral": False},
                       784, 10, 64, seed=0).double().net
    w, b = net.dense()
    w = w * args.gain
    print(f"free relaxation from zero, eps {args.eps}, weights x {args.gain}:")
    _, settled = relax(w, b, x, onehot, 1000, args.eps, report_every=50)
    print(f"  settled (max change < 1e-6) at step {settled if settled else 'none within 1000'}")

    def loss(w2, steps):
        s, _ = relax(w2, b, x, onehot, steps, args.eps)
        return float(0.5 * (onehot - s[:, -10:]).pow(2).sum())

    h = 1e-6
    for steps in args.steps:
        z_p = relax(w, b, x, onehot, steps, args.eps, beta=1e-3)[0].clamp(0, 1)
        z_m = relax(w, b, x, onehot, steps, args.eps, beta=-1e-3)[0].clamp(0, 1)
        for i, j in PAIRS:
            up, down = w.clone(), w.clone()
            up[i, j] += h
            up[j, i] += h
            down[i, j] -= h
            down[j, i] -= h
            fd = -(loss(up, steps) - loss(down, steps)) / (2 * h)
            ep = float((z_p[:, i] * z_p[:, j] - z_m[:, i] * z_m[:, j]).sum() / 2e-3)
            print(f"T={steps} weight ({i}, {j}): finite differences {fd:+.5f}, EP {ep:+.5f}")


if __name__ == "__main__":
    main()
