"""A plain training loop over ``System.train_batch`` for probing conv (or dense) nets on MNIST, no harness.

Trains ``--batches`` batches of 128 from the first 15,000 training digits (seeded order) with the
default bounded model and ``learner=supervised``'s MNIST budget (rate 1.5e-3, hidden layers x2, 20
shared free + 40 clamped steps, cosine schedule over the run), and every ``--every`` batches prints
the accuracy on 512 held-out training digits (15,000-15,511), the mean |dz|, the fake-target rate,
the kernels' norms and each layer's mean activity in net_s. ``--model`` / ``--learner`` take JSON
overrides; ``--hidden`` the layers. ``--conv-bias`` and ``--scale-blocks`` change the initial draw.
Two settings the configs do not offer are tried here by replacing an engine method for the run:
``--equal-fake-first`` nudges the first hidden layer's fake targets equally in both networks (the
mean of ``model.beta``; the eager engine only, ``--model '{"engine": "eager"}'``), and ``--kernel-rate
sqrt`` divides a kernel's rate by the square root of its positions instead of their number.
docs/FINDINGS.md sections 37 and 38 were measured with it, e.g.

    python scripts/probe_conv.py --root ../shared/data --model '{"pairs": "own"}' --learner '{"feedback_alpha": 0}'
    python scripts/probe_conv.py --root ../shared/data --hidden '[512]'          # the dense default
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from astdp.data.mnist import load_mnist
from astdp.factory import build_system

CONV_MNIST = '[{"channels": 16, "kernel": 5, "pool": 2}, {"channels": 32, "kernel": 5, "pool": 2}]'
MODEL = dict(activation="hardsigmoid", eps=[0.5, 0.5], beta=[0.4, 0.5], beta_input=[1.0, 1.0], beta_output=[0.0, 1.0],
             bounds=[0.0, 1.0], input_clamp="exact", fake_target=dict(k=50.0, t_c=0.25, m=0.95), engine="auto",
             pairs="tied")


def patch(equal_fake_first: bool, kernel_rate: str) -> None:
    """The two settings above, for this process only."""
    import math

    from astdp.core import blocks, engine

    if kernel_rate == "sqrt":
        blocks.Conv2dPool.positions = property(lambda conv: math.sqrt(conv.conv_shape[1] * conv.conv_shape[2]))
    if not equal_fake_first:
        return

    def fake_beta(relaxer, ws):  # (2, 1, N_hidden): per hidden neuron, the first hidden layer's pair made equal
        if getattr(ws, "probe_fake_beta", None) is None:
            t, pair = relaxer.net.topology, relaxer.fake.beta or relaxer.dyn.beta
            beta = torch.tensor(pair, dtype=ws.dz.dtype).view(2, 1, 1).repeat(1, 1, t.hidden_slice.stop - t.hidden_slice.start)
            beta[:, :, : t.sizes[1]] = sum(pair) / 2
            ws.probe_fake_beta = beta
        return ws.probe_fake_beta

    engine.Relaxer._fake_beta = fake_beta


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data", help="folder holding MNIST/raw")
    p.add_argument("--hidden", default=CONV_MNIST, help="JSON list of hidden layers (default: depth=conv_mnist's)")
    p.add_argument("--model", default="{}", help="JSON overrides of the model (default: bounded, tied pairs)")
    p.add_argument("--learner", default="{}", help="JSON overrides of learner=supervised")
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--kernel-scale", type=float, default=1.0, help="multiplies the kernels' initial draw")
    p.add_argument("--conv-bias", type=float, default=None, help="the conv layers' biases start at this value")
    p.add_argument("--scale-blocks", default="{}", help='JSON {"<post>_from_<pre>": factor}: dense blocks drawn scaled')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--equal-fake-first", action="store_true", help="first hidden layer's fake targets nudged equally")
    p.add_argument("--kernel-rate", choices=("mean", "sqrt"), default="mean")
    return p


def setup(a: argparse.Namespace):
    """The system and the digits: (system, x, y, order), the held-out digits being ``x[15000:]``."""
    patch(a.equal_fake_first, a.kernel_rate)
    torch.set_num_threads(1)
    x, y = (t[:15512] for t in load_mnist(a.root, allow_fallback=False, download=False)[0]["train"])
    model = dict(MODEL)
    for key, value in json.loads(a.model).items():
        model[key] = {**model.get(key, {}), **value} if isinstance(value, dict) else value
    learner = dict(name="supervised", alpha=1.5e-3, hidden_alpha=2.0, steps=60, free_steps=20, shared_free=True,
                   schedule="cosine", total_batches=max(a.batches, 1), test_steps=160, **json.loads(a.learner))
    depth = dict(hidden=json.loads(a.hidden), lateral=False, input_shape=[1, 28, 28])
    system = build_system(model, learner, depth, 784, 10, 128, seed=a.seed)
    for k in system.net.kernels:
        k.mul_(a.kernel_scale)
    names = [system.topology.block_name(k) for k in range(len(system.topology.blocks))]
    for name, factor in json.loads(a.scale_blocks).items():
        system.net.weights[names.index(name)].mul_(factor)
    if a.conv_bias is not None:
        for conv in system.topology.convs:
            system.net.biases[conv.post].fill_(a.conv_bias)
    return system, x, y, torch.randperm(15000, generator=torch.Generator().manual_seed(a.seed))


def train(system, a: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor) -> list[float]:
    """``a.batches`` batches of 128 in ``order``; every ``a.every`` the held-out accuracy is printed and kept."""
    xv, yv = x[15000:], y[15000:]
    t0, curve = time.time(), []
    for b in range(a.batches):
        system.relaxer.plast.batch = b  # the schedule's clock
        start = (b * 128) % (15000 - 128)
        stats = system.train_batch(x[order[start : start + 128]], y[order[start : start + 128]])
        if (b + 1) % a.every == 0 or b == a.batches - 1:
            acc = float(torch.cat([system.predict(xv[i : i + 128]) for i in range(0, 512, 128)]).eq(yv).float().mean())
            curve.append(round(acc, 4))
            norms = [round(float(k.norm()), 2) for k in system.net.kernels]
            t = system.topology
            act = [round(float(system.train_s[0][:, t.slice(l)].mean()), 3) for l in range(1, t.n_layers)]
            print(f"batch {b + 1}: acc {acc:.3f}  |dz| {float(stats.dz_abs):.2e}  fake {float(stats.fake_rate):.3f}  "
                  f"kernel norms {norms}  activity {act}  {time.time() - t0:.0f} s", flush=True)
    return curve


def main() -> None:
    a = parser().parse_args()
    system, x, y, order = setup(a)
    curve = train(system, a, x, y, order)
    print(json.dumps({"hidden": json.loads(a.hidden), "model": json.loads(a.model), "learner": json.loads(a.learner),
                      "kernel_scale": a.kernel_scale, "equal_fake_first": a.equal_fake_first,
                      "kernel_rate": a.kernel_rate, "conv_bias": a.conv_bias, "scale_blocks": json.loads(a.scale_blocks),
                      "seed": a.seed, "curve": curve}))


if __name__ == "__main__":
    main()
