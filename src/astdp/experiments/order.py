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

import torch

from astdp.factory import build_system
from astdp.experiments.toy import model_cfg

N = 8
ORDERS = {"81": 1, "83": 3}


def sequence(stride: int, length: int, batch: int) -> torch.Tensor:
    """(length, batch) pattern indices: slot ``b`` starts at ``b mod 8`` and steps by ``stride``."""
    t = torch.arange(length).view(-1, 1)
    b = torch.arange(batch).view(1, -1)
    return (b + stride * t) % N


def build(hidden: int, alpha: float, train_steps: int, learner: str, free_steps: int, batch: int, seed: int,
          **model_kw):
    learner_cfg = {"name": learner, "alpha": alpha, "steps": train_steps}
    if learner == "supervised":
        learner_cfg["free_steps"] = free_steps
    return build_system(model_cfg(**model_kw), learner_cfg, {"hidden": [hidden]}, n_in=N, n_out=N,
                        batch_size=batch, seed=seed)


def train(sys_, stride: int, cycles: int) -> list[float]:
    eye = torch.eye(N)
    dz = []
    for idx in sequence(stride, cycles * N, sys_.batch_size):
        dz.append(float(sys_.train_batch(eye[idx], idx).dz_abs))
    return dz


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
    train_orders: tuple[str, ...] = ("81", "83"),
    hidden: int = 16,
    alpha: float = 0.002,
    train_steps: int = 160,
    train_cycles: int = 40,
    learner: str = "unsupervised",
    free_steps: int = 80,
    batch: int = 8,
    test_steps: tuple[int, ...] = (160, 80, 20, 10, 5),
    test_cycles: int = 4,
    test_fake: bool = False,
    activation: str = "sigmoid4_centered",
    eps: tuple[float, float] = (0.5, 0.4),
    beta: tuple[float, float] = (0.4, 0.5),
    beta_input: tuple[float, float] | None = (1.0, 1.0),
    beta_output: tuple[float, float] | None = (0.0, 0.5),
    momentum: float = 1.0,
    fake: bool = True,
    k: float = 50.0,
    t_c: float = 0.25,
    seed: int = 0,
    plot: bool = True,
) -> dict:
    """Train one net per order in ``train_orders``; test each on both orders at each step budget.

    Metric keys: ``order/acc_net<train>_on<test>_<steps>`` (e.g. ``order/acc_net81_on83_80``) and,
    for the net trained on the first order, the short form ``order/acc_<test>_<steps>``.
    """
    torch.manual_seed(seed)
    metrics: dict[str, float] = {}
    tables = {steps: {} for steps in test_steps}
    for train_order in train_orders:
        train_order = str(train_order)
        sys_ = build(hidden, alpha, train_steps, learner, free_steps, batch, seed, activation=activation, eps=eps,
                     beta=beta, beta_input=beta_input, beta_output=beta_output, momentum=momentum, fake=fake,
                     k=k, t_c=t_c)
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
