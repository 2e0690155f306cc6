"""Conditional generation (§2.3.4, §3.1.2): Algorithm 2 with inputs and outputs swapped.

Training: the one-hot label takes the inputs' part (set, or nudged with ``model.beta_input``, as
``model.input_clamp`` says) for ``free_steps`` while the image is free; then the image takes the
labels' part (``model.beta_output``: free in net_s, pulled to the pixels in net_l), so that ``dz``
at the pixels carries the drawing error and the blocks into the input layer learn to draw the
digit from the label. With ``image_feedback="fixed"`` (the default) the weights *from* the image
to the hidden layer keep their random initial values: learned, their loop with the hidden layer
outgrows the label's pull and every label draws the same image (docs/FINDINGS.md section 14);
``feedback_scale`` multiplies those fixed weights once, before training (0.3: at 1 their random
feedback can still outweigh the label, on one seed in three).
Generating (:meth:`~astdp.system.System.generate`): fresh random states, the
label set as in training, the image free, no learning. The blocks into the label layer do not
learn here, so the net does not classify.
"""

from __future__ import annotations

from astdp.core.engine import Phase, Target, beta_tensor
from astdp.learners.supervised import Supervised


class Generation(Supervised):
    name = "generation"

    def __init__(self, *args, image_feedback: str = "fixed", feedback_scale: float = 0.3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.cover:
            raise ValueError("learner.cover is for learner=supervised; learner=generation draws every pixel")
        if image_feedback not in ("fixed", "learned"):
            raise ValueError(f"learner.image_feedback must be 'fixed' or 'learned', got {image_feedback!r}")
        if feedback_scale < 0:
            raise ValueError(f"learner.feedback_scale must be >= 0, got {feedback_scale}")
        self.image_feedback, self.feedback_scale = image_feedback, float(feedback_scale)

    def prepare(self, net) -> None:
        if self.image_feedback == "fixed":
            net.freeze_from(self.topology.input_layer, self.feedback_scale)

    def label_target(self, y, like) -> Target:
        """The label as the swapped net's input: set (or nudged) with the inputs' strength."""
        t = super().label_target(y, like)
        return Target(t.layer, t.value, beta_tensor(self.dynamics.input_beta, t.value),
                      exact=self.dynamics.input_clamp == "exact")

    def phases(self, x, y):
        label = self.label_target(y, x)
        pixels = self.input_target(x, self.dynamics.output_beta)
        image = Target(pixels.layer, pixels.value, pixels.beta)  # nudged, never set
        out = [Phase(self.free_steps, [label])] if self.free_steps else []
        return out + [Phase(self.steps - self.free_steps, [label, image])]
