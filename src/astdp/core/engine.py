"""The relaxation loop: both networks, targets, fake targets and the aSTDP update at every step.

One call of :meth:`Relaxer.run` plays a list of :class:`Phase` s on a batch (e.g. Algorithm 2's
free phase then clamped phase). Each step, in this order:

1. ``z = rho(s)``, ``rho'(s)`` for both networks; ``dz = z_l - z_s``                     (15)
2. fake targets on hidden neurons from ``dz`` and its running mean                       (16)-(18)
3. per receiving layer: ``R = rho'(s) (W z + b)``, force ``f = R - s + beta (t - s)``     (1), (2), (5)
   and the state step (plain or momentum)                                                (19)-(20)
4. if learning: ``W += alpha dz^T z_s``, ``b += alpha sum dz`` (same-instant factors)    (15)
   and optional derivative smoothing                                                     (21)-(23)

Inference tracking records, per sample, the first step (counted from the data change) at which
``max_i |s_i(t+1) - s_i(t)| < tol`` in both networks, and can stop once every sample has converged.
Everything runs under ``torch.no_grad()``; nothing here builds an autograd graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from astdp.core import activations, fake_target, plasticity
from astdp.core.dynamics import Dynamics
from astdp.core.network import Network
from astdp.core.plasticity import Plasticity
from astdp.core.state import State


@dataclass
class FakeTargets:
    enabled: bool = True
    k: float = 50.0  # scale factor k, eq (17)-(18), > 0
    t_c: float = 0.25  # fake target magnitude t_c, eq (16), >= 0
    m: float = 0.95  # running-mean factor m of |dz|, eq (18), in [0, 1)
    rule: str = "algorithm1"  # "algorithm1": P = |dz|/(k dzm);  "eq18": P = k |dz|/dzm
    beta: tuple[float, float] | None = None  # nudging of a firing fake target (None: model.beta)

    def __post_init__(self) -> None:
        if self.k <= 0:
            raise ValueError(f"model.fake_target.k must be > 0, got {self.k}")
        if self.t_c < 0:
            raise ValueError(f"model.fake_target.t_c must be >= 0, got {self.t_c}")
        if not 0.0 <= self.m < 1.0:
            raise ValueError(f"model.fake_target.m must lie in [0, 1), got {self.m}")
        if self.rule not in fake_target.RULES:
            raise ValueError(f"model.fake_target.rule must be one of {fake_target.RULES}, got {self.rule!r}")
        if self.beta is not None:
            self.beta = (float(self.beta[0]), float(self.beta[1]))


@dataclass
class Target:
    """Nudge layer ``layer`` toward ``value`` (B, n) with strength ``beta`` (2, B|1, n|1)."""

    layer: int
    value: torch.Tensor
    beta: torch.Tensor


@dataclass
class Phase:
    steps: int
    targets: list[Target]
    learn: bool = True


@dataclass
class RunStats:
    dz_abs: torch.Tensor  # mean |dz| over steps, neurons and samples (0-d)
    fake_rate: torch.Tensor  # fraction of hidden neurons with an active fake target (0-d)
    steps: int  # relaxation steps actually run
    converge_step: torch.Tensor | None = None  # (B,) first converged step, -1 if never
    trace: list[dict[str, torch.Tensor]] = field(default_factory=list)

    @property
    def converged(self) -> torch.Tensor:
        return self.converge_step >= 0


def beta_tensor(pair: tuple[float, float], like: torch.Tensor) -> torch.Tensor:
    """(2, 1, 1) nudging strengths of (net_s, net_l)."""
    return torch.tensor(pair, dtype=like.dtype, device=like.device).view(2, 1, 1)


class Relaxer:
    """Runs phases on a :class:`State`; owns no state of its own beyond configuration."""

    def __init__(
        self,
        net: Network,
        dynamics: Dynamics,
        plasticity_cfg: Plasticity,
        fake: FakeTargets,
        generator: torch.Generator | None = None,
        reduce_hook=None,
    ) -> None:
        self.net = net
        self.dyn = dynamics
        self.plast = plasticity_cfg
        self.fake = fake
        self.generator = generator
        self.reduce_hook = reduce_hook
        self.act = activations.get(dynamics.activation)

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
        alpha = self.plast.alpha if alpha is None else alpha
        fake_on = self.fake.enabled if fake_on is None else fake_on
        s = state.s
        batch = s.shape[1]
        dev, dt = s.device, s.dtype
        dz_sum = torch.zeros((), device=dev, dtype=dt)
        fire_sum = torch.zeros((), device=dev, dtype=dt)
        conv = torch.full((batch,), -1, dtype=torch.long, device=dev) if track_tol is not None else None
        trace: list[dict[str, torch.Tensor]] = []
        step = 0
        done = False
        for phase in phases:
            by_layer = {tg.layer: tg for tg in phase.targets}
            for _ in range(phase.steps):
                learn = phase.learn and alpha > 0
                dmax, dz, fired = self.step(state, by_layer, fake_on, alpha if learn else 0.0,
                                            track=conv is not None, record=record)
                dz_sum += dz.abs().mean()
                if fired is not None:
                    fire_sum += fired.to(dt).mean()
                if record:
                    trace.append({"s": s.clone(), "dz": dz.clone(), "fired": fired.clone() if fired is not None
                                  else torch.zeros(batch, 0, dtype=torch.bool, device=dev)})
                step += 1
                if conv is not None:
                    newly = (dmax < track_tol) & (conv < 0)
                    conv[newly] = step
                    if stop_when_converged and step % check_every == 0 and bool((conv >= 0).all()):
                        done = True
                        break
            if done:
                break
        n = max(step, 1)
        return RunStats(dz_abs=dz_sum / n, fake_rate=fire_sum / n, steps=step, converge_step=conv, trace=trace)

    def step(self, state: State, targets: dict[int, Target], fake_on: bool, alpha: float,
             track: bool = False, record: bool = False):
        """One relaxation step of both networks, in place. Returns (max|ds| (B,) or None, dz, fired)."""
        net, t, dyn = self.net, self.net.topology, self.dyn
        s = state.s  # (2, B, N)
        batch, n = s.shape[1], s.shape[2]
        z, dz_rho = self.act(s)  # (2, B, N) each
        z = z.contiguous()
        dz = z[1] - z[0]  # (B, N)
        z2 = z.view(2 * batch, n)

        hs = t.hidden_slice
        fired = None
        if fake_on:
            dz_h = dz[:, hs]  # (B, N_hidden)
            dzm = state.dzm[:, hs]
            fake_target.update_running_mean(dzm, dz_h, self.fake.m)
            u = torch.rand(dz_h.shape, generator=self.generator, dtype=s.dtype, device=s.device)
            fired = fake_target.fire(dz_h, dzm, u, self.fake.k, self.fake.rule)  # (B, N_hidden)
            fake_value = fake_target.value(dz_h, self.fake.t_c)
            fake_beta = beta_tensor(self.fake.beta or dyn.beta, s) * fired.to(s.dtype)  # (2, B, N_hidden)

        eps = beta_tensor(dyn.eps, s)  # (2, 1, 1)
        mv = dyn.momentum
        smooth = alpha > 0 and self.plast.smoothing > 0
        smooth_signal = torch.zeros_like(dz) if smooth else None
        dmax = torch.zeros(2, batch, dtype=s.dtype, device=s.device) if track else None

        blocks_of = self._blocks_by_post()
        for layer in range(t.n_layers):
            sl = t.slice(layer)
            ks = blocks_of[layer]
            pre = None
            for k in ks:
                blk = t.blocks[k]
                w = net.weights[k]
                if pre is None:
                    pre = torch.addmm(net.biases[layer], z2[:, blk.lo : blk.hi], w.t())  # (2B, n_l)
                else:
                    pre.addmm_(z2[:, blk.lo : blk.hi], w.t())
            s_l = s[:, :, sl]  # (2, B, n_l) view
            force = pre.view(2, batch, -1).mul_(dz_rho[:, :, sl]).sub_(s_l)  # R - s
            if smooth:
                smooth_signal[:, sl] = force[0] * dz_rho[0, :, sl]
            tg = targets.get(layer)
            if tg is not None:
                force.add_(tg.beta * (tg.value - s_l))
            if fake_on and layer in t.hidden_layers:
                rel = slice(sl.start - hs.start, sl.stop - hs.start)
                force.add_(fake_beta[:, :, rel] * (fake_value[:, rel] - s_l))
            if mv < 1.0:
                v_l = state.v[:, :, sl]
                v_l.mul_(1.0 - mv).add_(force, alpha=mv)
                force = v_l
            delta = force * eps  # (2, B, n_l)
            s_l.add_(delta)
            if track:
                torch.maximum(dmax, delta.abs().amax(dim=2), out=dmax)

        if alpha > 0:
            rate = self.plast.rate(alpha, batch)
            plasticity.apply(net, dz, z[0], rate, self.reduce_hook)
            if smooth:
                plasticity.apply(net, smooth_signal, z[0], -self.plast.rate(self.plast.smoothing, batch))
        return (dmax.amax(dim=0) if track else None), dz, fired

    def _blocks_by_post(self) -> list[list[int]]:
        cached = getattr(self, "_blocks_cache", None)
        if cached is None:
            t = self.net.topology
            cached = [[k for k, b in enumerate(t.blocks) if b.post == l] for l in range(t.n_layers)]
            self._blocks_cache = cached
        return cached
