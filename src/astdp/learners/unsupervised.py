"""Algorithm 1: every visible neuron (image and label) has its target for all ``steps`` steps."""

from __future__ import annotations

from astdp.core.engine import Phase
from astdp.learners.base import Learner


class Unsupervised(Learner):
    name = "unsupervised"

    def phases(self, x, y):
        targets = [self.input_target(x)]
        if y is not None:
            targets.append(self.label_target(y, x))
        return [Phase(self.steps, targets)]
