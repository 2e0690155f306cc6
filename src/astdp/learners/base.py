"""What a learner decides: which neurons have targets at which relaxation step.

A learner turns a batch into a list of :class:`~astdp.core.engine.Phase` s. It knows the topology
(which layer is input, which is output), the nudging strengths, and how data become targets:
pixels in ``[0, 1]`` map to ``[input_low, input_high]`` and a one-hot label to
``label_low`` / ``label_high`` (the paper: 0 and 1).
"""

from __future__ import annotations

import torch

from astdp.core.dynamics import Dynamics
from astdp.core.engine import Phase, Target, beta_tensor
from astdp.core.network import Topology


class Learner:
    name = "base"
    learns_in_relaxation = True  # aSTDP: the weights change at every step; False: once per batch in update()

    def __init__(
        self,
        topology: Topology,
        dynamics: Dynamics,
        steps: int = 160,
        input_low: float = 0.0,
        input_high: float = 1.0,
        label_low: float = 0.0,
        label_high: float = 1.0,
    ) -> None:
        if steps < 1:
            raise ValueError(f"learner.steps must be >= 1, got {steps}")
        self.topology = topology
        self.dynamics = dynamics
        self.steps = int(steps)
        self.input_range = (float(input_low), float(input_high))
        self.label_range = (float(label_low), float(label_high))

    # -- data -> targets ------------------------------------------------------------------------
    def input_target(self, x: torch.Tensor, beta: tuple[float, float] | None = None) -> Target:
        lo, hi = self.input_range
        value = x * (hi - lo) + lo  # (B, n_in)
        return Target(self.topology.input_layer, value, beta_tensor(beta or self.dynamics.input_beta, value),
                      exact=self.dynamics.input_clamp == "exact")

    def label_target(self, y: torch.Tensor, like: torch.Tensor) -> Target:
        """``y`` is either class indices (B,) or a target vector (B, n_out) in [0, 1]."""
        n_out = self.topology.sizes[-1]
        lo, hi = self.label_range
        if y.dim() == 1:
            onehot = torch.nn.functional.one_hot(y.long(), n_out).to(like.dtype)
        else:
            onehot = y.to(like.dtype)
        value = onehot * (hi - lo) + lo
        return Target(self.topology.output_layer, value, beta_tensor(self.dynamics.output_beta, value),
                      exact=self.dynamics.output_clamp == "exact")

    def prepare(self, net) -> None:
        """Freeze or reset parts of ``net`` before training (a learner with stages overrides it)."""

    def state_dict(self) -> dict:
        """What this learner carries from batch to batch (stages, counters, generators); none by default."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (resuming a run); the network's tensors come from the checkpoint."""

    def phases(self, x: torch.Tensor, y: torch.Tensor | None) -> list[Phase]:
        raise NotImplementedError

    def update(self, net, state, plast, reduce_hook=None) -> None:
        """Learning after a training batch's relaxation, from its end ``state`` (a learner with
        ``learns_in_relaxation = False``); aSTDP learns inside the relaxation and does nothing here."""

    def test_phases(self, x: torch.Tensor, steps: int | None = None) -> list[Phase]:
        """Testing (§2.3.5): inputs clamped, outputs free, learning off."""
        return [Phase(steps or self.steps, [self.input_target(x)], learn=False)]
