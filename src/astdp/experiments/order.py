"""Relationships between states (§3.2.4, Tables 3 and 4).

Eight one-hot patterns; input = output = the pattern. A sequence visits the patterns in the order
``i -> (i + stride) mod 8``: stride 1 is "order 81", stride 3 "order 83". Because states are never
re-initialised, the state left by one pattern is where the next one starts, so a net trained on one
order can learn to make *its* transitions quickly.

Training: ``batch`` parallel sequences (slot ``b`` starts at pattern ``b``) in the training order,
``train_steps`` relaxation steps per pattern, the learner's schedule (``unsupervised``: inputs and
outputs targeted the whole time; ``supervised``: Algorithm 2). Testing: learning off, inputs
clamped, outputs free, states persistent across the sequence (a fresh state per test run), each
order with each step budget; accuracy = ``argmax`` of the output states == pattern index, over
every presentation of ``test_cycles`` cycles.

The paper's printed constants learn this slowly; the default here is the Equilibrium-Propagation
style setting that learns it in seconds: inputs clamped hard (``beta_input = (1, 1)``) and the
outputs free in net_s and nudged in net_l (``beta_output = (0, 0.5)``).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from astdp.experiments import toy

N = 8
ORDERS = {"81": 1, "83": 3}


def sequence(stride: int, length: int, batch: int) -> torch.Tensor:
    """(length, batch) pattern indices: slot ``b`` starts at ``b mod 8`` and steps by ``stride``."""
    t = torch.arange(length).view(-1, 1)
    b = torch.arange(batch).view(1, -1)
    return (b + stride * t) % N


def build(model: Mapping[str, Any], learner: Mapping[str, Any], depth: Mapping[str, Any], batch: int, seed: int):
    return toy.build(model, learner, depth, n_in=N, n_out=N, batch=batch, seed=seed)


def train(sys_, stride: int, cycles: int) -> list[float]:
    """``cycles`` cycles of the sequence with ``stride``, one pattern per batch; mean |dz| per batch."""
    eye = torch.eye(N)
    seq = sequence(stride, cycles * N, sys_.batch_size)
    return toy.train(sys_, ((eye[idx], idx) for idx in seq), len(seq))


def evaluate(sys_, stride: int, steps: int, cycles: int, fake: bool) -> float:
    """Accuracy over ``cycles`` cycles of the sequence with ``stride``, ``steps`` per pattern."""
    eye = torch.eye(N)
    state = sys_.new_state()
    correct = total = 0
    for idx in sequence(stride, cycles * N, sys_.batch_size):
        sys_.relaxer.run(state, sys_.learner.test_phases(eye[idx], steps), alpha=0.0, fake_on=fake)
        pred = sys_.output(state).argmax(1)
        correct += int((pred == idx).sum())
        total += idx.numel()
    return correct / total


def run(
    model: Mapping[str, Any],
    learner: Mapping[str, Any],
    depth: Mapping[str, Any],
    train_orders: tuple[str, ...] = ("81", "83"),
    train_cycles: int = 40,
    batch: int = 8,
    test_steps: tuple[int, ...] = (160, 80, 20, 10, 5),
    test_cycles: int = 4,
    test_fake: bool = False,
    seed: int = 0,
    plot: bool = True,
) -> dict:
    """Train one net per order in ``train_orders``; test each on both orders at each step budget.

    ``model``, ``learner`` and ``depth`` are the config groups (plain dicts); the rest is the protocol.
    Metric keys: ``order/acc_net<train>_on<test>_<steps>`` (e.g. ``order/acc_net81_on83_80``) and,
    for the net trained on the first order, the short form ``order/acc_<test>_<steps>``.
    """
    for o in train_orders:
        if str(o) not in ORDERS:
            raise ValueError(f"train_orders must name orders in {sorted(ORDERS)}, got {o!r}")
    torch.manual_seed(seed)
    metrics: dict[str, float] = {}
    tables = {steps: {} for steps in test_steps}
    for train_order in train_orders:
        train_order = str(train_order)
        sys_ = build(model, learner, depth, batch, seed)
        dz = train(sys_, ORDERS[train_order], train_cycles)
        metrics[f"order/net{train_order}_dz_last"] = dz[-1]
        metrics[f"order/net{train_order}_symmetry"] = sys_.net.symmetry_index()
        for steps in test_steps:
            for test_order, stride in ORDERS.items():
                acc = evaluate(sys_, stride, int(steps), test_cycles, test_fake)
                tables[steps][(train_order, test_order)] = acc
                metrics[f"order/acc_net{train_order}_on{test_order}_{steps}"] = acc
                if train_order == str(train_orders[0]):
                    metrics[f"order/acc_{test_order}_{steps}"] = acc
    metrics["order/samples_seen"] = train_cycles * N * batch
    out = {"metrics": metrics, "figures": {}, "tables": tables}
    if plot and len(train_orders) > 1:
        out["figures"]["table34_order"] = _plot(tables)
    return out


def _plot(tables):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(4 * len(tables), 3.5), squeeze=False)
    for ax, (steps, tab) in zip(axes[0], tables.items()):
        nets = sorted({a for a, _ in tab})
        grid = [[100 * tab.get((n, o), float("nan")) for o in ORDERS] for n in nets]
        ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.0f}%", ha="center", va="center", color="white")
        ax.set_xticks(range(len(ORDERS)), [f"order {o}" for o in ORDERS])
        ax.set_yticks(range(len(nets)), [f"Net{n}" for n in nets])
        ax.set_title(f"{steps} test iterations")
    fig.tight_layout()
    return fig
