"""Equation-level checks of the core on tiny nets, against hand computation (float64)."""

import math

import pytest
import torch

from astdp.core import fake_target
from astdp.core.dynamics import Dynamics
from astdp.core.engine import FakeTargets, Phase, Relaxer, Target, beta_tensor
from astdp.core.network import Network, Topology
from astdp.core.plasticity import Plasticity
from astdp.core.state import State
from astdp.factory import build_system

D = torch.float64


def tiny(lateral=True, hidden=(1,), alpha=0.0, momentum=1.0, beta=(0.4, 0.5), eps=(0.5, 0.4), fake=False,
         activation="sigmoid4", seed=0, pairs="own"):
    topo = Topology.build(1, list(hidden), 1, lateral)
    net = Network.init(topo, generator=torch.Generator().manual_seed(seed), bias_init="uniform", dtype=D, pairs=pairs)
    dyn = Dynamics(activation=activation, eps=eps, beta=beta, momentum=momentum)
    relax = Relaxer(net, dyn, Plasticity(alpha=alpha), FakeTargets(enabled=fake),
                    generator=torch.Generator().manual_seed(seed))
    return topo, net, dyn, relax


def rho(x):
    return 1 / (1 + math.exp(-4 * x))


def drho(x):
    return 4 * rho(x) * (1 - rho(x))


def test_block_names_give_post_and_pre_layers():
    assert [Topology.build(3, [4], 2, False).block_name(k) for k in range(4)] == ["0_from_1", "1_from_0", "1_from_2", "2_from_1"]
    assert Topology.build(3, [4], 2, True).block_name(1) == "1_from_0_1_2"


def test_blocks_cover_exactly_the_connected_pairs():
    topo = Topology.build(3, [4], 2)
    mask = topo.connected_mask()
    n_in, n_h, n_out = 3, 4, 2
    expected = 2 * n_in * n_h + n_h * (n_h - 1) + 2 * n_out * n_h  # visible<->hidden, hidden<->hidden
    assert int(mask.sum()) == expected
    assert not mask[:3, :3].any() and not mask[:3, 7:].any()  # no visible<->visible
    assert not mask.diagonal().any()
    deep = Topology.build(3, [4, 5], 2)  # deep nets: no lateral by default, layers connect to neighbours
    assert deep.lateral is False
    assert int(deep.connected_mask().sum()) == 2 * (3 * 4 + 4 * 5 + 5 * 2)


def test_init_is_uniform_xavier_and_asymmetric():
    topo = Topology.build(50, [60], 10)
    net = Network.init(topo, generator=torch.Generator().manual_seed(0))
    w, _ = net.dense()
    bound = math.sqrt(6 / topo.fan_in(1))
    h = topo.slice(1)
    assert w[h].abs().max() <= bound and w[h].abs().max() > 0.9 * bound
    assert net.symmetry_index() < 0.1  # two independent draws


def test_pair_symmetry_reads_each_pair_of_layers_apart():
    topo = Topology.build(3, [4, 5], 2)
    net = Network.init(topo, generator=torch.Generator().manual_seed(0))
    up, down = net.weights[topo.blocks_into[2][0]], net.weights[topo.blocks_into[1][-1]]  # h1 -> h2, h2 -> h1
    assert up.shape == (5, 4) and down.shape == (4, 5)
    down.copy_(-up.t())  # the h1-h2 loop made antisymmetric
    pairs = net.pair_symmetry()
    assert set(pairs) == {"0_1", "1_2", "2_3"}
    assert abs(pairs["1_2"] + 1) < 1e-6 and abs(pairs["0_1"]) < 0.9 and abs(pairs["2_3"]) < 0.9
    down.copy_(2 * up.t())
    assert abs(net.pair_symmetry()["1_2"] - 1) < 1e-6
    lateral = Network.init(Topology.build(3, [4], 2), generator=torch.Generator().manual_seed(0))
    assert set(lateral.pair_symmetry()) == {"0_1", "1_1", "1_2"}  # a lateral layer is a pair with itself


def test_one_step_matches_hand_computation():
    topo, net, dyn, relax = tiny()
    w, b = net.dense()
    s0 = torch.tensor([[0.3, -0.2, 0.1]], dtype=D)
    state = State(s=s0.unsqueeze(0).repeat(2, 1, 1).clone(), v=torch.zeros(2, 1, 3, dtype=D), dzm=torch.zeros(1, 3, dtype=D))
    t_in = torch.tensor([[1.0]], dtype=D)
    relax.run(state, [Phase(1, [Target(0, t_in, beta_tensor(dyn.beta, t_in))])])
    for net_idx, (eps, beta) in enumerate(zip(dyn.eps, dyn.beta)):
        for i in range(3):
            si = s0[0, i].item()
            pre = sum(w[i, j].item() * rho(s0[0, j].item()) for j in range(3) if j != i) + b[i].item()
            force = drho(si) * pre - si + (beta * (1.0 - si) if i == 0 else 0.0)
            assert math.isclose(state.s[net_idx, 0, i].item(), si + eps * force, rel_tol=1e-12, abs_tol=1e-12)


def test_equal_betas_give_zero_dz_and_no_learning():
    topo, net, dyn, relax = tiny(hidden=(5,), alpha=0.1, beta=(0.45, 0.45), eps=(0.5, 0.5), fake=True)
    before = [w.clone() for w in net.weights]
    state = State.init(topo.n, 3, generator=torch.Generator().manual_seed(1), dtype=D)
    x = torch.rand(3, 1, dtype=D)
    stats = relax.run(state, [Phase(20, [Target(0, x, beta_tensor(dyn.beta, x))])])
    # identical networks: dz is zero up to GEMM rounding, no fake target fires, nothing is learned
    assert stats.dz_abs.item() < 1e-14 and stats.fake_rate.item() == 0.0
    assert all(torch.allclose(a, b, rtol=0, atol=1e-14) for a, b in zip(before, net.weights))


def one_update(freeze_input: bool = False, pairs: str = "own"):
    """One learning step of the tiny 1-2-1 net (lateral) from fixed states: (topo, dW, db, dz, z_s)."""
    topo, net, dyn, relax = tiny(hidden=(2,), alpha=0.01, pairs=pairs)
    if freeze_input:
        net.freeze_from(topo.input_layer)
    before_w, before_b = net.dense()
    s_s = torch.tensor([[0.2, 0.1, -0.3, 0.4]], dtype=D)
    s_l = s_s + torch.tensor([[0.05, -0.1, 0.2, 0.0]], dtype=D)
    state = State(s=torch.stack([s_s, s_l]), v=torch.zeros(2, 1, 4, dtype=D), dzm=torch.zeros(1, 4, dtype=D))
    relax.run(state, [Phase(1, [])])
    after_w, after_b = net.dense()
    z_s = torch.sigmoid(4 * s_s)[0]
    return topo, net, after_w - before_w, after_b - before_b, torch.sigmoid(4 * s_l)[0] - z_s, z_s


def test_update_is_post_change_times_pre_rate():
    topo, _, dw, db, dz, z_s = one_update()
    expected = 0.01 * torch.outer(dz, z_s) * topo.connected_mask()
    torch.testing.assert_close(dw, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(db, 0.01 * dz, rtol=0, atol=1e-14)
    # sign: hidden neuron 2 rose in net_l (dz > 0) and neuron 1 fell; the input's rate is positive,
    # so the input's weight onto neuron 2 grows and onto neuron 1 shrinks
    assert dw[2, 0] > 0 and dw[1, 0] < 0


def test_shared_pairs_learn_the_sum_of_both_directions_and_tied_ones_start_equal():
    """``pairs="shared"``: one update gives both synapses of a pair ``dz_i rho_j + rho_i dz_j``;
    ``"tied"``: also W = W^T from the start (lateral and deep nets), so it stays symmetric."""
    for topo in (Topology.build(3, [4], 2), Topology.build(3, [4, 5], 2)):
        w, _ = Network.init(topo, generator=torch.Generator().manual_seed(0), pairs="tied").dense()
        torch.testing.assert_close(w, w.t(), rtol=0, atol=0)
        assert int((w != 0).sum()) == int(topo.connected_mask().sum())  # nothing unconnected filled in
        assert Network.init(topo, generator=torch.Generator().manual_seed(0), pairs="shared").symmetry_index() < 0.5
    for pairs in ("shared", "tied"):
        topo, net, dw, db, dz, z_s = one_update(pairs=pairs)
        one_way = 0.01 * torch.outer(dz, z_s)
        torch.testing.assert_close(dw, (one_way + one_way.t()) * topo.connected_mask(), rtol=0, atol=1e-14)
        torch.testing.assert_close(db, 0.01 * dz, rtol=0, atol=1e-14)
    assert net.symmetry_index() > 1 - 1e-12
    with pytest.raises(ValueError, match="model.pairs must be one of"):
        Network.init(topo, pairs="both")


def test_shared_pairs_leave_a_pair_with_a_frozen_side_to_its_own_updates():
    topo, net, dw, _, dz, z_s = one_update(freeze_input=True, pairs="shared")
    one_way = 0.01 * torch.outer(dz, z_s)
    expected = (one_way + one_way.t()) * topo.connected_mask()
    inp, hid = topo.slice(topo.input_layer), topo.hidden_slice
    expected[hid, inp] = 0.0  # frozen columns
    expected[inp, hid] = one_way[inp, hid]  # the other direction learns alone
    torch.testing.assert_close(dw, expected, rtol=0, atol=1e-14)


def test_weights_from_a_frozen_sender_keep_their_values_and_the_rest_follow_eq15():
    """``freeze_from(input)`` with a lateral hidden layer: the block into the hidden layer has the
    input as its first sender, so only its input columns stay; every other entry changes as in
    the test above."""
    topo, net, dw, _, dz, z_s = one_update(freeze_input=True)
    assert net.frozen_cols and not net.frozen
    expected = 0.01 * torch.outer(dz, z_s) * topo.connected_mask()
    expected[topo.hidden_slice, topo.slice(topo.input_layer)] = 0.0
    torch.testing.assert_close(dw, expected, rtol=0, atol=1e-14)


def test_feedback_alpha_scales_the_blocks_into_the_layer_below():
    deep = Topology.build(3, [4, 5], 2)
    names = [deep.block_name(k) for k in range(len(deep.blocks))]
    blocks, layers = Plasticity(feedback_alpha=0.0, layer_alpha=(1, 8, 2, 1), layer_alpha_pairs=True).scales(deep)
    feedback = {"0_from_1": 8.0, "1_from_2": 2.0, "2_from_3": 1.0}  # what the pair rates give them
    assert {n: b for n, b in zip(names, blocks) if n in feedback} == dict.fromkeys(feedback, 0.0)
    assert [b for n, b in zip(names, blocks) if n not in feedback] == [8.0, 2.0, 1.0] and layers == [1, 8, 2, 1]
    same = Plasticity(block_alpha=dict.fromkeys(feedback, 0.5)).scales(deep)  # the by-name form agrees
    assert same == Plasticity(feedback_alpha=0.5).scales(deep)
    with pytest.raises(ValueError, match="depth.lateral=false"):
        Plasticity(feedback_alpha=0.0).scales(Topology.build(3, [4], 2))  # lateral: feedback shares a block
    with pytest.raises(ValueError, match="feedback_alpha must be"):
        Plasticity(feedback_alpha=-1.0)


def test_hidden_alpha_scales_every_hidden_layer_unless_layer_alpha_is_given():
    deep = Topology.build(3, [4, 5], 2)
    blocks, layers = Plasticity(hidden_alpha=2.0).scales(deep)
    assert layers == [1.0, 2.0, 2.0, 1.0]  # input, hidden 1, hidden 2, output
    assert blocks == [layers[b.post] for b in deep.blocks]  # a block takes its receiving layer's rate
    assert Plasticity(hidden_alpha=2.0).scales(Topology.build(3, [4], 2))[1] == [1.0, 2.0, 1.0]
    assert Plasticity(hidden_alpha=2.0, layer_alpha=(1, 8, 2, 1)).scales(deep)[1] == [1, 8, 2, 1]
    assert Plasticity(hidden_alpha=1.0).scales(deep) is None  # all rates 1: nothing to scale
    with pytest.raises(ValueError, match="hidden_alpha must be"):
        Plasticity(hidden_alpha=-2.0)


def test_fake_target_fires_with_algorithm1_probability():
    gen = torch.Generator().manual_seed(0)
    dz = torch.tensor([0.01, -0.02, 0.05, 0.5]).repeat(20000, 1)
    dzm = torch.full_like(dz, 0.004)
    for rule, k in (("algorithm1", 50.0), ("eq18", 0.5)):
        fired = fake_target.fire(dz, dzm, torch.rand(dz.shape, generator=gen), k, rule).double().mean(0)
        p = fake_target.firing_probability(dz[0], dzm[0], k, rule).double()
        se = torch.sqrt(p * (1 - p) / dz.shape[0]).clamp_min(1e-3)
        assert ((fired - p).abs() < 5 * se).all(), (rule, fired, p)
    assert torch.equal(fake_target.value(torch.tensor([0.3, -0.1]), 0.25), torch.tensor([0.25, -0.25]))
    assert torch.equal(fake_target.value(torch.tensor([0.3, -0.1]), 0.25, center=0.5), torch.tensor([0.75, 0.25]))


def test_fake_target_nudges_hidden_toward_sign_of_dz():
    topo, net, dyn, relax = tiny(hidden=(3,), fake=True)
    relax.fake = FakeTargets(enabled=True, k=1e-9, t_c=0.25)  # tiny k: every neuron with dz != 0 fires
    for w in net.weights:
        w.zero_()
    for b in net.biases:
        b.zero_()
    s_s = torch.zeros(1, 5, dtype=D)
    s_l = torch.tensor([[0.0, 0.1, -0.1, 0.2, 0.0]], dtype=D)
    state = State(s=torch.stack([s_s, s_l]), v=torch.zeros(2, 1, 5, dtype=D), dzm=torch.full((1, 5), 1.0, dtype=D))
    relax.run(state, [Phase(1, [])])
    # net_s: s <- 0 + eps_s * (0 - 0 + beta_s (t_f - 0)) with t_f = sign(dz) t_c
    expected = 0.5 * 0.4 * torch.tensor([0.25, -0.25, 0.25], dtype=D)
    torch.testing.assert_close(state.s[0, 0, 1:4], expected)


def _hand_euler_step(w, b, dyn, s0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """eq (1), (5) and one Euler step by hand, neuron by neuron: s + eps (rho'(s)(sum_j W_ij rho(s_j) + b_i)
    - s + beta (t - s)), the input (neuron 0) nudged toward ``x``; s0 (2, B, 3) -> (2, B, 3)."""
    out = s0.clone()
    for n, (eps, beta) in enumerate(zip(dyn.eps, dyn.beta)):
        for k in range(s0.shape[1]):
            for i in range(3):
                si = s0[n, k, i].item()
                pre = sum(w[i, j].item() * rho(s0[n, k, j].item()) for j in range(3) if j != i) + b[i].item()
                nudge = beta * (x[k, 0].item() - si) if i == 0 else 0.0
                out[n, k, i] = si + eps * (drho(si) * pre - si + nudge)
    return out


def test_momentum_with_inertia_one_is_plain_step_and_else_follows_eq20():
    s0 = State.init(3, 2, generator=torch.Generator().manual_seed(3), dtype=D)
    x = torch.rand(2, 1, dtype=D)
    results = {}
    for m in (1.0, 0.3):
        topo, net, dyn, relax = tiny(momentum=m)
        st = State(s0.s.clone(), s0.v.clone(), s0.dzm.clone())
        tg = [Target(0, x, beta_tensor(dyn.beta, x))]
        relax.run(st, [Phase(1, tg)])
        results[m] = st
    w, b = net.dense()
    plain = _hand_euler_step(w, b, dyn, s0.s, x)
    assert not torch.allclose(plain, s0.s)  # the step moves the states
    torch.testing.assert_close(results[1.0].s, plain, rtol=0, atol=1e-12)
    # eq (19)-(20) from v = 0: v1 = m f, s1 = s0 + eps m f  ->  (s1 - s0) scales by m
    torch.testing.assert_close(results[0.3].s - s0.s, 0.3 * (plain - s0.s))
    torch.testing.assert_close(results[0.3].v, 0.3 * (plain - s0.s) / beta_tensor(dyn.eps, s0.s))


def _toy_system(seed):
    model = {"activation": "sigmoid4_centered", "fake_target": {"enabled": True}}
    learner = {"name": "supervised", "alpha": 1e-3, "steps": 12, "free_steps": 4}
    return build_system(model, learner, {"hidden": [6]}, 4, 4, batch_size=4, seed=seed)


def test_training_leaves_no_autograd_graph_and_is_deterministic():
    x = torch.eye(4)
    y = torch.arange(4)
    a, b = _toy_system(7), _toy_system(7)
    for sysm in (a, b):
        for _ in range(3):
            sysm.train_batch(x, y)
    for t in [*a.net.weights, *a.net.biases, a.train_state.s, a.train_state.v, a.train_state.dzm]:
        assert t.grad_fn is None and not t.requires_grad
    assert all(torch.equal(u, v) for u, v in zip(a.net.weights, b.net.weights))
    assert not all(torch.equal(u, v) for u, v in zip(a.net.weights, _toy_system(8).net.weights))


def test_states_persist_between_batches():
    """Each batch starts where the previous one ended: states are drawn at random only once."""
    sysm = _toy_system(0)
    x, y = torch.eye(4), torch.arange(4)
    starts, ends = [], []
    run = sysm.relaxer.run

    def spy(state, phases, **kw):
        starts.append(state.s.clone())
        out = run(state, phases, **kw)
        ends.append(state.s.clone())
        return out

    sysm.relaxer.run = spy
    for _ in range(3):
        sysm.train_batch(x, y)
    assert torch.equal(starts[1], ends[0]) and torch.equal(starts[2], ends[1])
    assert not torch.equal(starts[1], starts[0])


def test_divergence_is_detected():
    sysm = _toy_system(0)
    assert sysm.diverged() is None
    sysm.relaxer.plast.alpha = 50.0  # far too high: the states blow up within a few batches
    x, y = torch.eye(4), torch.arange(4)
    for _ in range(5):
        sysm.train_batch(x, y)
    assert "|s| reached" in (sysm.diverged() or "")


@pytest.mark.parametrize("hidden, lateral, pairs", [((4,), True, "own"), ((4, 5), False, "own"), ((4,), None, "tied")])
def test_symmetry_block_by_block_equals_the_dense_matrix(hidden, lateral, pairs):
    """The symmetry indices, summed block by block, equal those of the dense (N, N) matrix."""
    topo = Topology.build(3, list(hidden), 2, lateral)
    net = Network.init(topo, generator=torch.Generator().manual_seed(1), pairs=pairs)
    w, _ = net.dense()
    mask = topo.connected_mask()
    a, b = w[mask].double(), w.t()[mask].double()
    assert abs(net.symmetry_index() - float(a @ b / (a.norm() * b.norm()))) < 1e-6
    joined = {f"{x}_{y}" for x in range(topo.n_layers) for y in range(x, topo.n_layers)
              if (mask[topo.slice(x), topo.slice(y)] & mask[topo.slice(y), topo.slice(x)].t()).any()}
    assert set(net.pair_symmetry()) == joined  # every pair of layers joined both ways, and no other
    for key, value in net.pair_symmetry().items():
        x, y = (int(v) for v in key.split("_"))
        sx, sy = topo.slice(x), topo.slice(y)
        both = mask[sx, sy] & mask[sy, sx].t()
        u, v = w[sx, sy][both].double(), w[sy, sx].t()[both].double()
        assert abs(value - float(u @ v / (u.norm() * v.norm()))) < 1e-6, key
