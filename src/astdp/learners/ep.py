"""Equilibrium Propagation (Scellier & Bengio 2017; symmetric variant: Laborieux et al. 2021) on the CHNN.

The same network, states, bounds, activation and exactly set inputs as aSTDP, one weight per pair of
neurons (``pairs=tied``), and the same relaxation engine with learning off (no fake targets):

1. free phase, ``free_steps`` steps: inputs set, outputs free, one network for both (a shared
   phase), to the free fixed point ``s_0``;
2. nudged phase, ``steps - free_steps`` steps from ``s_0``: the outputs pulled toward the label
   with strength ``beta`` in net_l and ``-beta`` in net_s (``symmetric``) or ``0`` (one-sided), to
   ``s_+`` and ``s_-``;
3. one update per batch from the phases' end states, for every block ``post <- [lo, hi)``::

       g_W = (rho(s_+)_post^T rho(s_+)_pre - rho(s_-)_post^T rho(s_-)_pre) / (beta_+ - beta_-)
       g_b = sum_batch (rho(s_+)_post - rho(s_-)_post) / (beta_+ - beta_-)

   summed over the batch (``model.reduction=sum``) or averaged (``mean``). For small ``beta``,
   ``g`` is minus the gradient of the loss ``1/2 |y - s_out|^2`` at the free fixed point
   (tests/unit/test_ep.py checks it against autograd through the relaxation). ``W += alpha g``
   (``optimizer=sgd``) or Adam's step along ``g`` (``optimizer=adam``), at the learner's rate
   schedule and per-layer / per-block multipliers. The update of a tied pair's two blocks are
   transposes of each other, so the pair stays tied.

Initial weights: the network's draw ``U(-x, x)``, ``x = sqrt(6 / fan_in)``, times ``init_gain``.
With the draw as it is, the tied network's relaxation settles slowly (hundreds of steps on
784-64-10 at ``eps`` 0.5 or 1: units switch in and out of the bounds for long), and EP's estimate is
only as good as the phases are settled; ``init_gain = 1/sqrt(6)`` (``U(+-1/sqrt(fan_in))``, the draw
of ``torch.nn.Linear``, which the EP reference code keeps) settles in tens of steps. The MNIST
default (conf/learner/ep.yaml) takes 0.3 and warms Adam's rate up, so that its first large steps do
not switch an output unit off for good (docs/FINDINGS.md section 28).

With the whole input layer set, net_s and net_l share it, so the blocks into the input layer get
the transposes of the updates of the blocks from it, as the tie needs; they never drive anything.
"""

from __future__ import annotations

import torch

from astdp.core import activations
from astdp.core.engine import Phase, Target, beta_tensor
from astdp.core.network import Network
from astdp.core.plasticity import Plasticity
from astdp.core.state import State
from astdp.learners.base import Learner

OPTIMIZERS = ("sgd", "adam")


class EquilibriumPropagation(Learner):
    name = "ep"
    learns_in_relaxation = False

    def __init__(self, *args, free_steps: int = 40, beta: float = 0.5, symmetric: bool = True,
                 optimizer: str = "sgd", init_gain: float = 1.0, adam_betas: tuple[float, float] = (0.9, 0.999),
                 adam_eps: float = 1e-8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 1 <= free_steps < self.steps:
            raise ValueError(f"learner.free_steps must lie in [1, learner.steps={self.steps}) (a nudged phase "
                             f"needs steps of its own), got {free_steps}")
        if not beta > 0:
            raise ValueError(f"learner.beta must be > 0, got {beta}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"learner.optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        b1, b2 = (float(b) for b in adam_betas)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"learner.adam_betas must be two numbers in [0, 1), got {list(adam_betas)}")
        if not init_gain > 0:
            raise ValueError(f"learner.init_gain must be > 0, got {init_gain}")
        if not adam_eps > 0:
            raise ValueError(f"learner.adam_eps must be > 0, got {adam_eps}")
        self.free_steps, self.beta, self.symmetric = int(free_steps), float(beta), bool(symmetric)
        self.init_gain = float(init_gain)
        self.optimizer, self.adam_betas, self.adam_eps = optimizer, (b1, b2), float(adam_eps)
        self.betas = (-self.beta if self.symmetric else 0.0, self.beta)  # (net_s, net_l)
        self.moments: list[tuple[torch.Tensor, torch.Tensor]] = []  # Adam's (m, v) per weight block, then bias
        self.updates = 0  # Adam's step count

    def prepare(self, net: Network) -> None:
        """The initial weights times ``init_gain`` (a resumed run then loads its own)."""
        if self.init_gain != 1.0:
            for w in [*net.weights, *net.kernels]:
                w.mul_(self.init_gain)

    def state_dict(self) -> dict:
        return {"moments": [(m.clone(), v.clone()) for m, v in self.moments], "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.moments = [(m.clone(), v.clone()) for m, v in state.get("moments", [])]
        self.updates = int(state.get("updates", 0))

    def phases(self, x, y):
        inp = self.input_target(x)
        label = self.label_target(y, x)
        nudged = Target(label.layer, label.value, beta_tensor(self.betas, x))  # -beta (or 0) in net_s, +beta in net_l
        return [Phase(self.free_steps, [inp], learn=False, shared=True),
                Phase(self.steps - self.free_steps, [inp, nudged], learn=False)]

    # -- the update ---------------------------------------------------------------------------------
    def estimate(self, net: Network, state: State) -> list[torch.Tensor]:
        """EP's estimate of minus the loss gradient, from the end states of the nudged phase:
        one tensor per weight block, one per bias layer, then one per conv kernel (shapes of
        ``net.weights``, ``net.biases``, ``net.kernels``)."""
        t = net.topology
        z = activations.get(self.dynamics.activation)(state.s)[0]  # rho(s): (2, B, N)
        scale = 1.0 / (self.betas[1] - self.betas[0])
        signed = torch.cat([z[1], -z[0]])  # (2B, N): rows of s_+ minus rows of s_-
        both = torch.cat([z[1], z[0]])
        grads = []
        for blk in t.blocks:
            post = both[:, t.slice(blk.post)]  # (2B, n_post)
            grads.append(torch.mm(post.t(), signed[:, blk.lo : blk.hi]).mul_(scale))
        bias = (z[1] - z[0]).sum(0).mul_(scale)  # (N,)
        grads += [bias[t.slice(l)].clone() for l in range(t.n_layers)]
        # a conv kernel (tied by construction): P^T(z_post) (x) z_pre over the rows of s_+ minus those of s_-
        grads += [conv.update(both, signed, pre_learns=False).mul_(scale) for conv in t.convs]
        return grads

    def update(self, net: Network, state: State, plast: Plasticity, reduce_hook=None) -> None:
        """One step along :meth:`estimate` (summed over processes by ``reduce_hook`` when given)."""
        grads = self.estimate(net, state)
        if reduce_hook is not None:
            reduce_hook(grads)
        batch = state.s.shape[1]
        rate = plast.rate(plast.current_alpha, batch)
        scales = plast.scales(net.topology)
        n_blocks = len(net.weights)
        params = list(net.weights) + list(net.biases) + list(net.kernels)
        rates = [rate * (scales[0][k] if scales else 1.0) for k in range(n_blocks)]
        rates += [rate * (scales[1][l] if scales else 1.0) for l in range(len(net.biases))]
        rates += [rate * (scales[1][c.post] if scales else 1.0) for c in net.topology.convs]
        frozen = [k in net.frozen for k in range(n_blocks)] + [l in net.frozen_bias for l in range(len(net.biases))]
        frozen += [False] * len(net.kernels)
        if self.optimizer == "adam":
            grads = self._adam_directions(grads)
        for p, g, r, skip in zip(params, grads, rates, frozen):
            if not skip and r != 0.0:
                p.add_(g, alpha=r)
        net.zero_self_connections()

    def _adam_directions(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Adam (Kingma & Ba 2015) on the ascent direction ``grads``: ``m_hat / (sqrt(v_hat) + eps)``."""
        if not self.moments:
            self.moments = [(torch.zeros_like(g), torch.zeros_like(g)) for g in grads]
        elif self.moments[0][0].device != grads[0].device:  # a checkpoint loaded on another device
            self.moments = [(m.to(g.device), v.to(g.device)) for (m, v), g in zip(self.moments, grads)]
        b1, b2 = self.adam_betas
        self.updates += 1
        c1, c2 = 1.0 - b1 ** self.updates, 1.0 - b2 ** self.updates
        out = []
        for (m, v), g in zip(self.moments, grads):
            m.mul_(b1).add_(g, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            out.append((m / c1).div_((v / c2).sqrt_().add_(self.adam_eps)))
        return out
