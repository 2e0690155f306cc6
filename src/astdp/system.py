"""A trained aSTDP system in plain torch: one network, a learner, and the persistent states.

``train_state`` holds one two-network state per batch slot, carried from sample to sample for the
whole run (``persistent=False``: drawn afresh for every batch); ``eval_state`` does the same for
testing so that evaluation never disturbs training. The System is an ``nn.Module``: the network's
weights and biases are its (gradient-free) parameters and the states its buffers, so ``.to()``,
``state_dict()`` and checkpoints carry them; the harness (Lightning) holds it as a submodule, and
scripts and tests use it directly.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from astdp.core import fused
from astdp.core.dynamics import Dynamics
from astdp.core.engine import ENGINES, FakeTargets, Phase, Relaxer, RunStats
from astdp.core.network import Network, Topology
from astdp.core.plasticity import Plasticity
from astdp.core.state import State
from astdp.learners.base import Learner

READOUTS = {"s": 0, "l": 1}
ENGINE_CHOICES = ("auto", *ENGINES)
# model.engine=auto compiles the fused step only for runs of at least this many element-steps
# (relaxation steps x batch x neurons): below it the compile (tens of seconds on a cold cache, a few
# on a warm one) costs more than the fused steps save (docs/BENCHMARKS.md).
AUTO_MIN_WORK = 1e9
log = logging.getLogger(__name__)


class System(nn.Module):
    def __init__(
        self,
        topology: Topology,
        dynamics: Dynamics,
        plasticity: Plasticity,
        fake: FakeTargets,
        learner: Learner,
        batch_size: int,
        seed: int = 0,
        readout: str = "l",
        infer_fake: bool = False,
        persistent: bool = True,
        pairs: str = "own",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        engine: str = "auto",
    ) -> None:
        if engine not in ENGINE_CHOICES:
            raise ValueError(f"model.engine must be one of {ENGINE_CHOICES}, got {engine!r}")
        if readout not in READOUTS:
            raise ValueError(f"model.readout must be one of {sorted(READOUTS)}, got {readout!r}")
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        super().__init__()
        self.topology, self.dynamics, self.learner = topology, dynamics, learner
        self.batch_size, self.readout, self.infer_fake = batch_size, READOUTS[readout], infer_fake
        self.persistent, self.seed = bool(persistent), int(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.net = Network.init(topology, generator=self.generator, dtype=dtype, device=device, pairs=pairs)
        device_gen = self.generator if torch.device(device).type == "cpu" else torch.Generator(device).manual_seed(seed)
        self.relaxer = Relaxer(self.net, dynamics, plasticity, fake, generator=device_gen, draw_seed=seed)
        self.relaxer.fused_batch = batch_size  # a short last batch runs eager steps, not a compile of its own
        self.engine = engine  # as asked; "auto" runs eager until choose_engine (the harness, from the run's length)
        if engine != "auto":
            self.choose_engine()
        self._device_rng: torch.Tensor | None = None  # a device generator state waiting for the move
        for prefix in ("train", "eval"):
            for key, t in self.new_state().tensors().items():
                self.register_buffer(f"{prefix}_{key}", t)
        learner.prepare(self.net)

    def choose_engine(self, work: float | None = None) -> str:
        """Set the relaxer's engine from ``model.engine``; returns the one in use.

        ``fused`` where it can be compiled for this device, else ``eager`` with a one-line notice;
        ``auto`` is ``fused`` when it can be compiled and ``work`` (the run's relaxation steps x batch
        x neurons, None: unknown) reaches :data:`AUTO_MIN_WORK`, else ``eager``.
        """
        want = self.engine
        if want == "auto":
            want = "fused" if work is None or work >= AUTO_MIN_WORK else "eager"
        if want == "fused":
            why = fused.compiler_notice(self.net.weights[0].device)
            if why is not None:
                log.warning("model.engine=%s: %s; running the eager engine", self.engine, why)
                want = "eager"
        if want != self.relaxer.engine:
            self.relaxer.set_engine(want)
        return want

    @property
    def train_state(self) -> State:
        return State(self.train_s, self.train_v, self.train_dzm)

    @property
    def eval_state(self) -> State:
        return State(self.eval_s, self.eval_v, self.eval_dzm)

    # -- devices: the fake-target draws follow the network ------------------------------------------
    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._follow_device()
        return out

    def _follow_device(self) -> None:
        dev = self.net.weights[0].device
        gen = self.relaxer.generator
        if gen is None or gen.device == dev:
            return
        if dev.type == "cpu":
            self.relaxer.generator = self.generator
            return
        self.relaxer.generator = torch.Generator(dev).manual_seed(self.seed)
        if self._device_rng is not None:
            self.relaxer.generator.set_state(self._device_rng)
            self._device_rng = None

    def device_rng_state(self) -> torch.Tensor | None:
        """The state of the fake-target generator when it is not the CPU one; on the CPU, a restored
        one still waiting for the move (a CUDA run resumed on the CPU saves it again); else None."""
        gen = self.relaxer.generator
        return gen.get_state() if gen is not None and gen is not self.generator else self._device_rng

    def set_device_rng_state(self, state: torch.Tensor) -> None:
        """Restore :meth:`device_rng_state`: now if the net is on that device, else at the move there."""
        gen = self.relaxer.generator
        if gen is not None and gen is not self.generator:
            gen.set_state(state)
        else:
            self._device_rng = state

    def new_state(self, batch: int | None = None, generator: torch.Generator | None = None) -> State:
        w = self.net.weights[0]
        return State.init(self.topology.n, batch or self.batch_size, self.dynamics.init_scale,
                          generator=generator or self.generator, dtype=w.dtype, device=w.device)

    def _start(self, state: State) -> State:
        """The state a batch starts from: the slots' last state, or a fresh draw if not persistent."""
        if not self.persistent:
            state.redraw_(self.dynamics.init_scale, self.generator)
        return state

    def train_batch(self, x: torch.Tensor, y: torch.Tensor | None) -> RunStats:
        state = self._start(self.train_state.slots(x.shape[0]))
        learner, relaxer = self.learner, self.relaxer
        if learner.learns_in_relaxation:
            stats = relaxer.run(state, learner.phases(x, y))
        else:  # e.g. Equilibrium Propagation: relax with learning and fake targets off, then one update
            stats = relaxer.run(state, learner.phases(x, y), alpha=0.0, fake_on=False)
            learner.update(self.net, state, relaxer.plast, relaxer.reduce_hook)
        relaxer.plast.decay_weights(self.net)
        return stats

    def diverged(self, limit: float = 10.0) -> str | None:
        """Why the training state or the weights have blown up, else None.

        Healthy states stay within about +-2 (targets and fake targets are at most 1 and t_c);
        ``|s| > limit`` means the relaxation has become unstable.
        """
        s_max = float(self.train_state.s.abs().max())
        if not s_max <= limit:  # also catches NaN
            return f"|s| reached {s_max:.3g} (limit {limit:g})"
        w_max = max(float(w.abs().max()) for w in self.net.weights)
        if not w_max < float("inf"):
            return "the weights are no longer finite"
        return None

    def output(self, state: State) -> torch.Tensor:
        return state.s[self.readout][:, self.topology.slice(self.topology.output_layer)]

    def infer(self, x: torch.Tensor, steps: int | None = None, tol: float = 1e-3,
              stop_when_converged: bool = False, state: State | None = None) -> tuple[torch.Tensor, RunStats]:
        """Testing: learning rate zero, inputs clamped. Returns (output states (B, n_out), stats)."""
        state = self._start((state or self.eval_state).slots(x.shape[0]))
        stats = self.relaxer.run(state, self.learner.test_phases(x, steps), alpha=0.0, fake_on=self.infer_fake,
                                 track_tol=tol, stop_when_converged=stop_when_converged)
        return self.output(state), stats

    @torch.no_grad()
    def generate(self, y: torch.Tensor, steps: int = 160, init_scale: float = 1.0,
                 generator: torch.Generator | None = None, fake: bool = False, noise: float = 0.0) -> torch.Tensor:
        """Conditional generation (§2.3.4, §3.1.2): images (n, n_in) in pixel units, clipped to [0, 1]:
        net_l's input layer after :meth:`generate_state`, mapped back through the learner's pixel map."""
        state = self.generate_state(y, steps, init_scale, generator, fake, noise)
        return self.input_pixels(state, network=1).clamp(0.0, 1.0)

    @torch.no_grad()
    def generate_state(self, y: torch.Tensor, steps: int = 160, init_scale: float = 1.0,
                       generator: torch.Generator | None = None, fake: bool = False, noise: float = 0.0) -> State:
        """Fresh states ``U(-init_scale, init_scale)``, the labels ``y`` (n,) targeted as the learner
        does in training (set, for ``learner=generation``), the image free, no learning, ``steps``
        steps. The persistent states are left untouched.

        ``noise`` > 0: after every step, Gaussian noise of that standard deviation is added to the
        hidden states (the same draw to both networks, so ``dz`` stays as it was; then clipped to
        ``model.bounds``), so that one label's samples wander through its basin instead of all
        settling on its one fixed point.
        """
        gen = generator or self.generator
        w, t = self.net.weights[0], self.topology
        state = State.init(t.n, len(y), init_scale, generator=gen, dtype=w.dtype, device=w.device)
        like = torch.zeros(len(y), t.sizes[0], dtype=w.dtype, device=w.device)
        label = [self.learner.label_target(y.to(w.device), like)]
        if noise <= 0:
            self.relaxer.run(state, [Phase(steps, label, learn=False)], alpha=0.0, fake_on=fake)
            return state
        hs, bounds = t.hidden_slice, self.dynamics.bounds
        for _ in range(steps):
            self.relaxer.run(state, [Phase(1, label, learn=False)], alpha=0.0, fake_on=fake)
            kick = torch.randn(len(y), hs.stop - hs.start, generator=gen, dtype=w.dtype).to(w.device)  # (n, N_hidden)
            state.s[:, :, hs] += noise * kick
            if bounds is not None:
                state.s.clamp_(*bounds)
        return state

    @torch.no_grad()
    def inpaint(self, x: torch.Tensor, covered: torch.Tensor, steps: int | None = None, tol: float = 1e-3,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Inpainting (§3.1.1): the image ``x`` (B, n_in) with the pixels under ``covered`` (B, n_in,
        bool) left free, from fresh random states (so nothing of the covered pixels leaks in), no
        learning, until every sample has converged or after ``steps``; returns the readout network's
        input layer in pixel units (B, n_in), in [0, 1]. The persistent states are left untouched;
        ``generator`` draws the initial states (default: the System's)."""
        state = self.new_state(x.shape[0], generator)
        phases = self.learner.inpaint_phases(x, covered.to(x.dtype), steps)
        self.relaxer.run(state, phases, alpha=0.0, fake_on=self.infer_fake, track_tol=tol, stop_when_converged=True)
        return self.input_pixels(state).clamp(0.0, 1.0)

    def input_pixels(self, state: State, network: int | None = None) -> torch.Tensor:
        """Input-layer states of one network (default: the readout) back in pixel units (B, n_in):
        the inverse of the learner's pixel -> target map."""
        t, (lo, hi) = self.topology, self.learner.input_range
        s = state.s[self.readout if network is None else network, :, t.slice(t.input_layer)]
        return (s - lo) / (hi - lo) if hi != lo else s

    @torch.no_grad()
    def visible_cost(self, x: torch.Tensor, y: torch.Tensor | None, network: int = 0) -> torch.Tensor:
        """eq (6), ``C = 1/2 sum_visible (t - s)^2``, in the training state after a batch; mean over samples.

        ``network`` 0 is net_s (the free network: its cost is what learning lowers), 1 net_l.
        Visible = the input layer, plus the label layer when the learner targets labels.
        """
        learner, t = self.learner, self.topology
        s = self.train_state.s[network, : x.shape[0]]  # (B, N)
        cost = (learner.input_target(x).value - s[:, t.slice(t.input_layer)]).pow(2).sum(1)
        if y is not None and getattr(learner, "stage", None) != "pretrain":
            cost = cost + (learner.label_target(y, x).value - s[:, t.slice(t.output_layer)]).pow(2).sum(1)
        return 0.5 * cost.mean()

    def predict(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        out, _ = self.infer(x, steps)
        return out.argmax(dim=1)
