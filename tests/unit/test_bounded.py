"""The bounded reading (state bounds, exact input clamping, sigmoid4_box) and the rate schedules."""

import math

import pytest
import torch

from astdp.core import activations
from astdp.core.dynamics import Dynamics
from astdp.core.engine import FakeTargets, Phase, Relaxer, Target, beta_tensor
from astdp.core.network import Network, Topology
from astdp.core.plasticity import Plasticity
from astdp.core.state import State

D = torch.float64


def _net(bounds=(0.0, 1.0), clamp="exact", activation="hardsigmoid", alpha=0.05, seed=0, n_in=5, hidden=(6,),
         n_out=3, batch=4, fake=False):
    gen = torch.Generator().manual_seed(seed)
    topo = Topology.build(n_in, list(hidden), n_out, False)
    net = Network.init(topo, generator=gen, bias_init="uniform", dtype=D)
    dyn = Dynamics(activation=activation, eps=(0.5, 0.5), beta=(0.0, 0.5), bounds=bounds, input_clamp=clamp)
    relax = Relaxer(net, dyn, Plasticity(alpha=alpha), FakeTargets(enabled=fake), generator=gen)
    state = State(s=torch.rand(2, batch, topo.n, generator=gen, dtype=D) * 3 - 1,  # partly outside [0, 1]
                  v=torch.zeros(2, batch, topo.n, dtype=D), dzm=torch.full((batch, topo.n), 0.01, dtype=D))
    x = torch.rand(batch, n_in, generator=gen, dtype=D)
    y = torch.nn.functional.one_hot(torch.arange(batch) % n_out, n_out).to(D)
    inp = Target(0, x, beta_tensor((1.0, 1.0), x), exact=clamp == "exact")
    out = Target(topo.output_layer, y, beta_tensor(dyn.beta, y))
    return topo, net, dyn, relax, state, x, [Phase(3, [inp]), Phase(4, [inp, out])]


def test_bounds_hold_after_every_step_in_both_networks():
    topo, _, _, relax, state, _, phases = _net(bounds=(0.1, 0.7), clamp="nudge", fake=True)
    stats = relax.run(state, phases, record=True)
    assert stats.steps == 7
    for rec in stats.trace:
        assert rec["s"].min() >= 0.1 and rec["s"].max() <= 0.7


def test_exact_inputs_equal_the_pixels_and_never_learn_into_the_input_layer():
    topo, net, _, relax, state, x, phases = _net()
    before = [w.clone() for w in net.weights]
    stats = relax.run(state, phases, record=True)
    for rec in stats.trace:
        assert torch.equal(rec["s"][0][:, topo.slice(0)], x) and torch.equal(rec["s"][1][:, topo.slice(0)], x)
        assert torch.count_nonzero(rec["dz"][:, topo.slice(0)]) == 0  # dz = 0 on set neurons
    for k, blk in enumerate(topo.blocks):
        changed = not torch.equal(before[k], net.weights[k])
        assert changed == (blk.post != topo.input_layer), k  # hidden and output learn, inputs' blocks do not


def test_exact_clamping_with_a_mask_leaves_the_unmasked_pixels_free():
    topo, _, _, relax, state, x, _ = _net(clamp="exact")
    keep = torch.zeros_like(x)
    keep[:, :2] = 1.0  # only the first two pixels are set
    tg = Target(0, x, beta_tensor((1.0, 1.0), x) * keep, exact=True)
    relax.run(state, [Phase(5, [tg])])
    sl = topo.slice(0)
    assert torch.equal(state.s[:, :, sl][:, :, :2], x[:, :2].expand(2, -1, -1))
    assert not torch.equal(state.s[:, :, sl][:, :, 2:], x[:, 2:].expand(2, -1, -1))


def test_convergence_counts_the_real_change_of_the_clipped_state():
    """A neuron pushed hard against its bound has a large force but no change: it has converged."""
    topo, net, _, relax, state, _, phases = _net(alpha=0.0)
    for b in net.biases:
        b.fill_(50.0)  # every free neuron is pushed far above 1
    stats = relax.run(state, [Phase(10, phases[0].targets)], alpha=0.0, track_tol=1e-6)
    # below 0 -> clipped to 0 -> pushed to 1 -> held at 1 by the clip, whatever the force
    assert (stats.converge_step >= 1).all() and (stats.converge_step <= 3).all()


def test_sigmoid4_box_is_the_sigmoid_centred_in_the_box():
    s = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0], dtype=D)
    z, d = activations.get("sigmoid4_box")(s)
    assert torch.allclose(z, 1 / (1 + torch.exp(-4 * (s - 0.5))))
    assert z[2] == 0.5 and d[2] == 1.0 and torch.allclose(z[1] + z[3], torch.tensor(1.0, dtype=D))
    zi, di = torch.empty_like(s), torch.empty_like(s)
    activations.get_into("sigmoid4_box")(s, zi, di)
    assert torch.allclose(zi, z) and torch.allclose(di, d)


@pytest.mark.parametrize("kw, msg", [({"bounds": (1.0, 0.0)}, "model.bounds"), ({"input_clamp": "set"}, "model.input_clamp"),
                                     ({"beta_output": (-1.0, 1.0)}, "model.beta_output"),
                                     ({"beta_output": (0.5, 0.2)}, "model.beta_output"),
                                     ({"beta_input": (-0.5, 0.5)}, "model.beta_input"),
                                     ({"output_clamp": "set"}, "model.output_clamp"),
                                     ({"output_clamp": "exact", "beta_output": (0.4, 0.5)}, "model.output_clamp"),
                                     ({"output_clamp": "exact", "beta_output": (-0.5, 0.5)}, "model.output_clamp")])
def test_bad_bounds_and_clamping_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Dynamics(**kw)


def test_centred_nudging_pushes_net_s_away_from_the_labels():
    """``beta_output = (-b, b)``: net_s's outputs move away from the labels, net_l's towards them,
    so ``dz`` on the outputs has the sign of ``t - s`` and about twice the one-sided ``(0, b)``."""
    dzs = {}
    for beta_out in ((0.0, 0.5), (-0.5, 0.5)):
        topo, _, _, relax, state, _, phases = _net(alpha=0.0, seed=4)
        out = phases[1].targets[1]
        phases[1].targets[1] = Target(out.layer, out.value, beta_tensor(beta_out, out.value))
        stats = relax.run(state, phases, record=True)
        dzs[beta_out] = stats.trace[-1]["dz"][:, topo.slice(topo.output_layer)]
        s_l = stats.trace[-1]["s"][1][:, topo.slice(topo.output_layer)]
        assert torch.all((dzs[beta_out] * (out.value - s_l) >= -1e-12))
    one, centred = dzs[(0.0, 0.5)].abs().sum(), dzs[(-0.5, 0.5)].abs().sum()
    assert 1.5 * one < centred < 2.5 * one


def test_exact_outputs_are_set_in_net_l_only_and_keep_their_error():
    """``output_clamp=exact``: net_l's outputs equal the labels at every step, net_s's relax freely,
    and ``dz`` on the outputs is ``t - rho(s_s)`` in full, even where a nudge of net_l could not lift
    an output whose drive lies far below 0."""
    for exact in (False, True):
        topo, net, _, relax, state, _, phases = _net(alpha=0.0, seed=2)
        out = topo.slice(topo.output_layer)
        net.biases[topo.output_layer].fill_(-5.0)  # every output's drive far below what beta_l = 0.5 can lift
        if not exact:
            nudged = relax.run(state, phases, record=True).trace[-1]
            assert torch.count_nonzero(nudged["dz"][:, out]) == 0  # dead: 0 in both networks
    label = phases[1].targets[1]
    phases[1].targets[1] = Target(label.layer, label.value, label.beta, exact=True)
    stats = relax.run(state, phases, record=True)
    for rec in stats.trace[3:]:  # the clamped phase
        assert torch.equal(rec["s"][1][:, out], label.value)
        assert torch.allclose(rec["dz"][:, out], label.value - rec["s"][0][:, out].clamp(0, 1))
    assert torch.all(stats.trace[-1]["dz"][:, out].sum(1) == 1.0)  # the label's output: 1 - 0


# -- rate schedules -------------------------------------------------------------------------------
def _factor(**kw):
    batch, epoch = kw.pop("batch", 0), kw.pop("epoch", 0)
    p = Plasticity(alpha=1.0, **kw)
    p.batch, p.epoch = batch, epoch
    return p.factor


def test_schedule_factors():
    assert _factor(schedule="constant", batch=500, epoch=3) == 1.0
    assert _factor(schedule="decay", alpha_decay=0.5, epoch=2) == 0.25
    assert _factor(schedule="cosine", total_batches=100, batch=0) == 1.0
    assert math.isclose(_factor(schedule="cosine", total_batches=100, batch=50), 0.5)
    assert math.isclose(_factor(schedule="cosine", total_batches=100, batch=100, min_factor=0.1), 0.1)
    assert math.isclose(_factor(schedule="cosine", total_batches=100, batch=500, min_factor=0.1), 0.1)  # held
    assert math.isclose(_factor(schedule="constant", warmup_batches=10, batch=4), 0.5)
    assert _factor(schedule="constant", warmup_batches=10, batch=9) == 1.0


def test_cosine_without_a_length_says_what_to_set():
    with pytest.raises(ValueError, match="total_batches"):
        _factor(schedule="cosine")


@pytest.mark.parametrize("kw, key", [({"schedule": "step"}, "learner.schedule"), ({"warmup_batches": -1}, "warmup"),
                                     ({"min_factor": 2.0}, "min_factor"), ({"layer_alpha": (1.0, -1.0)}, "layer_alpha"),
                                     ({"weight_decay": 1.0}, "weight_decay"), ({"alpha": float("inf")}, "learner.alpha"),
                                     ({"alpha": float("nan")}, "learner.alpha")])
def test_bad_schedules_are_refused(kw, key):
    with pytest.raises(ValueError, match=key):
        Plasticity(**kw)


def test_layer_rates_scale_the_update_into_each_layer():
    """The update into a layer with rate multiplier 0 is nil; with 2 it is twice the plain one."""
    runs = {}
    for name, scale in (("plain", None), ("scaled", (1.0, 2.0, 0.0))):
        topo, net, _, relax, state, _, phases = _net(alpha=0.01, clamp="nudge")
        relax.plast.layer_alpha = scale
        w0 = [w.clone() for w in net.weights]
        relax.run(state, [Phase(1, phases[0].targets)])
        runs[name] = (topo, [w - w_0 for w, w_0 in zip(net.weights, w0)])
    topo, plain = runs["plain"]
    _, scaled = runs["scaled"]
    for k, blk in enumerate(topo.blocks):
        if blk.post == 1:
            assert torch.allclose(scaled[k], 2 * plain[k])  # one step from the same state: exactly twice
        elif blk.post == 2:
            assert torch.count_nonzero(scaled[k]) == 0


def test_block_rates_scale_one_block_and_unknown_names_are_refused():
    runs = {}
    for name, blocks in (("plain", None), ("scaled", {"1_from_2": 0.0, "2_from_1": 3.0})):
        topo, net, _, relax, state, _, phases = _net(alpha=0.01, clamp="nudge")
        relax.plast.block_alpha = blocks
        w0 = [w.clone() for w in net.weights]
        relax.run(state, [Phase(1, phases[0].targets)])
        runs[name] = [w - w_0 for w, w_0 in zip(net.weights, w0)]
    names = [topo.block_name(k) for k in range(len(topo.blocks))]
    for k, name in enumerate(names):
        if name == "1_from_2":
            assert torch.count_nonzero(runs["scaled"][k]) == 0
        elif name == "2_from_1":
            assert torch.allclose(runs["scaled"][k], 3 * runs["plain"][k])
        else:
            assert torch.allclose(runs["scaled"][k], runs["plain"][k])
    with pytest.raises(ValueError, match="unknown blocks"):
        Plasticity(block_alpha={"1_from_9": 1.0}).scales(topo)



def test_pair_rates_give_both_directions_between_two_layers_one_rate():
    """layer_alpha_pairs: a block takes the multiplier of the upper layer it joins; biases keep their own."""
    topo = Topology.build(6, [4, 4, 4], 2)
    layer = (1.0, 32.0, 8.0, 2.0, 1.0)
    blocks, biases = Plasticity(layer_alpha=layer, layer_alpha_pairs=True).scales(topo)
    by_name = dict(zip((topo.block_name(k) for k in range(len(topo.blocks))), blocks))
    assert by_name["1_from_0"] == 32.0
    assert by_name["1_from_2"] == by_name["2_from_1"] == 8.0
    assert by_name["2_from_3"] == by_name["3_from_2"] == 2.0
    assert by_name["3_from_4"] == by_name["4_from_3"] == 1.0
    assert biases == list(layer)
    plain, _ = Plasticity(layer_alpha=layer).scales(topo)
    assert dict(zip(by_name, plain))["1_from_2"] == 32.0  # per receiving layer: the pair's two directions differ
    # the same rates as per receiving layer with the feedback blocks scaled down, except into the input layer
    scaled, _ = Plasticity(layer_alpha=layer, block_alpha={"1_from_2": 0.25, "2_from_3": 0.25, "3_from_4": 0.5}).scales(topo)
    assert [a for a, blk in zip(blocks, topo.blocks) if blk.post != 0] == [
        a for a, blk in zip(scaled, topo.blocks) if blk.post != 0]

def test_weight_decay_shrinks_learning_weights_once_per_call():
    topo, net, _, relax, _, _, _ = _net()
    net.frozen = {0}
    w0 = [w.clone() for w in net.weights]
    p = Plasticity(alpha=1.0, schedule="constant", weight_decay=0.1)
    p.decay_weights(net)
    assert torch.equal(net.weights[0], w0[0])
    assert all(torch.allclose(w, 0.9 * w_0) for w, w_0 in list(zip(net.weights, w0))[1:])


@pytest.mark.parametrize("case", ["plain", "scaled", "frozen_input_block", "deep", "inference", "new_inputs"])
def test_clamped_input_blocks_deferred_equal_per_step_updates(case):
    """With inputs set exactly, the blocks from them run once per phase (drive ``z_in W^T`` kept up to
    date through ``z_in z_in^T``, updates summed and applied at the phase end, drive and Gram matrix
    carried to the next phase when it sets the same inputs); the states and weights equal those of
    per-step GEMMs and updates (``defer_clamped=False``)."""
    hidden = (6, 5) if case == "deep" else (6,)
    results = []
    for defer in (True, False):
        topo, net, _, relax, state, _, phases = _net(alpha=0.0 if case == "inference" else 0.05, hidden=hidden,
                                                     fake=True, seed=3)
        relax.defer_clamped = defer
        if case == "scaled":
            relax.plast.layer_alpha = (1.0, 2.0, 1.0)
            relax.plast.block_alpha = {"1_from_0": 0.5}
        if case == "frozen_input_block":
            net.frozen = {k for k, b in enumerate(topo.blocks) if b.lo == 0 and b.post == 1}
        if case == "new_inputs":  # the second phase sets other pixels: nothing may be carried
            inp, out = phases[1].targets
            x2 = torch.rand(inp.value.shape, generator=torch.Generator().manual_seed(9), dtype=D)
            phases = [phases[0], Phase(4, [Target(0, x2, inp.beta, exact=True), out])]
        w0 = [w.clone() for w in net.weights]
        stats = relax.run(state, phases, track_tol=1e-3)
        if defer:  # what is left for a next phase is the drive of the final weights
            ws = next(iter(relax._workspaces.values()))
            for k, drive in ws.carry[1].items():
                z_in = ws.z[0, :, topo.blocks[k].lo : topo.blocks[k].hi]
                torch.testing.assert_close(drive, z_in @ net.weights[k].t(), rtol=0, atol=1e-10)
        results.append((state.s.clone(), [w.clone() for w in net.weights], stats.converge_step))
    (s_a, w_a, c_a), (s_b, w_b, c_b) = results
    torch.testing.assert_close(s_a, s_b, rtol=0, atol=1e-10)
    assert torch.equal(c_a, c_b)
    for k, (u, v) in enumerate(zip(w_a, w_b)):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-10)
        moved = not torch.equal(u, w0[k])
        into_input = topo.blocks[k].post == 0
        frozen = case == "frozen_input_block" and k in net.frozen
        assert moved == (case != "inference" and not into_input and not frozen), k


def test_phase_that_does_not_learn_keeps_the_input_blocks_once_per_phase_under_a_reduce_hook():
    """A data-parallel hook that sums dense updates makes a learning phase update every block at
    every step; a phase without learning (inference, a shared free phase, EP's phases) has nothing to
    sum and keeps the blocks from the clamped inputs once per phase, with the same states."""
    results = []
    for hook in (None, lambda deltas: None):
        topo, net, _, relax, state, _, phases = _net(alpha=0.0, fake=True, seed=3)
        relax.reduce_hook = hook
        relax.run(state, phases, track_tol=1e-3)
        ws = next(iter(relax._workspaces.values()))
        assert ws.carry is not None  # the inputs' drive was kept, not recomputed per step
        results.append(state.s.clone())
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("clamp", ["exact", "nudge"])
def test_shared_phase_steps_net_s_alone_as_two_networks_that_start_alike(clamp):
    """A shared phase (net_l starts as net_s and has its targets) steps net_s alone and hands net_l
    the result: the states, weights and convergence steps equal those of both networks stepped from
    one state with learning off in that phase."""
    results = []
    for shared in (True, False):
        _, net, _, relax, state, _, (free, clamped) = _net(clamp=clamp, seed=5)
        if not shared:
            state.s[1].copy_(state.s[0])
            state.v[1].copy_(state.v[0])
        first = Phase(free.steps, free.targets, shared=True) if shared else Phase(free.steps, free.targets, learn=False)
        after_free = relax.run(state, [first], track_tol=1e-3)
        assert torch.equal(state.s[0], state.s[1])
        s_free = state.s.clone()
        stats = relax.run(state, [clamped], track_tol=1e-3)
        results.append((s_free, after_free.converge_step, state.s.clone(), [w.clone() for w in net.weights],
                        stats.converge_step))
    for a, b in zip(*results):
        for u, v in zip(a, b) if isinstance(a, list) else [(a, b)]:
            torch.testing.assert_close(u, v, rtol=0, atol=1e-12)


def test_shared_phase_refuses_networks_that_step_differently():
    _, _, dyn, relax, state, _, (free, _) = _net(clamp="nudge")
    dyn.eps = (0.5, 0.4)
    with pytest.raises(ValueError, match="model.eps to one value"):
        relax.run(state, [Phase(free.steps, free.targets, shared=True)])


def test_hidden_batches_anneals_the_hidden_layers_only():
    """``hidden_batches``: the hidden layers' multipliers follow a cosine of their own to 0; inputs and
    outputs keep theirs."""
    deep = Topology.build(3, [4, 5], 2)
    p = Plasticity(hidden_alpha=2.0, hidden_batches=10)
    assert p.scales(deep)[1] == [1.0, 2.0, 2.0, 1.0]
    p.batch = 5
    assert p.scales(deep)[1] == pytest.approx([1.0, 1.0, 1.0, 1.0])
    p.batch = 30
    blocks, layers = p.scales(deep)
    assert layers == [1.0, 0.0, 0.0, 1.0]
    assert blocks == [layers[b.post] for b in deep.blocks]
    assert Plasticity(hidden_batches=10).scales(deep) is not None
    with pytest.raises(ValueError, match="hidden_batches"):
        Plasticity(hidden_batches=0)
