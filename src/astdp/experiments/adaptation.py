"""Neural adaptation (§3.2.2, second part; Figure 4).

The 4-visible + 8-hidden net of the rivalry experiment is trained unsupervised on the four one-hot
patterns. Then pattern ``a`` is clamped for ``hold`` steps and the input switches to pattern ``b``
for ``after`` steps (learning off). We follow net_l's state of the visible neuron that turns on
(``b``) and of the one that turns off (``a``), under four conditions: momentum inference
(eq 19-20, inertia ``test_momentum``) on/off x fake targets on/off, all from the same state.

Overshoot of the neuron that turns on: ``(peak - final) / (final - before)``, with ``before`` its
state just before the change, ``peak`` the maximum after it and ``final`` the mean of the last
``tail`` steps (the peak is searched in the first ``window`` steps, so that late fluctuations
from fake targets do not count); for the neuron that turns off, the mirror image (``(final - trough) / (before -
final)``). 0 = monotone approach; 0.2 = it went 20 % past where it settles.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from astdp.core.engine import Phase
from astdp.core.state import State
from astdp.experiments import toy

CONDITIONS = {"plain": (False, False), "momentum": (True, False), "fake": (False, True),
              "momentum_fake": (True, True)}


def overshoot(x: torch.Tensor, before: float, tail: int, rising: bool, window: int) -> float:
    """Relative overshoot within the first ``window`` steps after the change (see module doc)."""
    final = float(x[-tail:].mean())
    span = final - before if rising else before - final
    if abs(span) < 1e-6:
        return 0.0
    early = x[:window]
    excess = float(early.max()) - final if rising else final - float(early.min())
    return max(excess, 0.0) / abs(span)


def run(
    model: Mapping[str, Any],
    learner: Mapping[str, Any],
    depth: Mapping[str, Any],
    epochs: int = 150,
    pattern_from: int = 0,
    pattern_to: int = 1,
    hold: int = 200,
    after: int = 200,
    tail: int = 30,
    window: int = 60,
    test_momentum: float = 0.2,
    test_k: float | None = None,
    test_t_c: float | None = None,
    seed: int = 0,
    plot: bool = True,
) -> dict:
    """Train the rivalry net (config groups ``model``, ``learner``, ``depth``; ``epochs`` batches of the 4
    patterns), then the four test conditions; ``test_k`` / ``test_t_c`` null: the model's fake targets."""
    for p in (pattern_from, pattern_to):
        if not 0 <= p < 4:
            raise ValueError(f"pattern_from / pattern_to must be pattern indices 0-3, got {p}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sys_ = toy.visible_only_system(model, learner, depth, 4, batch=4, seed=seed)
    toy.train_visible(sys_, toy.one_hot_epochs(4, epochs, gen))
    if test_k is not None:
        sys_.relaxer.fake.k = test_k
    if test_t_c is not None:
        sys_.relaxer.fake.t_c = test_t_c

    eye = torch.eye(4)
    x_a, x_b = eye[pattern_from : pattern_from + 1], eye[pattern_to : pattern_to + 1]
    start = sys_.new_state(1)
    toy.silence_output(sys_, start)
    metrics: dict[str, float] = {}
    traces = {}
    train_momentum = sys_.relaxer.dyn.momentum  # model.momentum, used while training
    for name, (mom_on, fake_on) in CONDITIONS.items():
        sys_.relaxer.dyn.momentum = test_momentum if mom_on else 1.0
        gen_state = sys_.relaxer.generator.get_state()
        state = State(start.s.clone(), start.v.clone(), start.dzm.clone())
        phases = [Phase(hold, [sys_.learner.input_target(x_a)], learn=False),
                  Phase(after, [sys_.learner.input_target(x_b)], learn=False)]
        stats = sys_.relaxer.run(state, phases, alpha=0.0, fake_on=fake_on, record=True)
        sys_.relaxer.generator.set_state(gen_state)  # every condition sees the same draws
        s = torch.stack([tr["s"][:, 0] for tr in stats.trace])  # (T, 2, N)
        dz = torch.stack([tr["dz"][0] for tr in stats.trace])  # (T, N)
        on, off = s[hold:, 1, pattern_to], s[hold:, 1, pattern_from]
        metrics[f"adaptation/overshoot_on_{name}"] = overshoot(on, float(s[hold - 1, 1, pattern_to]), tail, True, window)
        metrics[f"adaptation/overshoot_off_{name}"] = overshoot(off, float(s[hold - 1, 1, pattern_from]), tail, False, window)
        metrics[f"adaptation/final_on_{name}"] = float(on[-tail:].mean())
        traces[name] = (s, dz)
    sys_.relaxer.dyn.momentum = train_momentum
    metrics["adaptation/overshoot"] = metrics["adaptation/overshoot_on_momentum_fake"]
    metrics["adaptation/overshoot_plain"] = metrics["adaptation/overshoot_on_plain"]
    out = {"metrics": metrics, "figures": {}, "traces": traces}
    if plot:
        out["figures"]["fig4_adaptation"] = _plot(traces, hold, pattern_from, pattern_to)
    return out


def _plot(traces, hold, a, b):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(traces), figsize=(4 * len(traces), 6), sharex=True, sharey="row")
    for col, (name, (s, dz)) in enumerate(traces.items()):
        steps = torch.arange(s.shape[0]).numpy()
        for row, (i, label) in enumerate(((b, "turns on"), (a, "turns off"))):
            ax = axes[row][col]
            tgt = [float(i == a)] * hold + [float(i == b)] * (s.shape[0] - hold)
            ax.plot(steps[::10], tgt[::10], ".", color="blue", ms=3, label="target")
            ax.plot(steps, s[:, 0, i].numpy(), color="green", lw=0.8, label="s_s")
            ax.plot(steps, s[:, 1, i].numpy(), color="blue", lw=0.8, label="s_l")
            ax.plot(steps, dz[:, i].numpy(), color="orange", lw=0.8, label="dz")
            ax.set_title(f"{name}: visible {i} {label}")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig
