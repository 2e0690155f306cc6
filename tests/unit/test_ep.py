"""Equilibrium Propagation (``learner=ep``) against autograd through the relaxation.

EP's estimate for a small nudge must equal minus the gradient of the loss ``1/2 |y - s_out|^2`` at
the free fixed point (Scellier & Bengio 2017). The reference here is independent of the engine: a
plain dense relaxation of the same equations, differentiated by autograd through all its steps,
with one parameter per pair of neurons (the tied weights) and one per bias.
"""

import pytest
import torch

from astdp.core import activations
from astdp.factory import build_system

D = torch.float64
BATCH, N_IN, N_OUT = 3, 4, 2
FREE, NUDGED = 300, 300  # steps: both phases settle to 1e-12 at eps 0.5 on this net
SMOOTH = dict(activation="sigmoid4", bounds=None, momentum=1.0)
BOUNDED = dict(activation="hardsigmoid", bounds=[0.0, 1.0], momentum=1.0)


def _system(model, beta=1e-3, symmetric=True, hidden=(5,), lateral=True, **learner):
    base = dict(eps=[0.5, 0.5], beta=[0.4, 0.5], beta_input=[1.0, 1.0], beta_output=[0.0, 1.0], init_scale=0.1,
                input_clamp="exact", fake_target=dict(enabled=True), engine="eager")
    lrn = {"name": "ep", "steps": FREE + NUDGED, "free_steps": FREE, "beta": beta, "symmetric": symmetric,
           "alpha": 0.1, "schedule": "constant", "pairs": "tied", **learner}
    return build_system({**base, **model}, lrn, {"hidden": list(hidden), "lateral": lateral}, N_IN, N_OUT, BATCH,
                        seed=5).to(D)


def _data():
    g = torch.Generator().manual_seed(2)
    return torch.rand(BATCH, N_IN, generator=g, dtype=D), torch.randint(0, N_OUT, (BATCH,), generator=g)


def _spread_biases(sysm):
    """Biases spread over [-0.3, 0.3], so that units sit at different points of rho (larger weights than
    the init's would make this net's Euler steps cycle instead of settling to a fixed point)."""
    for b in sysm.net.biases:
        b.copy_(torch.linspace(-0.3, 0.3, b.numel(), dtype=D))


def _autograd_grads(sysm, x, y, steps=FREE):
    """-dL/dtheta for every connected pair (dense (N, N), symmetric) and bias (N,), by autograd."""
    t = sysm.topology
    w_dense, b = sysm.net.dense()
    mask = t.connected_mask().to(D)
    upper = torch.triu(w_dense * mask, 1).detach().requires_grad_(True)  # one parameter per pair
    bias = b.detach().clone().requires_grad_(True)
    rho = activations.get(sysm.dynamics.activation)
    lo_b, hi_b = sysm.dynamics.bounds or (None, None)
    w = upper + upper.t()
    inp, out = t.slice(t.input_layer), t.slice(t.output_layer)
    s = torch.zeros(BATCH, t.n, dtype=D)
    s[:, inp] = x
    for _ in range(steps):
        z, d = rho(s)
        f = d * (z @ w.t() + bias) - s
        s_new = s + 0.5 * f
        if lo_b is not None:
            s_new = s_new.clamp(lo_b, hi_b)
        s = torch.cat([x, s_new[:, inp.stop :]], dim=1)  # inputs set exactly
    onehot = torch.nn.functional.one_hot(y, N_OUT).to(D)
    loss = 0.5 * (onehot - s[:, out]).pow(2).sum()
    g_upper, g_bias = torch.autograd.grad(loss, [upper, bias])
    g_upper = torch.triu(g_upper, 1)  # the pair parameters (the zeros below the diagonal are not parameters)
    g = -(g_upper + g_upper.t()) * mask
    return g, -g_bias


def _ep_grads(sysm, x, y):
    """EP's estimate, dense like :func:`_autograd_grads`, from the learner on the engine's end states."""
    state = sysm.train_state.slots(BATCH)
    state.s.zero_()
    state.v.zero_()
    sysm.relaxer.run(state, sysm.learner.phases(x, y), alpha=0.0, fake_on=False)
    grads = sysm.learner.estimate(sysm.net, state)
    t = sysm.topology
    g = torch.zeros(t.n, t.n, dtype=D)
    for blk, gk in zip(t.blocks, grads):
        g[t.slice(blk.post), blk.lo : blk.hi] = gk
    return g * t.connected_mask().to(D), torch.cat(grads[len(t.blocks):])


@pytest.mark.parametrize("symmetric", [True, False])
def test_ep_estimate_matches_autograd_smooth(symmetric):
    """sigmoid(4s), unbounded: relative error below 1e-3 (symmetric, beta = 1e-3) or 1e-2 (one-sided)."""
    sysm = _system(SMOOTH, symmetric=symmetric)
    _spread_biases(sysm)
    x, y = _data()
    g_ref, gb_ref = _autograd_grads(sysm, x, y)
    g_ep, gb_ep = _ep_grads(sysm, x, y)
    t = sysm.topology
    inputs = t.slice(t.input_layer)
    g_ref[inputs, :] = g_ep[inputs, :]  # blocks into the set inputs: no loss gradient; EP keeps them tied
    tol = 1e-3 if symmetric else 1e-2
    assert g_ref.abs().max() > 1e-3  # a gradient worth comparing
    assert (g_ep - g_ref).norm() <= tol * g_ref.norm()
    assert (gb_ep - gb_ref).norm() <= tol * gb_ref.norm()
    # the input blocks' two directions are transposes (the tie holds)
    torch.testing.assert_close(g_ep[inputs, :], g_ep[:, inputs].t())


def test_ep_estimate_matches_autograd_bounded():
    """The default reading (hardsigmoid, states clipped to [0, 1]): the same, with a looser bound."""
    sysm = _system(BOUNDED)
    _spread_biases(sysm)
    x, y = _data()
    g_ref, gb_ref = _autograd_grads(sysm, x, y)
    g_ep, _ = _ep_grads(sysm, x, y)
    hid = sysm.topology.hidden_slice
    g_ref, g_ep = g_ref[hid.start :, :], g_ep[hid.start :, :]  # rows into hidden and outputs
    assert g_ref.abs().max() > 1e-3
    assert (g_ep - g_ref).norm() <= 2e-2 * g_ref.norm()


def _free_loss(sysm, x, y):
    out = sysm.infer(x, steps=200)[0]
    return float(0.5 * (torch.nn.functional.one_hot(y, N_OUT).to(D) - out).pow(2).sum())


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_ep_training_keeps_pairs_tied_and_lowers_the_loss(optimizer):
    """Training on one fixed batch: the weights stay tied (a symmetric dense W) and the loss at the
    free fixed point falls."""
    sysm = _system(SMOOTH, beta=0.2, optimizer=optimizer, alpha=0.05 if optimizer == "sgd" else 0.01)
    sysm.learner.steps, sysm.learner.free_steps = 100, 60
    x, y = _data()
    before = _free_loss(sysm, x, y)
    for _ in range(60):
        sysm.train_batch(x, y)
    w, _ = sysm.net.dense()
    torch.testing.assert_close(w, w.t(), rtol=0, atol=1e-12)
    assert _free_loss(sysm, x, y) < 0.75 * before


def test_ep_resume_is_exact():
    """The learner's Adam moments travel in its state_dict: a copy trained on goes the same way."""
    a = _system(SMOOTH, beta=0.2, optimizer="adam", alpha=0.01)
    a.learner.steps, a.learner.free_steps = 20, 10
    x, y = _data()
    a.train_batch(x, y)
    b = _system(SMOOTH, beta=0.2, optimizer="adam", alpha=0.01)
    b.learner.steps, b.learner.free_steps = 20, 10
    b.load_state_dict(a.state_dict())
    b.learner.load_state_dict(a.learner.state_dict())
    a.train_batch(x, y)
    b.train_batch(x, y)
    for wa, wb in zip(a.net.weights, b.net.weights):
        torch.testing.assert_close(wa, wb, rtol=0, atol=0)


@pytest.mark.parametrize("bad, match", [(dict(beta=0.0), "learner.beta"), (dict(free_steps=600), "learner.free_steps"),
                                        (dict(optimizer="rmsprop"), "learner.optimizer")])
def test_ep_bad_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        _system(SMOOTH, **bad)
