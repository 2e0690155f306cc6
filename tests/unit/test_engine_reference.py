"""The fast engine agrees with the dense, per-equation reference step (tests/reference.py).

Random nets and random states (float64), several steps over two phases with learning on, for every
topology and option. Fake targets draw their uniforms from generators seeded alike, in the same
order and shape, so both sides see the same draws.
"""

import pytest
import torch

from astdp.core import activations, fake_target
from astdp.core.dynamics import Dynamics
from astdp.core.engine import FakeTargets, Phase, Relaxer, Target, beta_tensor
from astdp.core.network import Network, Topology
from astdp.core.plasticity import Plasticity
from astdp.core.state import State
from tests.reference import DenseNet, RefState, reference_run

D = torch.float64
TOL = 1e-5

TOPOLOGIES = {
    "one_hidden_lateral": ((6, [7], 3), None),  # lateral by default
    "deep": ((6, [5, 4], 3), None),  # no lateral by default
    "deep_lateral": ((6, [5, 4], 3), True),
}

OPTIONS = {
    "plain": {},
    "momentum": {"momentum": 0.6},
    "fake_algorithm1": {"fake": {"k": 1.5, "t_c": 0.25, "m": 0.9}},
    "fake_eq18": {"fake": {"k": 0.4, "t_c": 0.3, "m": 0.8, "rule": "eq18"}},
    "fake_own_beta_momentum": {"fake": {"k": 1.5, "beta": (0.2, 0.35)}, "momentum": 0.5},
    "smoothing": {"smoothing": 0.05},
    "reduction_mean": {"reduction": "mean", "alpha": 0.2},
    "sigmoid4": {"activation": "sigmoid4"},
    "hardsigmoid": {"activation": "hardsigmoid"},
    "tanh": {"activation": "tanh"},
    "per_pixel_beta": {"per_pixel": True},
    "frozen_blocks": {"frozen": True},
    "sigmoid4_box_bounded": {"activation": "sigmoid4_box", "bounds": (0.0, 1.0)},
    "bounded_hardsigmoid": {"activation": "hardsigmoid", "bounds": (0.0, 1.0), "fake": {"k": 1.5}},
    "bounded_centered_fake": {"activation": "hardsigmoid", "bounds": (0.0, 1.0), "fake": {"k": 1.5, "center": 0.5}},
    "exact_inputs": {"exact": True},
    "exact_inputs_bounded_momentum": {"exact": True, "bounds": (-0.3, 0.6), "momentum": 0.6, "smoothing": 0.05},
    "exact_per_pixel": {"exact": True, "per_pixel": True, "bounds": (0.0, 1.0), "activation": "hardsigmoid"},
    "set_and_nudged_pixels": {"exact": True, "split": True, "bounds": (0.0, 1.0), "activation": "hardsigmoid"},
    "everything": {"momentum": 0.7, "fake": {"k": 1.0}, "smoothing": 0.02, "reduction": "mean", "alpha": 0.3,
                   "per_pixel": True, "activation": "sigmoid4"},
}


def _setup(topo_key, opt, batch=4, seed=0):
    (n_in, hidden, n_out), lateral = TOPOLOGIES[topo_key]
    topo = Topology.build(n_in, hidden, n_out, lateral)
    gen = torch.Generator().manual_seed(seed)
    net = Network.init(topo, generator=gen, bias_init="uniform", dtype=D)
    if opt.get("frozen"):
        net.frozen = {0, len(topo.blocks) - 1}
        net.frozen_bias = {topo.output_layer}
    dyn = Dynamics(activation=opt.get("activation", "sigmoid4_centered"), eps=(0.5, 0.4), beta=(0.4, 0.5),
                   momentum=opt.get("momentum", 1.0), bounds=opt.get("bounds"),
                   input_clamp="exact" if opt.get("exact") else "nudge")
    plast = Plasticity(alpha=opt.get("alpha", 0.05), reduction=opt.get("reduction", "sum"),
                       smoothing=opt.get("smoothing", 0.0))
    fake = FakeTargets(enabled="fake" in opt, **opt.get("fake", {}))
    # states well spread over the non-linear range, with non-zero velocities and running means
    state = State(s=(torch.rand(2, batch, topo.n, generator=gen, dtype=D) * 2 - 1) * 0.8,
                  v=torch.randn(2, batch, topo.n, generator=gen, dtype=D) * 0.1,
                  dzm=torch.rand(batch, topo.n, generator=gen, dtype=D) * 0.05 + 0.01)
    if dyn.activation == "hardsigmoid":
        state.s.add_(0.4)  # most neurons inside [0, 1], some outside
    x = torch.rand(batch, n_in, generator=gen, dtype=D)
    y = torch.nn.functional.one_hot(torch.randint(0, n_out, (batch,), generator=gen), n_out).to(D)
    beta_in = beta_tensor(dyn.beta, x)
    exact = bool(opt.get("exact"))
    if opt.get("per_pixel"):  # self-supervised style: a random set of pixels is left free in the first phase
        covered = (torch.rand(batch, n_in, generator=gen, dtype=D) < 0.4).to(D)
        free = Target(0, x, beta_in * (1.0 - covered), exact)
    else:
        free = Target(0, x, beta_in, exact)
    clamped = [Target(0, x, beta_in, exact), Target(topo.output_layer, y, beta_tensor((0.3, 0.6), y))]
    if opt.get("split"):  # one layer, two targets: some pixels set exactly, the others nudged (self-supervised)
        covered = (torch.rand(batch, n_in, generator=gen, dtype=D) < 0.4).to(D)
        clamped = [Target(0, x, beta_in * (1.0 - covered), True), Target(0, x, beta_tensor((0.0, 0.7), x) * covered),
                   clamped[1]]
    phases = [Phase(3, [free]), Phase(4, clamped)]
    return topo, net, dyn, plast, fake, state, phases


def _compare(topo, net, dyn, plast, fake, state, phases, track_tol=None):
    ref_net = DenseNet.of(net)
    ref_state = RefState(state.s.clone(), state.v.clone(), state.dzm.clone())
    relaxer = Relaxer(net, dyn, plast, fake, generator=torch.Generator().manual_seed(99))
    stats = relaxer.run(state, phases, track_tol=track_tol)
    dz_abs, fake_rate, conv = reference_run(ref_net, ref_state, topo, phases, dyn, plast, fake, plast.alpha,
                                            fake.enabled, generator=torch.Generator().manual_seed(99),
                                            track_tol=track_tol)
    W, b = net.dense()
    close = dict(rtol=0, atol=TOL)
    torch.testing.assert_close(state.s, ref_state.s, **close)
    torch.testing.assert_close(state.v, ref_state.v, **close) if dyn.momentum < 1 else None
    torch.testing.assert_close(state.dzm, ref_state.dzm, **close)
    torch.testing.assert_close(W, ref_net.W, **close)
    torch.testing.assert_close(b, ref_net.b, **close)
    assert abs(stats.dz_abs.item() - dz_abs) < TOL
    assert abs(stats.fake_rate.item() - fake_rate) < TOL
    return stats, fake_rate, conv


@pytest.mark.parametrize("topo_key", list(TOPOLOGIES))
@pytest.mark.parametrize("opt_key", list(OPTIONS))
def test_engine_matches_dense_reference(topo_key, opt_key):
    opt = OPTIONS[opt_key]
    topo, net, dyn, plast, fake, state, phases = _setup(topo_key, opt)
    w0 = [w.clone() for w in net.weights]
    stats, fake_rate, _ = _compare(topo, net, dyn, plast, fake, state, phases)
    assert stats.steps == sum(p.steps for p in phases)
    assert any(not torch.equal(a, b) for a, b in zip(w0, net.weights))  # learning did happen
    if fake.enabled:  # the fake-target branch was exercised both ways
        assert 0.0 < fake_rate < 1.0
    if opt.get("frozen"):
        for k in net.frozen:
            assert torch.equal(w0[k], net.weights[k])


@pytest.mark.parametrize("topo_key", list(TOPOLOGIES))
def test_inference_tracking_matches_reference(topo_key):
    topo, net, dyn, _, fake, state, phases = _setup(topo_key, {"momentum": 0.8})
    plast = Plasticity(alpha=0.0)
    test_phases = [Phase(25, phases[0].targets, learn=False)]
    stats, _, conv = _compare(topo, net, dyn, plast, fake, state, test_phases, track_tol=0.05)
    assert torch.equal(stats.converge_step, conv)
    assert (conv > 0).any()  # the tolerance was reached by some samples


def test_stand_alone_step_matches_run():
    """``Relaxer.step`` (targets given per step) equals one step of ``run``."""
    topo, net, dyn, plast, fake, state, phases = _setup("deep_lateral", {"fake": {"k": 1.5}, "momentum": 0.7})
    net2 = net.clone()
    state2 = State(state.s.clone(), state.v.clone(), state.dzm.clone())
    a = Relaxer(net, dyn, plast, fake, generator=torch.Generator().manual_seed(5))
    b = Relaxer(net2, dyn, plast, fake, generator=torch.Generator().manual_seed(5))
    a.run(state, [Phase(2, phases[1].targets)])
    for _ in range(2):
        b.step(state2, {tg.layer: tg for tg in phases[1].targets}, fake_on=True, alpha=plast.alpha)
    torch.testing.assert_close(state.s, state2.s, rtol=0, atol=1e-12)
    for u, v in zip(net.weights, net2.weights):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-12)


def test_short_last_batch_uses_slot_views():
    """A state of slot views (a short last batch) is updated in place, like a full one."""
    topo, net, dyn, plast, fake, state, phases = _setup("one_hidden_lateral", {"fake": {"k": 1.5}}, batch=6)
    slots = state.slots(4)
    short = [Phase(p.steps, [Target(tg.layer, tg.value[:4], tg.beta) for tg in p.targets]) for p in phases]
    tail = state.s[:, 4:].clone()
    _compare(topo, net, dyn, plast, fake, slots, short)
    assert torch.equal(state.s[:, 4:], tail)


@pytest.mark.parametrize("rule,k", [("algorithm1", 1.5), ("eq18", 0.4)])
def test_engine_fake_targets_follow_fake_target_module(rule, k):
    """The engine's in-place firing equals ``fake_target.fire`` on the same dz, running mean and draws."""
    topo, net, dyn, plast, fake, state, phases = _setup("deep", {"fake": {"k": k, "rule": rule}})
    hs = topo.hidden_slice
    z, _ = activations.get(dyn.activation)(state.s)
    dz = (z[1] - z[0])[:, hs]
    dzm = fake.m * state.dzm[:, hs] + (1 - fake.m) * dz.abs()
    u = torch.rand(dz.shape, generator=torch.Generator().manual_seed(3), dtype=D)
    expected = fake_target.fire(dz, dzm, u, fake.k, fake.rule)
    relaxer = Relaxer(net, dyn, plast, fake, generator=torch.Generator().manual_seed(3))
    stats = relaxer.run(state, [Phase(1, phases[0].targets)], record=True)
    assert torch.equal(stats.trace[0]["fired"], expected)
    assert 0 < int(expected.sum()) < expected.numel()
