"""The persistent two-network state.

``s`` stacks the states of both networks: ``s[0]`` is net_s (small beta), ``s[1]`` is net_l
(large beta), shape (2, B, N). ``v`` holds the momentum velocities of eq (19)-(20) (zeros when
momentum is off) and ``dzm`` the running mean of ``|dz|`` used by the adaptive fake targets,
eq (17)-(18), shape (B, N). Each batch slot keeps its state from one sample to the next: states
are drawn at random only once, at the start (§2.3: "we don't reinitialize s after data changed");
``model.persistent=false`` redraws them before every batch instead (:meth:`State.redraw_`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class State:
    s: torch.Tensor  # (2, B, N)
    v: torch.Tensor  # (2, B, N)
    dzm: torch.Tensor  # (B, N)

    @classmethod
    def init(
        cls,
        n: int,
        batch: int,
        scale: float = 0.1,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> State:
        """net_s and net_l start from the *same* random state ``U(-scale, scale)``."""
        s0 = (torch.rand(batch, n, generator=generator, dtype=dtype) * 2 - 1) * scale
        s = s0.to(device).unsqueeze(0).repeat(2, 1, 1)
        return cls(s=s, v=torch.zeros_like(s), dzm=torch.zeros(batch, n, dtype=dtype, device=device))

    def redraw_(self, scale: float, generator: torch.Generator | None = None) -> None:
        """Forget the last sample: both networks back to one fresh ``U(-scale, scale)`` draw, velocities 0.

        The running mean ``dzm`` is kept: it tracks the neuron, not the sample.
        """
        fresh = State.init(self.s.shape[2], self.batch, scale, generator, self.s.dtype, self.s.device)
        self.s.copy_(fresh.s)
        self.v.zero_()

    @property
    def batch(self) -> int:
        return self.s.shape[1]

    def slots(self, n: int) -> State:
        """A view of the first ``n`` slots (a short last batch); writes go to the full state."""
        return State(self.s[:, :n], self.v[:, :n], self.dzm[:n])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"s": self.s, "v": self.v, "dzm": self.dzm}
