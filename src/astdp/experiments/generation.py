"""Conditional generation (§2.3.4, §3.1.2; Figure 2) from a trained :class:`~astdp.system.System`.

For each label, ``n`` batch slots start from a random state ``U(-init_scale, init_scale)``, the
label neurons are targeted with the one-hot label (the :class:`~astdp.learners.Generation`
schedule: image free, no learning) for ``steps`` steps, and the input layer of net_l is read as
the image. Pixel values are mapped back from ``[input_low, input_high]`` to ``[0, 255]``.
"""

from __future__ import annotations

import torch

from astdp.core.engine import Phase
from astdp.learners.generation import Generation
from astdp.system import System


@torch.no_grad()
def grid(system: System, n: int = 8, steps: int = 160, image_size: int | None = None, init_scale: float = 1.0,
         n_labels: int | None = None, fake: bool = False, seed: int = 0) -> torch.Tensor:
    """uint8 image grid (labels x n tiles): shape (n_labels * H, n * W)."""
    topo = system.topology
    n_labels = n_labels or topo.sizes[-1]
    n_in = topo.sizes[0]
    side = image_size or int(round(n_in ** 0.5))
    gen = Generation(topo, system.dynamics, steps=steps, input_low=system.learner.input_range[0],
                     input_high=system.learner.input_range[1], label_low=system.learner.label_range[0],
                     label_high=system.learner.label_range[1])
    y = torch.arange(n_labels).repeat_interleave(n)  # (L*n,)
    g = torch.Generator().manual_seed(seed)
    w = system.net.weights[0]
    from astdp.core.state import State

    state = State.init(topo.n, y.numel(), init_scale, generator=g, dtype=w.dtype, device=w.device)
    like = torch.zeros(y.numel(), n_in, dtype=w.dtype, device=w.device)
    phases: list[Phase] = gen.phases(like, y.to(w.device))
    system.relaxer.run(state, phases, alpha=0.0, fake_on=fake)
    lo, hi = system.learner.input_range
    img = (state.s[1, :, topo.slice(0)] - lo) / (hi - lo)  # (L*n, n_in)
    img = (img.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    img = img.view(n_labels, n, side, side).permute(0, 2, 1, 3).reshape(n_labels * side, n * side)
    return img


def run(system: System, n: int = 8, steps: int = 160, plot: bool = True, **kw) -> dict:
    """Figure 2 as a result dict: the grid, its mean intensity per label, and a figure."""
    img = grid(system, n=n, steps=steps, **kw)
    n_labels = system.topology.sizes[-1]
    rows = img.float().view(n_labels, -1)
    metrics = {f"generation/mean_label{i}": float(r.mean()) / 255 for i, r in enumerate(rows)}
    out = {"metrics": metrics, "figures": {}, "grid": img}
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(n, n_labels))
        ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_yticks([(i + 0.5) * img.shape[0] / n_labels for i in range(n_labels)], [str(i) for i in range(n_labels)])
        ax.set_xticks([])
        ax.set_title("generated samples, one row per clamped label")
        out["figures"]["fig2_generation"] = fig
    return out
