"""Binocular rivalry (§3.2.2, Figure 3).

A 4-visible + 8-hidden net (see :mod:`astdp.experiments.toy` for the silent output neuron) is
trained unsupervised (Algorithm 1) on the four one-hot patterns of dimension 4. Then the ambiguous
input ``[1, 1, 0, 0]`` (pattern 0 and pattern 1 at once) is clamped for ``test_steps`` steps with
learning off, once with fake targets on and once with them off, from the same starting state.

Interpretation at each step, read from the visible states of net_l: "pattern 0" when
``s[0] - s[1] > margin``, "pattern 1" when ``s[1] - s[0] > margin``, otherwise the previous
interpretation stands (hysteresis; ``time_decided`` is the fraction of steps where the margin is
exceeded, the rest is held by hysteresis). A switch is a change between the two interpretations.
Without fake targets the relaxation is deterministic and settles, so it should never switch.

Dominance durations: the lengths of the complete periods between two switches (the first and the
last period are cut by the counting window and left out); reported as their mean and coefficient
of variation (std / mean; 1 for memoryless, exponential switching, about 0.4-0.8 in human
rivalry, whose durations follow a gamma-like law). The test starts from fresh states with the
running mean of ``|dz|`` (eq 18) where training left it, so the fake targets go on as they acted
in training.
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


def dominance_durations(label: torch.Tensor) -> torch.Tensor:
    """Lengths (steps) of the complete dominance periods in an interpretation sequence (T,) of {-1, 0, 1}.

    A period is a run of one interpretation between two switches; the first (it began before the
    count started, or with no interpretation yet) and the last (still going when the test ends) are
    cut off by the window and left out. Returns a float tensor (switches - 1,) (empty below 2 switches).
    """
    change = torch.nonzero((label[1:] != label[:-1]) & (label[:-1] >= 0)).flatten() + 1  # first step of a new period
    return (change[1:] - change[:-1]).double()


def dominance_stats(durations: torch.Tensor) -> tuple[float, float]:
    """(mean, coefficient of variation std / mean) of dominance durations; nan where undefined
    (no complete period for the mean; fewer than 2 for the CV, whose std has ddof 1)."""
    if durations.numel() == 0:
        return float("nan"), float("nan")
    mean = float(durations.mean())
    cv = float(durations.std() / durations.mean()) if durations.numel() > 1 else float("nan")
    return mean, cv


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
    # the running mean of |dz| (eq 18) goes on from where training left it (the mean over the training slots)
    start.dzm.copy_(sys_.train_state.dzm.mean(0, keepdim=True))
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
        diff = s[settle:, 1, 0] - s[settle:, 1, 1]  # (T - settle,)
        switches, label = count_switches(diff, margin)
        durations = dominance_durations(label)
        tag = "fake_on" if fake_on else "fake_off"
        metrics[f"rivalry/switches_{tag}"] = switches
        metrics[f"rivalry/time_p0_{tag}"] = float((label == 0).float().mean())
        metrics[f"rivalry/time_p1_{tag}"] = float((label == 1).float().mean())
        metrics[f"rivalry/time_decided_{tag}"] = float((diff.abs() > margin).float().mean())
        if fake_on:
            metrics["rivalry/fake_rate"] = float(stats.fake_rate)
            metrics["rivalry/mean_dominance"], metrics["rivalry/dominance_cv"] = dominance_stats(durations)
        traces[tag] = (s, dz, fired, label, durations)
    metrics["rivalry/switches"] = metrics["rivalry/switches_fake_on"]
    out = {"metrics": metrics, "figures": {}, "traces": traces}
    if plot:
        tested = (sys_.relaxer.fake.k, sys_.relaxer.fake.t_c)
        on = f"fake targets on (k={tested[0]:g}, t_c={tested[1]:g}" + (
            ", as in training)" if tested == trained else f"; training k={trained[0]:g}, t_c={trained[1]:g})")
        kw = dict(target=ambiguous[0], topo=sys_.topology, settle=settle, margin=margin)
        out["figures"]["fig3_rivalry"] = _plot(traces["fake_on"], title=on, **kw)
        out["figures"]["fig3_rivalry_fake_off"] = _plot(traces["fake_off"], title="fake targets off", **kw)
    return out


def _recall(sys_) -> float:
    """Fraction of patterns whose clamped visible state has its argmax at the pattern's index."""
    x = torch.eye(4)
    state = sys_.new_state(4)
    toy.silence_output(sys_, state)
    sys_.relaxer.run(state, sys_.learner.test_phases(x, 200), alpha=0.0, fake_on=False)
    vis = state.s[1, :, :4]
    return float((vis.argmax(1) == torch.arange(4)).float().mean())


def _plot(trace, target, topo, settle, margin, title):
    """Top two rows: visible and hidden neurons (s_s, s_l, dz, targets, fake targets); bottom row: the
    interpretation's time course (s0 - s1 of net_l) and the histogram of dominance durations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, dz, fired, label, durations = trace
    hs = topo.hidden_slice
    neurons = [("visible", i) for i in range(4)] + [("hidden", hs.start + j) for j in range(4)]
    fig = plt.figure(figsize=(16, 9))
    grid = fig.add_gridspec(3, 4)
    axes = [fig.add_subplot(grid[r, c]) for r in range(2) for c in range(4)]
    steps = torch.arange(s.shape[0]).numpy()
    for ax, (kind, i) in zip(axes, neurons):
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
    axes[0].legend(fontsize=7)

    course = fig.add_subplot(grid[2, :3])
    course.plot(steps, (s[:, 1, 0] - s[:, 1, 1]).numpy(), color="gray", lw=0.7, label="s_l[0] - s_l[1]")
    for m in (margin, -margin):
        course.axhline(m, color="gray", ls=":", lw=0.7)
    shown = torch.where(label == 0, 0.2, torch.where(label == 1, -0.2, 0.0))  # (T - settle,)
    course.step(steps[settle:], shown.numpy(), where="post", color="black", lw=1.0,
                label="interpretation (+0.2: pattern 0, -0.2: pattern 1)")
    course.axvline(settle, color="red", ls="--", lw=0.7)
    course.set_xlabel("step")
    course.set_title(f"interpretation, counted after step {settle}")
    course.legend(fontsize=7, loc="upper right")
    hist = fig.add_subplot(grid[2, 3])
    if durations.numel():
        mean, cv = dominance_stats(durations)
        hist.hist(durations.numpy(), bins=min(20, max(5, durations.numel())), color="black")
        hist.set_title(f"dominance durations: {durations.numel()}, mean {mean:.0f}" +
                       ("" if cv != cv else f", CV {cv:.2f}"), fontsize=9)
    else:
        hist.set_title("dominance durations: none complete", fontsize=9)
    hist.set_xlabel("steps")
    fig.suptitle(f"binocular rivalry, input [1, 1, 0, 0], {title}")
    fig.tight_layout()
    return fig
