"""The two-neuron STDP protocol (§3.2.3, Figures 1, 5 and 6).

One input neuron and one output neuron (plus a dummy hidden neuron, because a topology needs one),
``W = b = 0`` and every block frozen, so the neurons never influence each other and the weights
stay zero while we measure. Each neuron gets a target ``t = 1`` during a window of ``window``
steps; the output's window starts ``dt`` steps after the input's (``dt > 0``: pre before post).
At every step we accumulate what eq (15) *would* add:

    dW[out <- in] += alpha * dz_out * rho(s_s_in)
    dW[in <- out] += alpha * dz_in  * rho(s_s_out)

with both factors taken at the start of the step, as the engine does. The STDP curve is the total
``dW[out <- in]`` against ``dt``. Every (curve, dt) pair is one batch slot, so a whole figure is a
single relaxation run; nudging strengths differ per slot through the per-step targets.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from astdp.core import activations
from astdp.core.engine import FakeTargets, Relaxer, Target
from astdp.core.network import Network, Topology
from astdp.core.plasticity import Plasticity
from astdp.core.state import State
from astdp.factory import build_dynamics

WINDOWS = (5, 10, 15)
BETAS = ((0.4, 0.5), (0.4, 0.6), (0.4, 0.7))


def _curves(windows_betas, dts, model, alpha, lead, tail):
    """Total would-be dW of each (window, beta) curve at each dt. Returns two (C, D) tensors."""
    dts = torch.as_tensor(list(dts), dtype=torch.long)
    n_c, n_d = len(windows_betas), len(dts)
    batch = n_c * n_d
    max_w = max(w for w, _ in windows_betas)
    start_in = lead + max(0, -int(dts.min()))  # input window start, same for every slot
    steps = start_in + max(0, int(dts.max())) + max_w + tail

    topo = Topology.build(1, [1], 1)
    net = Network(topo, [torch.zeros(topo.sizes[b.post], b.hi - b.lo, dtype=torch.float64) for b in topo.blocks],
                  [torch.zeros(n, dtype=torch.float64) for n in topo.sizes])
    net.frozen = set(range(len(net.weights)))
    net.frozen_bias = set(range(topo.n_layers))
    dyn = build_dynamics({**model, "init_scale": 0.0})
    relaxer = Relaxer(net, dyn, Plasticity(alpha=0.0), FakeTargets(enabled=False))
    act = activations.get(dyn.activation)
    state = State.init(topo.n, batch, scale=0.0, dtype=torch.float64)

    beta = torch.zeros(2, batch, 1, dtype=torch.float64)
    win = torch.zeros(batch, dtype=torch.long)
    shift = torch.zeros(batch, dtype=torch.long)
    for c, (w, (b_s, b_l)) in enumerate(windows_betas):
        sl = slice(c * n_d, (c + 1) * n_d)
        beta[0, sl], beta[1, sl] = b_s, b_l
        win[sl] = w
        shift[sl] = dts
    one = torch.ones(batch, 1, dtype=torch.float64)
    d_out_in = torch.zeros(batch, dtype=torch.float64)
    d_in_out = torch.zeros(batch, dtype=torch.float64)
    traces = []
    for t in range(steps):
        on_in = ((t >= start_in) & (t < start_in + win)).to(torch.float64).view(1, batch, 1)
        t_out = start_in + shift
        on_out = ((t >= t_out) & (t < t_out + win)).to(torch.float64).view(1, batch, 1)
        targets = {0: Target(0, one, beta * on_in), 2: Target(2, one, beta * on_out)}
        z, _ = act(state.s)  # (2, B, 3) at the start of the step, as eq (15) uses them
        dz = z[1] - z[0]  # (B, 3)
        d_out_in += alpha * dz[:, 2] * z[0, :, 0]
        d_in_out += alpha * dz[:, 0] * z[0, :, 2]
        traces.append(torch.stack([state.s[0, :, 0], state.s[1, :, 0], dz[:, 0],
                                   state.s[0, :, 2], state.s[1, :, 2], dz[:, 2]], dim=1))
        relaxer.step(state, targets, fake_on=False, alpha=0.0)
    trace = torch.stack(traces)  # (T, B, 6): s_s, s_l, dz of input then output
    return d_out_in.view(n_c, n_d), d_in_out.view(n_c, n_d), trace.view(steps, n_c, n_d, 6), start_in


def curve_stats(dts: torch.Tensor, curve: torch.Tensor) -> dict[str, float]:
    """Sign pattern and asymmetry of one STDP curve (dW against dt)."""
    pre = curve[dts > 0]  # pre before post
    post = curve[dts < 0]  # post before pre
    above = float(curve.clamp_min(0).sum())
    below = float((-curve).clamp_min(0).sum())
    return {
        "pre_post_sum": float(pre.sum()),
        "post_pre_sum": float(post.sum()),
        "pre_post_sign": float(torch.sign(pre.sum())),
        "post_pre_sign": float(torch.sign(post.sum())),
        "area_above": above,
        "area_below": below,
        # 0 = up/down symmetric, 1 = all on one side
        "asymmetry": abs(above - below) / max(above + below, 1e-30),
        # classic STDP shape: potentiation peak at dt > 0 and a depression lobe at dt < 0
        "classic_shape": float(bool(dts[curve.argmax()] > 0) and bool(dts[curve.argmin()] < 0) and float(curve.min()) < 0),
        "peak_dt": float(dts[curve.argmax()]),
        "trough_dt": float(dts[curve.argmin()]),
        "max": float(curve.max()),
        "min": float(curve.min()),
    }


def run(
    model: Mapping[str, Any],
    dt_range: int = 30,
    windows: tuple[int, ...] = WINDOWS,
    betas: tuple[tuple[float, float], ...] = BETAS,
    window_for_betas: int = 10,
    beta_for_windows: tuple[float, float] | None = None,
    alpha: float = 1.0,
    lead: int = 20,
    tail: int = 40,
    plot: bool = True,
) -> dict:
    """Figure 6: top row = ``windows`` at ``beta_for_windows`` (null: ``model.beta``); bottom = ``betas``
    at ``window_for_betas``.

    ``model`` is the model config group: its ``activation``, ``eps``, ``momentum`` and ``bounds`` set the
    two neurons' dynamics (the protocol fixes the topology and learns nothing, so it takes no learner or
    depth). The classic shape needs the larger step on net_l (``eps = [0.4, 0.5]``): net_l then rises
    and decays faster than net_s, so ``dz`` is positive at a window's onset and negative after its
    end, which is what gives the potentiation/depression lobes. With ``eps = [0.5, 0.4]`` (net_s
    faster) ``dz`` never turns negative here and the curve is a one-sided bump.

    Returns ``{"metrics": {...}, "figures": {name: Figure}, "curves": {...}}``; metric keys are
    ``stdp/<curve>/<stat>`` with curve ``w<window>_b<beta_s>-<beta_l>``.
    """
    if beta_for_windows is None:
        beta_for_windows = tuple(model["beta"])
    dts = torch.arange(-dt_range, dt_range + 1)
    combos = [(int(w), tuple(beta_for_windows)) for w in windows]
    combos += [(int(window_for_betas), tuple(b)) for b in betas]
    d_out_in, d_in_out, trace, start_in = _curves(combos, dts, model, alpha, lead, tail)

    metrics: dict[str, float] = {}
    curves = {}
    for c, (w, b) in enumerate(combos):
        name = f"w{w}_b{b[0]:g}-{b[1]:g}"
        curves[name] = d_out_in[c]
        for key, val in curve_stats(dts, d_out_in[c]).items():
            metrics[f"stdp/{name}/{key}"] = val
        # the reverse synapse sees the mirror image: its curve at dt is the forward one at -dt
        metrics[f"stdp/{name}/reverse_mirror_err"] = float((d_in_out[c] - d_out_in[c].flip(0)).abs().max())
    stats = [curve_stats(dts, d_out_in[c]) for c in range(len(combos))]
    metrics["stdp/pre_post_positive_frac"] = sum(s["pre_post_sign"] > 0 for s in stats) / len(stats)
    metrics["stdp/post_pre_negative_frac"] = sum(s["post_pre_sign"] < 0 for s in stats) / len(stats)
    metrics["stdp/classic_shape_frac"] = sum(s["classic_shape"] for s in stats) / len(stats)
    metrics["stdp/asymmetry_mean"] = sum(s["asymmetry"] for s in stats) / len(stats)

    out = {"metrics": metrics, "figures": {}, "curves": {"dt": dts, **curves}}
    if plot:
        out["figures"]["fig6_stdp"] = _plot_curves(dts, combos, d_out_in)
        out["figures"]["fig5_stdp_traces"] = _plot_traces(trace, dts, combos, start_in)
    return out


def _plot_curves(dts, combos, d_out_in):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(combos)
    cols = (n + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(4 * cols, 6), squeeze=False)
    for c, (w, b) in enumerate(combos):
        ax = axes[c // cols][c % cols]
        ax.axhline(0, color="gray", lw=0.5)
        ax.axvline(0, color="gray", lw=0.5)
        ax.plot(dts.numpy(), d_out_in[c].numpy(), ".-", ms=3)
        ax.set_title(f"window {w}, beta {b[0]:g}/{b[1]:g}")
        ax.set_xlabel("dt = t_post - t_pre (steps)")
        ax.set_ylabel("total dW[out<-in] / alpha")
    fig.tight_layout()
    return fig


def _plot_traces(trace, dts, combos, start_in):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [int(dts.numel() * f) for f in (0.35, 0.5, 0.65)]
    fig, axes = plt.subplots(2, len(picks), figsize=(4 * len(picks), 5), squeeze=False)
    for col, d in enumerate(picks):
        for row, (off, label) in enumerate(((0, "input"), (3, "output"))):
            ax = axes[row][col]
            tr = trace[:, 0, d]
            ax.plot(tr[:, off].numpy(), color="green", label="s_s")
            ax.plot(tr[:, off + 1].numpy(), color="blue", label="s_l")
            ax.plot(tr[:, off + 2].numpy(), color="orange", label="dz")
            ax.set_title(f"{label}, dt = {int(dts[d])}")
        axes[0][col].axvspan(start_in, start_in + combos[0][0], color="gray", alpha=0.2)
        axes[1][col].axvspan(start_in + int(dts[d]), start_in + int(dts[d]) + combos[0][0], color="gray", alpha=0.2)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig
