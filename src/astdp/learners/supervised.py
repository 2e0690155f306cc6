"""Algorithm 2: ``free_steps`` with only the inputs targeted, then the outputs join them.

``steps`` is the total (the paper: 80 free + 160 clamped = 240). Learning is on in both phases.
"""

from __future__ import annotations

from astdp.core.engine import Phase
from astdp.learners.base import Learner


class Supervised(Learner):
    name = "supervised"

    def __init__(self, *args, free_steps: int = 80, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0 <= free_steps <= self.steps:
            raise ValueError(f"learner.free_steps must lie in [0, learner.steps={self.steps}], got {free_steps}")
        self.free_steps = int(free_steps)

    def phases(self, x, y):
        inp = self.input_target(x)
        out = [Phase(self.free_steps, [inp])] if self.free_steps else []
        return out + [Phase(self.steps - self.free_steps, [inp, self.label_target(y, x)])]
