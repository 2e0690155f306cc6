"""The relaxation loop: both networks, targets, fake targets and the aSTDP update at every step.

One call of :meth:`Relaxer.run` plays a list of :class:`Phase` s on a batch (e.g. Algorithm 2's
free phase then clamped phase). The equations are computed by functions on tensors in the modules
named for them; this loop calls them, in place on its buffers, in this order each step:

1. ``z = rho(s)``, ``rho'(s)`` for both networks             activations.get_into
   ``dz = z_l - z_s``                                         plasticity.difference_into    (15)
2. ``W z + b`` per receiving layer                            dynamics.drive_into           (2)
3. force ``f = rho'(s) (W z + b) - s + beta (t - s)``         dynamics.force_               (1), (5)
4. fake targets on hidden neurons from ``dz`` and its         fake_target.running_mean_,    (16)-(18)
   running mean, nudging like targets                         fire_into, value_into, nudge_
5. the state step, plain or with momentum, then in the        dynamics.momentum_, euler_    (19)-(20)
   bounded reading ``s <- clip(s, lo, hi)``; exact targets ``s = t``
6. if learning: ``W += alpha dz^T z_s``, ``b += alpha sum dz`` plasticity.apply             (15)
   (same-instant factors), optional derivative smoothing      plasticity.smoothing_signal_into (21)-(23)

Shapes: ``s``, ``z``, ``rho'``, ``f``: (2, B, N) (net_s then net_l); ``dz``: (B, N).

How it is computed (the cost of a step should be its matrix products):
- The states of both networks are stacked, so each connected block costs one forward GEMM
  ``(2B, span) @ (span, n_post)`` written straight into its columns of a (2B, N) buffer, and one
  update GEMM ``(n_post, B) @ (B, span)`` added in place to the stored weights.
- Targets enter the force as ``f = R + a * s + c`` with ``a = -(1 + beta)`` and ``c = beta * t``
  (``a = -1``, ``c = 0`` where a neuron has no target). ``a`` and ``c`` are built once per phase,
  so a step runs a fixed number of whole-state element-wise passes, whatever the targets are.
- Every buffer lives in a per-batch-size workspace reused from step to step: nothing is allocated
  in the loop except a few (B, N_hidden) temporaries of the fake targets.
- Exactly clamped inputs (``Target.exact``, the whole input layer) are set once per phase; the
  step then works on the columns after the input layer only: no GEMM into the input layer, no
  element-wise pass over its states, no update of the blocks into it (``dz`` is zero there).
  The blocks *from* such inputs run once per phase, not per step: their drive is kept up to date
  through the (B, B) Gram matrix of the inputs and their updates are summed and applied at the
  end of the phase (:meth:`Relaxer._defer_begin`; the same weights at every step in exact arithmetic).
- Data parallel (``Relaxer.reduce_hook``): a step's update is either summed as dense matrices over
  the processes, or built by every process from everyone's gathered ``dz`` and ``z_s``, which keeps
  the once-per-phase path of the blocks from clamped inputs (:meth:`Relaxer._exchange_begin`).
- A shared phase (``Phase.shared``: net_l starts as a copy of net_s and has the same targets, so
  the two stay equal and ``dz = 0``) steps net_s alone, with no update, and copies it into net_l
  at the end: half the products of a step and none of its updates.
- Precision (``Relaxer.set_precision``, ``trainer.precision=bf16-mixed``): the products above take
  bfloat16 operands; states, ``dz``, weights and their updates stay fp32 (:mod:`astdp.core.precision`).
- Nothing in the loop reads a value back to the host, so on CUDA the steps queue without
  synchronising; the only sync is the convergence check every ``check_every`` steps.

The fused engine (``Relaxer.engine = "fused"``, :mod:`astdp.core.fused`) keeps 2. and 6. as they
are, called through lists built once per phase, and replaces 1., 3.-5. and the next step's 1. by
one compiled pass; its fake-target uniforms come from a counter-based hash (:mod:`astdp.core.draws`),
which the eager loop also takes when ``Relaxer.draws = "counter"``.

Inference tracking records, per sample, the first step (counted from the data change) at which
``max_i |s_i(t+1) - s_i(t)| < tol`` in both networks (the real change, after clipping), and can stop once every sample has converged.
Everything runs under ``torch.no_grad()``; nothing here builds an autograd graph.

The code is split by concern: :mod:`astdp.core.phases` (what a run takes and returns),
:mod:`astdp.core.workspace` (the per-step buffers), :mod:`astdp.core.deferral` (blocks from clamped
inputs once per phase), :mod:`astdp.core.exchange` (data parallel with factors); this module is the loop.
"""
from __future__ import annotations

import functools
import logging

import torch

from astdp.core import activations, draws, dynamics, fake_target, fused, plasticity
from astdp.core.deferral import ClampedDeferral
from astdp.core.dynamics import Dynamics
from astdp.core.exchange import FactorExchange, _Exchange  # noqa: F401  (importable from here as before)
from astdp.core.network import Network
from astdp.core.phases import FakeTargets, Phase, RunStats, Target, beta_tensor  # noqa: F401
from astdp.core.plasticity import Plasticity
from astdp.core.precision import Products
from astdp.core.precision import products_for as precision_products
from astdp.core.state import State
from astdp.core.workspace import Workspace

_Workspace = Workspace  # the name it had before the split
log = logging.getLogger(__name__)
ENGINES = ("eager", "fused")  # how a phase's steps run (Relaxer.engine); both compute the same equations


def _converged(conv, dmax, tol, step: int, stop: bool, check_every: int) -> bool:
    """Record in ``conv`` the samples whose change fell below ``tol`` at ``step``; True when the
    run may stop (every sample has converged, checked every ``check_every`` steps)."""
    if conv is None:
        return False
    conv.masked_fill_((dmax < tol) & (conv < 0), step)
    return stop and step % check_every == 0 and bool((conv >= 0).all())


def _cloned(args) -> list:
    """Copies of the step's arguments with the same shapes and strides."""
    def copy(t: torch.Tensor) -> torch.Tensor:
        return t.new_empty_strided(t.size(), t.stride()).copy_(t)

    return [tuple(copy(t) for t in a) if isinstance(a, tuple) else copy(a) for a in args]


class Relaxer(ClampedDeferral, FactorExchange):
    """Runs phases on a :class:`State`; owns no state of its own beyond configuration and scratch buffers."""

    def __init__(
        self,
        net: Network,
        dynamics: Dynamics,
        plasticity_cfg: Plasticity,
        fake: FakeTargets,
        generator: torch.Generator | None = None,
        reduce_hook=None,
        engine: str = "eager",
        draw_seed: int = 0,
    ) -> None:
        self.net = net
        self.dyn = dynamics
        self.plast = plasticity_cfg
        self.fake = fake
        self.generator = generator
        self.reduce_hook = reduce_hook
        self.defer_clamped = True  # blocks from exactly clamped inputs once per phase (False: every step)
        self._workspaces: dict[tuple, Workspace] = {}
        self.draw_counter = torch.zeros((), dtype=torch.int64)  # counter draws made so far (checkpointed)
        self.draw_key = torch.tensor(draws.seed_key(draw_seed), dtype=torch.int64)
        self._ready: set = set()  # (spec, shapes) whose compiled step has run once
        self.fused_batch: int | None = None  # the batch size the fused step is compiled for (None: any)
        self.cast: Products | None = None  # low-precision products (set_precision); None: fp32
        self.set_engine(engine)

    def set_engine(self, engine: str) -> None:
        """``eager``: the step as separate torch operations, fake-target draws from ``generator``;
        ``fused``: the element-wise part of every step in one compiled pass (:mod:`astdp.core.fused`)
        with counter-based draws (:mod:`astdp.core.draws`). ``draws`` may be set apart afterwards
        (``counter`` in the eager engine gives it the fused engine's draws)."""
        if engine not in ENGINES:
            raise ValueError(f"model.engine must be one of {('auto', *ENGINES)}, got {engine!r}")
        self.engine = engine
        self.draws = "counter" if engine == "fused" else "generator"

    def set_precision(self, precision: str | None) -> None:
        """``trainer.precision``: ``bf16-mixed`` (``16-mixed``) runs the products of every step with
        low-precision operands, everything else in fp32 (:mod:`astdp.core.precision`); None or
        ``32-true``: fp32 products."""
        self.cast = precision_products(precision)

    def seed_draws(self, seed: int) -> None:
        """Restart the counter draws from ``seed`` (e.g. one stream per data-parallel process)."""
        self.draw_key = torch.tensor(draws.seed_key(seed), dtype=torch.int64, device=self.draw_key.device)
        self.draw_counter.zero_()

    @torch.no_grad()
    def run(
        self,
        state: State,
        phases: list[Phase],
        alpha: float | None = None,
        fake_on: bool | None = None,
        track_tol: float | None = None,
        stop_when_converged: bool = False,
        record: bool = False,
        check_every: int = 1,
    ) -> RunStats:
        alpha = self.plast.current_alpha if alpha is None else alpha
        fake_on = self.fake.enabled if fake_on is None else fake_on
        s = state.s
        batch = s.shape[1]
        dev, dt = s.device, s.dtype
        ws = self._workspace(state)
        ws.carry = None  # the weights may have changed since the last call
        scales = self.plast.scales(self.net.topology)  # per-block / per-layer rates, once per call
        dz_sum = torch.zeros((), device=dev, dtype=dt)  # sum of |dz| over steps, samples, neurons
        fire_sum = torch.zeros((), device=dev, dtype=dt)  # number of fake targets fired
        conv = torch.full((batch,), -1, dtype=torch.long, device=dev) if track_tol is not None else None
        trace: list[dict[str, torch.Tensor]] = []
        check_every = max(int(check_every), 1)
        step = 0
        done = False
        pairs_before = self._pair_snapshot(alpha > 0 and any(p.learn for p in phases))
        for phase in phases:
            nets = 1 if phase.shared else 2
            if phase.shared:  # net_l joins net_s: only net_s is stepped, dz = 0
                state.s[1].copy_(state.s[0])
                state.v[1].copy_(state.v[0])
            ws.set_targets(self.net.topology, phase.targets, state, self.dyn.activation)
            if phase.shared:
                self._check_shared(ws)
                ws.dz.zero_()
                ws.adz.zero_()
            learn = phase.learn and alpha > 0 and not phase.shared
            self._exchange_begin(ws, alpha if learn else 0.0, scales)
            self._defer_begin(ws, alpha if learn else 0.0, scales)
            if self._fused_applies(record, learn, batch):
                step, done = self._fused_phase(state, ws, phase.steps, nets, fake_on, alpha if learn else 0.0, scales,
                                               conv, track_tol, stop_when_converged, check_every, step, dz_sum,
                                               fire_sum)
                phase_steps = 0
            else:
                phase_steps = phase.steps
            for _ in range(phase_steps):
                dmax, fired = self._advance(state, ws, fake_on, alpha if learn else 0.0, scales,
                                            track=conv is not None, nets=nets)
                dz_sum.add_(ws.adz.sum())
                if fired is not None:
                    fire_sum.add_(fired.sum())
                if record:
                    trace.append({"s": s.clone(), "dz": ws.dz.clone(), "fired": fired.bool() if fired is not None
                                  else torch.zeros(batch, 0, dtype=torch.bool, device=dev)})
                step += 1
                if _converged(conv, dmax, track_tol, step, stop_when_converged, check_every):
                    done = True
                    break
            self._defer_end(ws)
            if phase.shared:
                state.s[1].copy_(state.s[0])
                state.v[1].copy_(state.v[0])
            if done:
                break
        if pairs_before is not None:
            self.net.share_updates_(pairs_before)
        n = max(step, 1)
        t = self.net.topology
        n_hidden = t.hidden_slice.stop - t.hidden_slice.start
        return RunStats(dz_abs=dz_sum / (n * batch * t.n), fake_rate=fire_sum / (n * batch * max(n_hidden, 1)),
                        steps=step, converge_step=conv, trace=trace)

    @torch.no_grad()
    def step(self, state: State, targets: dict[int, Target], fake_on: bool, alpha: float, track: bool = False):
        """One relaxation step of both networks, in place. Returns (max|ds| (B,) or None, dz, fired).

        A stand-alone step (e.g. with targets that change at every step); :meth:`run` is the fast
        path for phases. The returned tensors are the caller's to keep.
        """
        ws = self._workspace(state)
        ws.set_targets(self.net.topology, targets.values(), state, self.dyn.activation)
        pairs_before = self._pair_snapshot(alpha > 0)
        dmax, fired = self._advance(state, ws, fake_on, alpha, self.plast.scales(self.net.topology), track)
        if pairs_before is not None:
            self.net.share_updates_(pairs_before)
        return (dmax.clone() if track else None), ws.dz.clone(), (fired.bool() if fired is not None else None)

    # -- internals ----------------------------------------------------------------------------------
    def _pair_snapshot(self, learns: bool):
        """With shared pair updates and learning on, the pairs' weights before the run."""
        return self.net.pair_snapshot() if learns and self.net.pairs != "own" else None

    def _workspace(self, state: State) -> Workspace:
        s = state.s
        key = (s.shape[1], s.shape[2], s.dtype, s.device)
        ws = self._workspaces.get(key)
        hs = self.net.topology.hidden_slice
        if ws is None or ws.key != (self.dyn.eps, hs.stop - hs.start):
            if len(self._workspaces) > 4:  # e.g. many different short last batches
                self._workspaces.clear()
            ws = Workspace(s.shape[2], hs.stop - hs.start, s.shape[1], s.dtype, s.device, self.dyn.eps)
            self._workspaces[key] = ws
        return ws

    def _advance(self, state: State, ws: Workspace, fake_on: bool, alpha: float, scales, track: bool,
                 nets: int = 2):
        """One step with the targets already folded into ``ws``. Returns (max|ds| (B,) or None, fired).

        Works on the state columns ``[ws.lo, N)``: the columns before hold exactly clamped inputs
        whose ``rho``, ``rho'`` and zero ``dz`` were written by :meth:`Workspace.set_targets`.
        ``nets=1`` steps net_s alone (a shared phase: net_l is a copy of it, ``dz`` stays 0, no learning).
        """
        net, t, dyn = self.net, self.net.topology, self.dyn
        lo, n, batch = ws.lo, t.n, state.s.shape[1]
        s = state.s[:nets, :, lo:]  # (nets, B, N - lo)
        z, d, f = ws.z[:nets, :, lo:], ws.d[:nets, :, lo:], ws.force[:nets, :, lo:]
        activations.get_into(dyn.activation)(s, z, d)  # rho(s), rho'(s): (nets, B, N - lo) each
        if nets == 2:
            plasticity.difference_into(z, ws.dz[:, lo:], ws.adz[:, lo:])  # dz = z_l - z_s, eq (15)
        exchange = None
        if alpha > 0 and ws.factors:  # this step's factors travel while the step runs
            if ws.exchange.ops is None:  # once per phase
                before, start, wait, after = self._exchange_ops(ws, self.plast.rate(alpha, batch), scales)
                ws.exchange.ops = ((*before, start), (wait, *after))
            exchange = ws.exchange.ops
            for op in exchange[0]:
                op()
        dynamics.drive_into(net, ws.z[:nets].view(nets * batch, n), ws.pre[: nets * batch], ws.skip,
                            ws.fixed, nets=nets, patches=ws.patches, cast=self.cast)  # W z + b, eq (2)
        smooth = alpha > 0 and self.plast.smoothing > 0
        smooth_signal = None
        if smooth:  # eq (21), on net_s; zero on clamped inputs
            smooth_signal = torch.zeros(batch, n, dtype=s.dtype, device=s.device)
            plasticity.smoothing_signal_into(f[0], d[0], s[0], smooth_signal[:, lo:])
            for sl, keep, _ in ws.exact:
                smooth_signal[:, sl].mul_(keep[0])
        dynamics.force_(f, d, s, ws.a[:nets, :, lo:], ws.c[:nets, :, lo:])  # R - s + beta (t - s), eq (1) + (5)

        fired = None
        if fake_on and nets == 2:  # eq (16)-(18)
            fired = self._fake_targets(state, ws)
        elif fake_on:  # dz = 0: no fake target fires, the running mean of |dz| decays
            hs = t.hidden_slice
            fake_target.running_mean_(state.dzm[:, hs], ws.adz[:, hs], self.fake.m)

        if dyn.momentum < 1.0:  # eq (19)-(20)
            f = dynamics.momentum_(state.v[:nets, :, lo:], f, dyn.momentum)
        exact_change = track and (dyn.bounds is not None or bool(ws.exact))
        if exact_change:  # rho'(s) in d is no longer needed: keep the old state there
            d.copy_(s)
        dynamics.euler_(s, f, ws.eps[:nets], dyn.bounds)
        for sl, keep, value in ws.exact:  # exact targets, s = t
            state.s[:nets, :, sl].mul_(keep[:nets]).add_(value[:nets])
            if dyn.momentum < 1.0:
                state.v[:nets, :, sl].mul_(keep[:nets])
        dmax = None
        dmax_nets = ws.dmax[:nets]
        if exact_change:  # the real change of the clipped, clamped state
            torch.amax(d.sub_(s).abs_(), dim=2, out=dmax_nets)
            dmax = dmax_nets.amax(dim=0)  # (B,)
        elif track:  # the change is eps * f: reuse d for |f|
            torch.amax(torch.abs(f, out=d), dim=2, out=dmax_nets)
            dmax = dmax_nets.mul_(ws.eps[:nets].view(nets, 1)).amax(dim=0)  # (B,)

        if alpha > 0:  # eq (15), then eq (22)-(23)
            rate = self.plast.rate(alpha, batch)
            if exchange is not None:  # everyone's factors and partial sums, then the summed update from them
                for op in exchange[1]:
                    op()
            else:
                plasticity.apply(net, ws.dz, ws.z[0], rate, self.reduce_hook, skip_posts=ws.skip, scales=scales,
                                 skip_blocks=ws.deferred_keys, patches=ws.patches, cast=self.cast)
            self._defer_step(ws)
            if smooth:
                plasticity.apply(net, smooth_signal, ws.z[0], -self.plast.rate(self.plast.smoothing, batch),
                                 self.reduce_hook, skip_posts=ws.skip, scales=scales, cast=self.cast)
        return dmax, fired

    def _check_shared(self, ws: Workspace) -> None:
        """A shared phase needs the two networks to step alike: one step size, the same targets in both."""
        same = (self.dyn.eps[0] == self.dyn.eps[1] and torch.equal(ws.a[0], ws.a[1]) and torch.equal(ws.c[0], ws.c[1])
                and all(torch.equal(keep[0], keep[1]) and torch.equal(v[0], v[1]) for _, keep, v in ws.exact))
        if not same:
            raise ValueError("a shared phase (learner.shared_free=true) needs both networks to step alike: "
                             f"set model.eps to one value for both (got {list(self.dyn.eps)}) and give the phase's "
                             "targets the same nudging in both networks, or set learner.shared_free=false")

    def _fake_targets(self, state: State, ws: Workspace) -> torch.Tensor:
        """Add the fake-target pull on hidden neurons to the force; returns fired (B, N_hidden) as 0/1."""
        hs, fk = self.net.topology.hidden_slice, self.fake
        u, scratch, t_f, fired, beta_fired, pull = ws.fake_buffers()
        dz_h, adz_h, dzm = ws.dz[:, hs], ws.adz[:, hs], state.dzm[:, hs]  # (B, N_hidden)
        fake_target.running_mean_(dzm, adz_h, fk.m)  # eq (18)
        self._uniform_into(u)
        fake_target.fire_into(adz_h, dzm, u, fk.k, fk.rule, fired, scratch)  # Algorithm 1 / eq (18)
        fake_target.value_into(dz_h, fk.t_c, fk.center, t_f)  # eq (16)
        fake_target.nudge_(ws.force[:, :, hs], state.s[:, :, hs], fired, self._fake_beta(ws), t_f, beta_fired, pull)
        return fired

    def _uniform_into(self, u: torch.Tensor) -> None:
        """One draw of ``U(0, 1)`` per hidden neuron and sample, from ``generator`` or the counter."""
        if self.draws == "counter":
            counter, key = self._draw_tensors(u.device)
            u.copy_(draws.uniform(counter, key, u.shape[0], u.shape[1], u.dtype))
            counter.add_(1)
        else:
            torch.rand(u.shape, generator=self.generator, dtype=u.dtype, device=u.device, out=u)

    def _draw_tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.draw_counter.device != device:
            self.draw_counter = self.draw_counter.to(device)
            self.draw_key = self.draw_key.to(device)
        return self.draw_counter, self.draw_key

    # -- the fused engine -------------------------------------------------------------------------------
    def _fused_applies(self, record: bool, learn: bool, batch: int) -> bool:
        """The fused step covers every option but traces (``record``) and derivative smoothing, and
        runs batches of ``fused_batch`` samples when set: another size (the short last batch of an
        epoch) takes eager steps with the same draws rather than a compile of its own."""
        return (self.engine == "fused" and not record and not (learn and self.plast.smoothing > 0)
                and self.fused_batch in (None, batch))

    def _fused_phase(self, state: State, ws: Workspace, steps: int, nets: int, fake_on: bool, alpha: float, scales,
                     conv, track_tol, stop_when_converged: bool, check_every: int, step: int, dz_sum, fire_sum):
        """The steps of one phase with the element-wise work in one compiled call per step.

        A step's products come first (the drive from ``z``, then the update from ``dz`` and ``z_s``:
        both read the step's start, and the update does not change the drive already computed), then
        the compiled pass, which also leaves ``z = rho(s)``, ``dz`` and the column sums of ``dz`` of
        the next step's start. Every call is built once per phase. With gathered factors
        (:meth:`_exchange_begin`) the step's message is sent before its products and received after
        the compiled pass, and the update from it applied then: the exchange overlaps the step.
        Returns (steps so far, stopped early).
        """
        net, t, dyn = self.net, self.net.topology, self.dyn
        lo, n, batch = ws.lo, t.n, state.s.shape[1]
        s, z = state.s[:nets, :, lo:], ws.z[:nets, :, lo:]
        activations.get_into(dyn.activation)(s, z, ws.d[:nets, :, lo:])  # the first step's start
        if nets == 2:
            plasticity.difference_into(z, ws.dz[:, lo:], ws.adz[:, lo:])
        pending = ws.adz.sum()  # sum |dz| of the coming step's start
        dz_cols = ws.dz.sum(0)  # (N,) its column sums, which the compiled step keeps up to date
        ops = dynamics.drive_ops(net, ws.z[:nets].view(nets * batch, n), ws.pre[: nets * batch], ws.skip, ws.fixed,
                                narrow=True, nets=nets, patches=ws.patches, cast=self.cast)
        late: list = []  # calls after the compiled pass
        if alpha > 0:
            rate = self.plast.rate(alpha, batch)
            if ws.factors:  # the message travels while the drive and the compiled pass run
                before, start, wait, after = self._exchange_ops(ws, rate, scales, column_sums=dz_cols)
                ops = [*before, start, *ops]
                late = [wait, *after, *self._defer_ops(ws)]
            elif self.reduce_hook is None:
                ops += plasticity.update_ops(net, ws.dz, ws.z[0], rate, ws.skip, scales, ws.deferred_keys, narrow=True,
                                             column_sums=dz_cols, patches=ws.patches, cast=self.cast)
            else:
                ops.append(functools.partial(plasticity.apply, net, ws.dz, ws.z[0], rate, self.reduce_hook,
                                             skip_posts=ws.skip, scales=scales, skip_blocks=ws.deferred_keys))  # conv: dense deltas
            if not ws.factors:
                ops += self._defer_ops(ws)
        spec, args = self._fused_args(state, ws, nets, fake_on, conv is not None, dz_cols)
        kernel = self._kernel(spec, args)
        done = False
        for _ in range(steps):
            dz_sum.add_(pending)
            for op in ops:
                op()
            dmax, adz_sum, fired, _ = kernel(*args)
            for op in late:
                op()
            if adz_sum is not None:
                pending = adz_sum
            if fired is not None:
                fire_sum.add_(fired)
            step += 1
            if _converged(conv, dmax, track_tol, step, stop_when_converged, check_every):
                done = True
                break
        return step, done

    def _fused_args(self, state: State, ws: Workspace, nets: int, fake_on: bool, track: bool, dz_cols: torch.Tensor):
        """The :class:`fused.StepSpec` of this phase and the tensors its step reads and writes."""
        t, dyn, fk, lo = self.net.topology, self.dyn, self.fake, ws.lo
        hs = t.hidden_slice
        exact = tuple((sl.start - lo, sl.stop - lo) for sl, _, _ in ws.exact)
        if any(a < 0 for a, _ in exact):
            raise ValueError("an exact clamp inside an exactly clamped input layer")
        spec = fused.StepSpec(
            nets=nets, activation=dyn.activation, eps=tuple(dyn.eps[:nets]), bounds=dyn.bounds, momentum=dyn.momentum,
            fake=("fire" if nets == 2 else "decay") if fake_on else "off", k=fk.k, t_c=fk.t_c, center=fk.center,
            m=fk.m, rule=fk.rule, fake_beta=tuple(fk.beta or dyn.beta), hidden=(hs.start - lo, hs.stop - lo),
            exact=exact, track=track, track_real=dyn.bounds is not None or bool(ws.exact))
        counter, key = self._draw_tensors(state.s.device)
        per_net = [tuple(x[i] for i in range(nets)) for x in (
            ws.force[:, :, lo:], state.s[:, :, lo:], state.v[:, :, lo:], ws.z[:, :, lo:],
            ws.a[:, :, lo:], ws.c[:, :, lo:])]
        pre, s, v, z, a, c = per_net
        args = (pre, s, v, z, ws.dz[:, lo:], a, c, state.dzm[:, lo:], ws.hidden_mask(hs, lo), counter, key,
                tuple(keep[:nets] for _, keep, _ in ws.exact), tuple(val[:nets] for _, _, val in ws.exact),
                dz_cols[lo:])
        return spec, args

    def _kernel(self, spec: fused.StepSpec, args):
        """The compiled step for ``spec``; compiled on copies of ``args`` the first time it meets their
        shapes, so that a failure leaves the state as it was. If compiling fails, the engine turns
        eager for good with a one-line notice, and the eager step runs in its place."""
        key = (spec, (*fused.layout(args), torch.get_num_threads()))  # CPU code is generated for a thread count
        kernel = fused.compiled(*key)
        if key in self._ready:
            return kernel
        try:
            kernel(*_cloned(args))
        except Exception as err:  # noqa: BLE001 (any compiler failure: the eager step is the fallback)
            log.warning("model.engine=fused: compiling the step failed (%s: %s); running eager",
                        type(err).__name__, str(err).splitlines()[0] if str(err) else "")
            self.set_engine("eager")
            self.draws = "counter"  # keep the same stream of draws
            return functools.partial(fused.step, spec)  # the same step uncompiled, for the rest of this phase
        self._ready.add(key)
        return kernel

    def _fake_beta(self, ws: Workspace) -> torch.Tensor:
        pair = self.fake.beta or self.dyn.beta
        if getattr(ws, "fake_beta_pair", None) != pair:
            ws.fake_beta, ws.fake_beta_pair = beta_tensor(pair, ws.dz), pair
        return ws.fake_beta
