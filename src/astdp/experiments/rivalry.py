"""Binocular rivalry (§3.2.2, Figure 3).

A 4-visible + 8-hidden net (see :mod:`astdp.experiments.toy` for the silent output neuron) is
trained unsupervised (Algorithm 1) on the four one-hot patterns of dimension 4. Then the ambiguous
input ``[1, 1, 0, 0]`` (pattern 0 and pattern 1 at once) is clamped for ``test_steps`` steps with
learning off, once with fake targets on and once with them off, from the same starting state.

Interpretation at each step, read from the visible states of net_l: "pattern 0" when
``s[0] - s[1] > margin``, "pattern 1" when ``s[1] - s[0] > margin``, otherwise the previous
interpretation stands (hysteresis). A switch is a change between the two interpretations.
Without fake targets the relaxation is deterministic and settles, so it should never switch.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from astdp.core.engine import Phase
from astdp.experiments import toy


def count_switches(diff: torch.Tensor, margin: float) -> tuple[int, torch.Tensor]:
    """``diff`` (T,) = s[0] - s[1]. Returns (switches, interpretation (T,) in {-1 none, 0, 1})."""
    label = torch.full_like(diff, -1, dtype=torch.long)
    cur, switches = -1, 0
    for t, d in enumerate(diff.tolist()):
        new = 0 if d > margin else 1 if d < -margin else cur
        if cur >= 0 and new != cur:
            switches += 1
        cur = new
        label[t] = cur
    return switches, label


def run(
    model: Mapping[str, Any],
    learner: Mapping[str, Any],
    depth: Mapping[str, Any],
    epochs: int = 150,
    test_steps: int = 1000,
    margin: float = 0.05,
    seed: int = 0,
    test_k: float | None = None,
    test_t_c: float | None = None,
    settle: int = 100,
    plot: bool = True,
) -> dict:
    """Train, then clamp ``[1, 1, 0, 0]``; switches are counted after the first ``settle`` steps.

    ``model``, ``learner`` (unsupervised) and ``depth`` (one hidden layer) are the config groups;
    training runs ``epochs`` batches of the 4 patterns. ``test_k`` / ``test_t_c`` set the fake
    targets while testing only (null: ``model.fake_target.k`` / ``t_c``).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sys_ = toy.visible_only_system(model, learner, depth, 4, batch=4, seed=seed)
    dz_hist = toy.train_visible(sys_, toy.one_hot_epochs(4, epochs, gen))

    # recall check: each pattern clamped, do the visible states side with it?
    recall = _recall(sys_)

    ambiguous = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    start = sys_.new_state(1)
    toy.silence_output(sys_, start)
    start.dzm.fill_(1e-3)  # a neutral running scale, so the first test steps do not all fire
    metrics = {"rivalry/train_dz_first": dz_hist[0], "rivalry/train_dz_last": dz_hist[-1],
               "rivalry/recall_acc": recall, "rivalry/samples_seen": 4 * epochs}
    trained = (sys_.relaxer.fake.k, sys_.relaxer.fake.t_c)
    if test_k is not None:
        sys_.relaxer.fake.k = test_k
    if test_t_c is not None:
        sys_.relaxer.fake.t_c = test_t_c
    traces = {}
    for fake_on in (True, False):
        state = type(start)(start.s.clone(), start.v.clone(), start.dzm.clone())
        phase = Phase(test_steps, [sys_.learner.input_target(ambiguous)], learn=False)
        stats = sys_.relaxer.run(state, [phase], alpha=0.0, fake_on=fake_on, record=True)
        s = torch.stack([tr["s"][:, 0] for tr in stats.trace])  # (T, 2, N)
        dz = torch.stack([tr["dz"][0] for tr in stats.trace])  # (T, N)
        fired = torch.stack([tr["fired"][0] for tr in stats.trace]) if fake_on else None
        switches, label = count_switches(s[settle:, 1, 0] - s[settle:, 1, 1], margin)
        tag = "fake_on" if fake_on else "fake_off"
        metrics[f"rivalry/switches_{tag}"] = switches
        metrics[f"rivalry/time_p0_{tag}"] = float((label == 0).float().mean())
        metrics[f"rivalry/time_p1_{tag}"] = float((label == 1).float().mean())
        if fake_on:
            metrics["rivalry/fake_rate"] = float(stats.fake_rate)
        traces[tag] = (s, dz, fired, label)
    metrics["rivalry/switches"] = metrics["rivalry/switches_fake_on"]
    out = {"metrics": metrics, "figures": {}, "traces": traces}
    if plot:
        tested = (sys_.relaxer.fake.k, sys_.relaxer.fake.t_c)
        on = "fake targets on" + ("" if tested == trained else
                                  f" (testing k={tested[0]:g}, t_c={tested[1]:g}; training k={trained[0]:g}, t_c={trained[1]:g})")
        out["figures"]["fig3_rivalry"] = _plot(traces["fake_on"], ambiguous[0], sys_.topology, on)
        out["figures"]["fig3_rivalry_fake_off"] = _plot(traces["fake_off"], ambiguous[0], sys_.topology,
                                                        "fake targets off")
    return out


def _recall(sys_) -> float:
    """Fraction of patterns whose clamped visible state has its argmax at the pattern's index."""
    x = torch.eye(4)
    state = sys_.new_state(4)
    toy.silence_output(sys_, state)
    sys_.relaxer.run(state, sys_.learner.test_phases(x, 200), alpha=0.0, fake_on=False)
    vis = state.s[1, :, :4]
    return float((vis.argmax(1) == torch.arange(4)).float().mean())


def _plot(trace, target, topo, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, dz, fired, label = trace
    hs = topo.hidden_slice
    neurons = [("visible", i) for i in range(4)] + [("hidden", hs.start + j) for j in range(4)]
    fig, axes = plt.subplots(2, 4, figsize=(16, 6), sharex=True)
    steps = torch.arange(s.shape[0]).numpy()
    for ax, (kind, i) in zip(axes.flat, neurons):
        ax.plot(steps, s[:, 0, i].numpy(), color="green", lw=0.8, label="s_s")
        ax.plot(steps, s[:, 1, i].numpy(), color="blue", lw=0.8, label="s_l")
        ax.plot(steps, dz[:, i].numpy(), color="orange", lw=0.8, label="dz")
        if kind == "visible":
            ax.plot(steps[::50], [float(target[i])] * len(steps[::50]), ".", color="blue", ms=3, label="target")
            ax.set_title(f"visible {i}")
        else:
            if fired is not None:
                f = fired[:, i - hs.start].numpy()
                ax.plot(steps[f], [0.0] * int(f.sum()), "|", color="red", ms=4, label="fake target")
            ax.set_title(f"hidden {i - hs.start}")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"binocular rivalry, input [1, 1, 0, 0], {title}")
    fig.tight_layout()
    return fig
