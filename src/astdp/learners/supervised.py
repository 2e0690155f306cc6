"""Algorithm 2: ``free_steps`` with only the inputs targeted, then the outputs join them.

``steps`` is the total (the paper: 80 free + 160 clamped = 240). Learning is on in both phases.

``shared_free`` (not in the paper): the free phase runs one network for both. net_l starts it from
net_s's state, the two have the same targets, so they stay equal, ``dz = 0`` and nothing is
learned; only net_s is stepped, which saves half the free phase's products and all its updates.
What the paper's free phase learns is then left out: the residual difference that the previous
batch's nudge leaves in net_l as it relaxes towards the new sample's free state.

``cover`` (optional, for conditional generation, §3.1.2): in each batch a random fraction ``cover``
of every sample's pixels is left free in both networks in the free phase and, in the clamped
phase, takes the labels' part (free in net_s, pulled to the pixel in net_l with the output
nudging). With inputs set exactly the blocks *into* the input layer never learn (``dz = 0``
there); with a cover they learn to draw the covered pixels from the hidden layer, labels clamped,
which is what generation needs.
"""

from __future__ import annotations

import torch

from astdp.core.engine import Phase, Target, beta_tensor
from astdp.learners.base import Learner


class Supervised(Learner):
    name = "supervised"

    def __init__(self, *args, free_steps: int = 80, cover: float = 0.0, shared_free: bool = False,
                 generator: torch.Generator | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= free_steps <= self.steps:
            raise ValueError(f"learner.free_steps must lie in [0, learner.steps={self.steps}], got {free_steps}")
        if not 0.0 <= cover < 1.0:
            raise ValueError(f"learner.cover must lie in [0, 1), got {cover}")
        self.free_steps, self.cover, self.generator = int(free_steps), float(cover), generator
        self.shared_free = bool(shared_free)
        if self.shared_free and self.cover > 0:
            raise ValueError("learner.shared_free needs learner.cover=0 (covered pixels are drawn in net_l only)")
        beta_in = self.dynamics.input_beta
        if self.dynamics.input_clamp == "exact":  # the inputs are set where beta > 0
            beta_in = tuple(b > 0 for b in beta_in)
        if self.shared_free and (self.dynamics.eps[0] != self.dynamics.eps[1] or beta_in[0] != beta_in[1]):
            raise ValueError("learner.shared_free needs both networks to step alike in the free phase: one model.eps "
                             f"(got {list(self.dynamics.eps)}) and one model.beta_input (got "
                             f"{list(self.dynamics.input_beta)}) for both, or learner.shared_free=false")

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()} if self.generator is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])

    def phases(self, x, y):
        inp = self.input_target(x)
        label = self.label_target(y, x)
        if self.cover > 0:
            covered = (torch.rand(x.shape, generator=self.generator) < self.cover).to(x.device, x.dtype)  # (B, n_in)
            seen = Target(inp.layer, inp.value, inp.beta * (1.0 - covered), inp.exact)
            drawn = Target(inp.layer, inp.value, beta_tensor(self.dynamics.output_beta, x) * covered)
            out = [Phase(self.free_steps, [seen])] if self.free_steps else []
            return out + [Phase(self.steps - self.free_steps, [seen, drawn, label])]
        out = [Phase(self.free_steps, [inp], shared=self.shared_free)] if self.free_steps else []
        return out + [Phase(self.steps - self.free_steps, [inp, label])]
