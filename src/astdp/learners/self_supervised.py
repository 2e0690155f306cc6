"""Self-supervised learning (§2.3.3, §3.1.1).

Stage ``pretrain``: images only. A ``square`` x ``square`` patch at a random position is covered;
the covered pixels are the "outputs" of Algorithm 2: free (or, with ``cover_value`` set, pulled to
that gray level) for ``free_steps``, then targeted with their true values. With inputs set exactly
(``model.input_clamp=exact``) the visible pixels are set in both networks and the covered ones are
then nudged like labels (``model.beta_output``: free in net_s, pulled in net_l), so that the two
networks differ there and ``dz`` carries the inpainting error. The label layer takes
no part (its blocks are zero and frozen).

Stage ``readout``: input->hidden and hidden->hidden weights are frozen; the output blocks are
initialised ("add output neurons") and trained with plain Algorithm 2
(:class:`~astdp.learners.supervised.Supervised`). With ``pretrain_batches`` set, one run does both:
the learner switches from ``pretrain`` to ``readout`` after that many training batches.
"""

from __future__ import annotations

import torch

from astdp.core.engine import Phase, Target, beta_tensor
from astdp.core.network import Network
from astdp.learners.supervised import Supervised


class SelfSupervised(Supervised):
    name = "self_supervised"

    def __init__(self, *args, square: int = 10, image_size: int = 28, cover_value: float | None = None,
                 stage: str = "pretrain", pretrain_batches: int | None = None,
                 generator: torch.Generator | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if stage not in ("pretrain", "readout"):
            raise ValueError(f"learner.stage must be 'pretrain' or 'readout', got {stage!r}")
        if not 0 < square <= image_size:
            raise ValueError(f"learner.square must lie in (0, {image_size}], got {square}")
        self.square, self.image_size, self.cover_value = int(square), int(image_size), cover_value
        if pretrain_batches is not None and pretrain_batches < 0:
            raise ValueError(f"learner.pretrain_batches must be >= 0 or null, got {pretrain_batches}")
        self.stage = stage
        self.pretrain_batches = pretrain_batches
        self.batches_seen = 0
        self.generator = generator
        self._net: Network | None = None

    def prepare(self, net: Network) -> None:
        """Freeze what this stage must not learn (call once before training)."""
        self._net = net
        out_layer = self.topology.output_layer
        out_blocks = set(net.blocks_touching(out_layer))
        if self.stage == "pretrain":
            for k in out_blocks:
                net.weights[k].zero_()
            net.biases[out_layer].zero_()
            net.frozen = set(out_blocks)
            net.frozen_bias = {out_layer}
        else:
            net.frozen = set(range(len(net.weights))) - out_blocks
            net.frozen_bias = set(range(self.topology.n_layers)) - {out_layer}

    def state_dict(self) -> dict:
        state = {"stage": self.stage, "batches_seen": self.batches_seen}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        """The stage, its batch counter and the square generator; a saved readout stage is re-frozen
        without re-initialising its blocks (their trained values come with the checkpoint)."""
        self.batches_seen = int(state.get("batches_seen", self.batches_seen))
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])
        stage = state.get("stage", self.stage)
        if stage != self.stage:
            self.stage = stage
            if self._net is not None:
                self.prepare(self._net)

    def cover_mask(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, H*W) boolean: True under the square (drawn with ``generator``, default the learner's)."""
        size, sq, gen = self.image_size, self.square, generator or self.generator
        r = torch.randint(0, size - sq + 1, (batch,), generator=gen)
        c = torch.randint(0, size - sq + 1, (batch,), generator=gen)
        rows = torch.arange(size).view(1, size, 1)
        cols = torch.arange(size).view(1, 1, size)
        m = ((rows >= r.view(-1, 1, 1)) & (rows < (r + sq).view(-1, 1, 1))
             & (cols >= c.view(-1, 1, 1)) & (cols < (c + sq).view(-1, 1, 1)))
        return m.view(batch, -1).to(device)

    def inpaint_phases(self, x: torch.Tensor, covered: torch.Tensor, steps: int | None = None) -> list[Phase]:
        """Testing the inpainting: the pixels outside ``covered`` (B, n_in) set (or nudged) as in
        training, the covered ones free in both networks, learning off."""
        inp = self.input_target(x)
        seen = Target(inp.layer, inp.value, inp.beta * (1.0 - covered.to(inp.beta.dtype)), inp.exact)
        return [Phase(steps or self.steps, [seen], learn=False)]

    def start_readout(self) -> None:
        """Switch to the readout stage: fresh output blocks, everything else frozen."""
        self.stage = "readout"
        net = self._net
        for k in net.blocks_touching(self.topology.output_layer):
            net.reinit_block(k, self.generator)
        self.prepare(net)

    def phases(self, x, y):
        if self.stage == "pretrain" and self.pretrain_batches is not None and self.batches_seen >= self.pretrain_batches:
            self.start_readout()
        self.batches_seen += 1
        if self.stage == "readout":
            return super().phases(x, y)
        clamped = self.input_target(x)
        covered = self.cover_mask(x.shape[0], x.device).to(x.dtype)  # (B, n_in)
        free_beta = clamped.beta * (1.0 - covered)
        value = clamped.value
        if self.cover_value is not None:
            value = torch.where(covered.bool(), torch.full_like(value, self.cover_value), value)
            free_beta = clamped.beta.expand(2, *covered.shape)
        free = Target(clamped.layer, value, free_beta, clamped.exact)
        out = [Phase(self.free_steps, [free])] if self.free_steps else []
        if clamped.exact:  # pixels set alike in both networks: the covered ones take the labels' part
            seen = Target(clamped.layer, clamped.value, clamped.beta * (1.0 - covered), exact=True)
            hidden = Target(clamped.layer, clamped.value, beta_tensor(self.dynamics.output_beta, x) * covered)
            return out + [Phase(self.steps - self.free_steps, [seen, hidden])]
        return out + [Phase(self.steps - self.free_steps, [clamped])]
