"""A plain, dense, slow reference step, written equation by equation from the paper.

This is the yardstick the fast engine (``astdp.core.engine``) is checked against: one dense
(N, N) weight matrix ``W[i, j]`` (from ``j`` to ``i``) with zeros where neurons are not
connected, one state per network, and each equation of ``docs/EQUATIONS.md`` as one line.
Nothing here is fused, folded or cached; it shares no code with the engine (not even the
activation functions), only the data classes that describe a configuration.

Shapes: ``s``, ``v``: (2, B, N), index 0 = net_s (small beta), 1 = net_l (large beta);
``dzm``: (B, N); ``W``: (N, N); ``b``: (N,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from astdp.core import fake_target
from astdp.core.dynamics import Dynamics
from astdp.core.engine import FakeTargets, Phase, Target
from astdp.core.network import Network
from astdp.core.plasticity import Plasticity


# -- activations, eq (2) ----------------------------------------------------------------------------
def rho(name: str, s: torch.Tensor) -> torch.Tensor:
    if name == "sigmoid4":
        return 1.0 / (1.0 + torch.exp(-4.0 * s))
    if name == "sigmoid4_centered":
        return 1.0 / (1.0 + torch.exp(-4.0 * s)) - 0.5
    if name == "sigmoid4_box":
        return 1.0 / (1.0 + torch.exp(-4.0 * (s - 0.5)))
    if name == "hardsigmoid":
        return torch.clamp(s, 0.0, 1.0)
    if name == "tanh":
        return torch.tanh(s)
    raise ValueError(name)


def rho_prime(name: str, s: torch.Tensor) -> torch.Tensor:
    if name in ("sigmoid4", "sigmoid4_centered", "sigmoid4_box"):
        r = 1.0 / (1.0 + torch.exp(-4.0 * (s - 0.5 if name == "sigmoid4_box" else s)))
        return 4.0 * r * (1.0 - r)
    if name == "hardsigmoid":
        return ((s >= 0.0) & (s <= 1.0)).to(s.dtype)
    if name == "tanh":
        return 1.0 - torch.tanh(s) ** 2
    raise ValueError(name)


@dataclass
class DenseNet:
    """Dense copy of a :class:`Network` plus which entries exist and which may learn."""

    W: torch.Tensor  # (N, N), zero where not connected
    b: torch.Tensor  # (N,)
    connected: torch.Tensor  # (N, N) bool, no self-connections
    learns: torch.Tensor  # (N, N) bool: connected and in a block that is not frozen
    bias_learns: torch.Tensor  # (N,) bool

    @classmethod
    def of(cls, net: Network) -> DenseNet:
        t = net.topology
        W, b = net.dense()
        connected = t.connected_mask().to(W.device)
        learns = connected.clone()
        for k in net.frozen:
            blk = t.blocks[k]
            learns[t.slice(blk.post), blk.lo : blk.hi] = False
        bias_learns = torch.ones(t.n, dtype=torch.bool, device=W.device)
        for layer in net.frozen_bias:
            bias_learns[t.slice(layer)] = False
        return cls(W.clone(), b.clone(), connected, learns, bias_learns)


@dataclass
class RefState:
    s: torch.Tensor
    v: torch.Tensor
    dzm: torch.Tensor


def reference_step(
    net: DenseNet,
    st: RefState,
    hidden: slice,
    targets: list[Target],
    dyn: Dynamics,
    plast: Plasticity,
    fake: FakeTargets,
    alpha: float,
    fake_on: bool,
    generator: torch.Generator | None = None,
    layer_slices: list[slice] | None = None,
):
    """One step of both networks and the learning rule. Updates ``net`` and ``st`` in place.

    Returns ``(dz (B, N), fired (B, N_hidden) or None, max_i |s_i(t+1) - s_i(t)| (B,))``.
    ``layer_slices[l]`` gives the state columns of layer ``l`` (targets name layers).
    """
    s, v = st.s, st.v
    batch, n = s.shape[1], s.shape[2]
    W, b = net.W, net.b

    # eq (2) ingredients at the start of the step, for both networks
    z = torch.stack([rho(dyn.activation, s[0]), rho(dyn.activation, s[1])])  # (2, B, N)
    dz = z[1] - z[0]  # (B, N), eq (15)

    # targets, eq (5): beta_i is zero where a neuron has no target
    beta = torch.zeros(2, batch, n, dtype=s.dtype)
    beta_t = torch.zeros(2, batch, n, dtype=s.dtype)  # sum of beta * t over the targets of a neuron
    t = torch.zeros(batch, n, dtype=s.dtype)  # value of an exact target
    exact = torch.zeros(2, batch, n, dtype=torch.bool)  # set to t, not nudged
    for tg in targets:
        sl = layer_slices[tg.layer]
        b_l = tg.beta.expand(2, batch, sl.stop - sl.start)
        if tg.exact:
            exact[:, :, sl] |= b_l > 0
            t[:, sl] = torch.where(b_l[0] > 0, tg.value, t[:, sl])
        else:
            beta[:, :, sl] += b_l
            beta_t[:, :, sl] += b_l * tg.value

    # adaptive fake targets on hidden neurons, eq (16)-(18) / Algorithm 1
    fake_beta = torch.zeros(2, batch, n, dtype=s.dtype)
    t_fake = torch.zeros(batch, n, dtype=s.dtype)
    fired = None
    if fake_on:
        dz_h = dz[:, hidden]
        st.dzm[:, hidden] = fake.m * st.dzm[:, hidden] + (1.0 - fake.m) * dz_h.abs()  # eq (18)
        dzm_h = st.dzm[:, hidden]
        u = torch.rand(dz_h.shape, generator=generator, dtype=s.dtype)  # u_i ~ U(0, 1)
        if fake.rule == "algorithm1":
            fired = dz_h.abs() > u * fake.k * dzm_h  # P = |dz| / (k dzm)
        else:
            fired = u * dzm_h < fake.k * dz_h.abs()  # P = k |dz| / dzm
        fired = fired & (dz_h.abs() > getattr(fake_target, "DZ_FLOOR", 0.0))  # rounding noise never fires
        pair = fake.beta or dyn.beta
        for k_net in range(2):
            fake_beta[k_net, :, hidden] = pair[k_net] * fired.to(s.dtype)
        t_fake[:, hidden] = fake.center + torch.sign(dz_h) * fake.t_c  # eq (16)

    new_s = torch.empty_like(s)
    ds = None
    for k_net in range(2):
        sk, zk = s[k_net], z[k_net]
        R = rho_prime(dyn.activation, sk) * (zk @ W.t() + b)  # eq (2): sum_j W[i, j] rho(s_j) + b_i
        force = (R - sk) + beta_t[k_net] - beta[k_net] * sk + fake_beta[k_net] * (t_fake - sk)  # eq (1) + (5)
        if k_net == 0:
            ds = R - sk  # eq (21) on net_s
        eps = dyn.eps[k_net]
        if dyn.momentum < 1.0:
            v[k_net] = dyn.momentum * force + (1.0 - dyn.momentum) * v[k_net]  # eq (20)
            new_s[k_net] = sk + eps * v[k_net]  # eq (19)
        else:
            new_s[k_net] = sk + eps * force  # eq (1)
    if dyn.bounds is not None:
        new_s = new_s.clamp(*dyn.bounds)  # bounded reading: clip after the step
    new_s = torch.where(exact, t.expand_as(new_s), new_s)  # exact targets: s = t
    v[exact] = 0.0
    dmax = (new_s - s).abs().amax(dim=2).amax(dim=0)  # (B,)

    if alpha > 0:
        rate = alpha / batch if plast.reduction == "mean" else alpha
        z_s = z[0]
        dW = rate * (dz.t() @ z_s)  # eq (15): dW[i, j] = alpha sum_b dz_i rho(s_s_j)
        db = rate * dz.sum(0)
        if plast.smoothing > 0:
            gamma = plast.smoothing / batch if plast.reduction == "mean" else plast.smoothing
            dsp = ds * rho_prime(dyn.activation, s[0]) * ~exact[0]  # ds_i rho'(s_i), eq (22); none on set neurons
            dW = dW - gamma * (dsp.t() @ z_s)  # eq (23)
            db = db - gamma * dsp.sum(0)
        W += dW * net.learns
        b += db * net.bias_learns

    st.s.copy_(new_s)
    return dz, fired, dmax


def reference_run(net: DenseNet, st: RefState, topology, phases: list[Phase], dyn: Dynamics, plast: Plasticity,
                  fake: FakeTargets, alpha: float, fake_on: bool, generator: torch.Generator | None = None,
                  track_tol: float | None = None):
    """Play ``phases`` step by step. Returns (mean |dz|, fake rate, first converged step per sample)."""
    slices = [topology.slice(layer) for layer in range(topology.n_layers)]
    hidden = topology.hidden_slice
    batch = st.s.shape[1]
    dz_abs, fire, steps = 0.0, 0.0, 0
    conv = torch.full((batch,), -1, dtype=torch.long)
    for phase in phases:
        for tg in phase.targets:  # exact targets hold from the start of their phase
            if tg.exact:
                sl = slices[tg.layer]
                mask = tg.beta.expand(2, batch, sl.stop - sl.start) > 0
                st.s[:, :, sl] = torch.where(mask, tg.value.expand_as(mask).to(st.s.dtype), st.s[:, :, sl])
                st.v[:, :, sl][mask] = 0.0
        for _ in range(phase.steps):
            a = alpha if phase.learn else 0.0
            dz, fired, dmax = reference_step(net, st, hidden, phase.targets, dyn, plast, fake, a, fake_on,
                                             generator, slices)
            steps += 1
            dz_abs += float(dz.abs().mean())
            fire += float(fired.to(torch.float64).mean()) if fired is not None else 0.0
            if track_tol is not None:
                conv[(dmax < track_tol) & (conv < 0)] = steps
    n = max(steps, 1)
    return dz_abs / n, fire / n, conv
