"""Conditional generation (§2.3.4, §3.1.2): the label neurons are targeted, the image is free.

The caller starts from a random state; :meth:`phases` clamps only the output (label) layer and
learns nothing. The generated image is read from the input layer of net_l.
"""

from __future__ import annotations

from astdp.core.engine import Phase
from astdp.learners.base import Learner


class Generation(Learner):
    name = "generation"

    def phases(self, x, y):
        return [Phase(self.steps, [self.label_target(y, x)], learn=False)]
