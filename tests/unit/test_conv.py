"""Conv blocks against their dense unrolled equivalent (float64, tiny maps).

The unrolled matrix ``M`` (n_post, n_pre) of a conv block is its drive applied to the basis vectors;
the drive must be ``z_pre M^T``, the feedback ``z_post M`` and the kernel's update the tied pair's
dense updates ``dz_post^T z_pre`` and ``dz_pre^T z_post`` read through each kernel entry's unrolled
matrix. A whole relaxation of a conv net must equal the dense net that carries ``M`` and ``M^T``.
"""

import pytest
import torch

from astdp.core import fused
from astdp.core.blocks import Conv2dPool, ConvSpec
from astdp.core.dynamics import Dynamics
from astdp.core.engine import FakeTargets, Phase, Relaxer, Target, beta_tensor
from astdp.core.network import Network, Topology
from astdp.core.plasticity import Plasticity
from astdp.core.state import State
from astdp.factory import build_system

D = torch.float64
SPECS = {
    "plain": ConvSpec(3, 3),
    "pool": ConvSpec(3, 3, pool=2),
    "stride_padding": ConvSpec(2, 3, stride=2, padding=1),
    "padding_pool": ConvSpec(4, 3, stride=1, padding=2, pool=4),
    "stride_padding_pool": ConvSpec(2, 2, stride=2, padding=1, pool=2),
}
IN_SHAPE = (2, 6, 6)


def _block(spec: ConvSpec, in_shape=IN_SHAPE) -> Conv2dPool:
    topo = Topology.build(int(torch.tensor(in_shape).prod()), [vars(spec)], 3, None, in_shape)
    return topo.convs[0]


def _unrolled(conv: Conv2dPool, w: torch.Tensor) -> torch.Tensor:
    """(n_post, n_pre): the drive of every basis vector of the sending layer."""
    n_pre = conv.pre_cols[1] - conv.pre_cols[0]
    z = torch.zeros(n_pre, conv.post_cols[1], dtype=D)
    z[:, conv.pre_cols[0] : conv.pre_cols[1]] = torch.eye(n_pre, dtype=D)
    return conv.drive(z, w).t()


@pytest.mark.parametrize("name", SPECS)
def test_conv_block_equals_its_unrolled_dense_matrix(name):
    conv = _block(SPECS[name])
    g = torch.Generator().manual_seed(0)
    w = torch.randn(conv.weight_shape, generator=g, dtype=D)
    m = _unrolled(conv, w)
    z = torch.rand(4, conv.post_cols[1], generator=g, dtype=D)
    dz = torch.randn(4, conv.post_cols[1], generator=g, dtype=D)
    pre, post = slice(*conv.pre_cols), slice(*conv.post_cols)
    torch.testing.assert_close(conv.drive(z, w), z[:, pre] @ m.t(), rtol=0, atol=1e-6)
    torch.testing.assert_close(conv.feedback(z, w), z[:, post] @ m, rtol=0, atol=1e-6)
    forward, back = dz[:, post].t() @ z[:, pre], dz[:, pre].t() @ z[:, post]  # the tied pair's dense updates
    basis = [_unrolled(conv, e.view(conv.weight_shape)) for e in torch.eye(w.numel(), dtype=D)]
    want = torch.stack([(b * forward).sum() + (b.t() * back).sum() for b in basis]).view(conv.weight_shape)
    torch.testing.assert_close(conv.update(dz, z), want, rtol=0, atol=1e-6)
    only_forward = torch.stack([(b * forward).sum() for b in basis]).view(conv.weight_shape)
    torch.testing.assert_close(conv.update(dz, z, pre_learns=False), only_forward, rtol=0, atol=1e-6)
    patches, rows = conv.patches(z)  # the once-per-phase path of a clamped sending layer
    torch.testing.assert_close(conv.drive_patches(patches, w), conv.drive(z, w), rtol=0, atol=1e-6)
    torch.testing.assert_close(conv.update_patches(dz, rows), only_forward, rtol=0, atol=1e-6)


HIDDEN = [{"channels": 2, "kernel": 3, "pool": 2}, {"channels": 3, "kernel": 2}]  # 1x6x6 -> 2x2x2 -> 3x1x1


def _conv_net(seed=0):
    topo = Topology.build(36, HIDDEN, 3, None, (1, 6, 6))
    net = Network.init(topo, torch.Generator().manual_seed(seed), bias_init="uniform", dtype=D)
    for k in net.kernels:
        k.mul_(3.0)  # strong enough couplings that the relaxation is not near-linear
    return net


def _dense_twin(net: Network) -> Network:
    """The same net with every conv block replaced by its unrolled matrix (into post) and transpose (into pre)."""
    t = net.topology
    dense_topo = Topology.build(t.sizes[0], list(t.sizes[1:-1]), t.sizes[-1], False)
    full, b = net.dense()
    for conv, w in zip(t.convs, net.kernels):
        m = _unrolled(conv, w)
        pre, post = slice(*conv.pre_cols), slice(*conv.post_cols)
        full[post, pre], full[pre, post] = m, m.t()
    weights = [full[dense_topo.slice(blk.post), blk.lo : blk.hi].clone() for blk in dense_topo.blocks]
    return Network(dense_topo, weights, [b[dense_topo.slice(l)].clone() for l in range(dense_topo.n_layers)])


def _relax(net, exact, steps=12, alpha=0.0, fake=False, momentum=1.0, batch=5, seed=1):
    t = net.topology
    g = torch.Generator().manual_seed(seed)
    dyn = Dynamics(activation="hardsigmoid", eps=(0.5, 0.4), beta=(0.4, 0.5), bounds=(0.0, 1.0), momentum=momentum,
                   input_clamp="exact" if exact else "nudge")
    relaxer = Relaxer(net, dyn, Plasticity(alpha=alpha), FakeTargets(enabled=fake, k=1.5),
                      generator=torch.Generator().manual_seed(7))
    state = State(s=torch.rand(2, batch, t.n, generator=g, dtype=D), v=torch.zeros(2, batch, t.n, dtype=D),
                  dzm=torch.rand(batch, t.n, generator=g, dtype=D) * 0.05 + 0.01)
    x = torch.rand(batch, t.sizes[0], generator=g, dtype=D)
    y = torch.nn.functional.one_hot(torch.randint(0, 3, (batch,), generator=g), 3).to(D)
    inp = Target(0, x, beta_tensor((1.0, 1.0) if exact else (0.4, 0.5), x), exact=exact)
    label = Target(t.output_layer, y, beta_tensor((0.0, 1.0), y))
    relaxer.run(state, [Phase(steps // 2, [inp]), Phase(steps - steps // 2, [inp, label])])
    return state


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("fake", [False, True])
def test_conv_net_relaxes_as_its_dense_twin(exact, fake):
    net = _conv_net()
    twin = _dense_twin(net)
    a, b = _relax(net, exact, fake=fake, momentum=0.7), _relax(twin, exact, fake=fake, momentum=0.7)
    torch.testing.assert_close(a.s, b.s, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.dzm, b.dzm, rtol=0, atol=1e-6)


@pytest.mark.parametrize("exact", [True, False])
def test_conv_kernels_learn_the_tied_pairs_dense_updates(exact):
    """One learning step: every kernel changes by its tied pair's dense updates read through its entries."""
    net = _conv_net()
    twin = _dense_twin(net)
    w0 = [w.clone() for w in twin.weights]
    k0 = [k.clone() for k in net.kernels]
    a, b = _relax(net, exact, steps=1, alpha=0.1), _relax(twin, exact, steps=1, alpha=0.1)
    torch.testing.assert_close(a.s, b.s, rtol=0, atol=1e-6)
    t, dt = net.topology, twin.topology
    full0, full1 = torch.zeros(dt.n, dt.n, dtype=D), torch.zeros(dt.n, dt.n, dtype=D)
    for blk, w_0, w_1 in zip(dt.blocks, w0, twin.weights):
        full0[dt.slice(blk.post), blk.lo : blk.hi], full1[dt.slice(blk.post), blk.lo : blk.hi] = w_0, w_1
    delta = full1 - full0
    for conv, k_0, k_1 in zip(t.convs, k0, net.kernels):
        pre, post = slice(*conv.pre_cols), slice(*conv.post_cols)
        basis = [_unrolled(conv, e.view(conv.weight_shape)) for e in torch.eye(k_0.numel(), dtype=D)]
        want = torch.stack([(m * delta[post, pre]).sum() + (m.t() * delta[pre, post]).sum() for m in basis])
        want = want.view(conv.weight_shape) / conv.positions  # the mean over the synapses an entry stands for
        torch.testing.assert_close(k_1 - k_0, want, rtol=0, atol=1e-6)
    for blk, k in zip(t.blocks, range(len(t.blocks))):  # the dense output blocks learn as in the twin
        twin_k = next(j for j, b2 in enumerate(dt.blocks) if b2.post == blk.post and b2.lo == blk.lo)
        torch.testing.assert_close(net.weights[k], twin.weights[twin_k], rtol=0, atol=1e-6)


def test_conv_geometry_errors_are_one_line():
    with pytest.raises(ValueError, match="does not divide"):
        Topology.build(36, [{"channels": 2, "kernel": 3, "pool": 3}], 3, None, (1, 6, 6))
    with pytest.raises(ValueError, match="does not fit inputs"):
        Topology.build(36, [{"channels": 2, "kernel": 3}], 3, None, (1, 5, 5))
    with pytest.raises(ValueError, match="must follow the input or another conv"):
        Topology.build(36, [8, {"channels": 2, "kernel": 3}], 3, None, (1, 6, 6))
    with pytest.raises(ValueError, match=r"depth.hidden\[0\].kernel"):
        Topology.build(36, [{"channels": 2, "kernel": 0}], 3, None, (1, 6, 6))


needs_compiler = pytest.mark.skipif(fused.compiler_notice() is not None, reason="no C++ compiler for torch.compile")
MODEL = dict(activation="hardsigmoid", eps=[0.5, 0.5], beta=[0.4, 0.5], beta_input=[1.0, 1.0], beta_output=[0.0, 1.0],
             bounds=[0.0, 1.0], input_clamp="exact", fake_target=dict(k=2.0, t_c=0.25, m=0.9))
DEPTH = {"name": "tiny_conv", "hidden": HIDDEN, "lateral": False, "input_shape": [1, 6, 6]}


def _system(engine, learner="supervised", **more):
    extra = {"alpha": 0.02, "steps": 8, "free_steps": 3, "schedule": "constant", **more}
    sysm = build_system({**MODEL, "engine": engine}, {"name": learner, **extra}, DEPTH, 36, 3, 4, seed=3).to(D)
    sysm.relaxer.draws = "counter"  # the eager engine draws as the fused one does
    return sysm


@needs_compiler
@pytest.mark.parametrize("shared_free", [pytest.param(False, marks=pytest.mark.slow), True])
def test_fused_matches_eager_on_a_conv_net(shared_free):
    eager, fast = _system("eager", shared_free=shared_free), _system("fused", shared_free=shared_free)
    assert (eager.relaxer.engine, fast.relaxer.engine) == ("eager", "fused")
    g = torch.Generator().manual_seed(11)
    for _ in range(3):
        x, y = torch.rand(4, 36, generator=g, dtype=D), torch.randint(0, 3, (4,), generator=g)
        se, sf = eager.train_batch(x, y), fast.train_batch(x, y)
        assert abs(se.dz_abs.item() - sf.dz_abs.item()) < 1e-5
    close = dict(rtol=0, atol=1e-5)
    for name in ("train_s", "train_v", "train_dzm"):
        torch.testing.assert_close(getattr(eager, name), getattr(fast, name), **close, msg=name)
    for a, b in zip([*eager.net.parameters()], [*fast.net.parameters()]):
        torch.testing.assert_close(a, b, **close)
    assert len(list(eager.net.kernels)) == 2


def test_learners_that_cannot_run_on_conv_nets_refuse_in_one_line():
    for name in ("self_supervised", "generation"):
        with pytest.raises(ValueError, match=f"learner={name} does not run on conv nets"):
            build_system(MODEL, {"name": name, "steps": 8}, DEPTH, 36, 3, 4)


def test_ep_estimate_of_a_kernel_is_its_unrolled_pairs_estimate():
    """EP's kernel gradient equals its tied pair's dense gradients read through each kernel entry."""
    sysm = build_system(MODEL, {"name": "ep", "steps": 8, "free_steps": 3}, DEPTH, 36, 3, 4, seed=2).to(D)
    state = State(s=torch.rand(2, 4, sysm.topology.n, dtype=D), v=torch.zeros(2, 4, sysm.topology.n, dtype=D),
                  dzm=torch.zeros(4, sysm.topology.n, dtype=D))
    grads = sysm.learner.estimate(sysm.net, state)
    z = torch.clamp(state.s, 0, 1)  # hardsigmoid
    betas = sysm.learner.betas
    outer = (z[1].t() @ z[1] - z[0].t() @ z[0]) / (betas[1] - betas[0])  # (N, N): [i, j] = rho_i rho_j difference
    for conv, g in zip(sysm.topology.convs, grads[-2:]):
        w = sysm.net.kernels[conv.post - 1]
        basis = [_unrolled(conv, e.view(conv.weight_shape)) for e in torch.eye(w.numel(), dtype=D)]
        pre, post = slice(*conv.pre_cols), slice(*conv.post_cols)
        want = torch.stack([(m * outer[post, pre]).sum() for m in basis]).view(conv.weight_shape)
        torch.testing.assert_close(g, want, rtol=0, atol=1e-6)


def test_dense_block_states_what_the_engine_computes_for_a_dense_block():
    """One relaxation step's drive of a dense layer equals Dense.drive of its blocks plus the bias."""
    from astdp.core import dynamics
    from astdp.core.blocks import Dense

    topo = Topology.build(6, [5, 4], 3, False)
    net = Network.init(topo, torch.Generator().manual_seed(0), bias_init="uniform", dtype=D)
    z = torch.rand(4, topo.n, dtype=D, generator=torch.Generator().manual_seed(1))
    out = torch.zeros_like(z)
    dynamics.drive_into(net, z, out)
    for layer in range(topo.n_layers):
        sl = topo.slice(layer)
        want = net.biases[layer] + sum(Dense((b.lo, b.hi), (sl.start, sl.stop)).drive(z, net.weights[k])
                                       for k, b in enumerate(topo.blocks) if b.post == layer)
        torch.testing.assert_close(out[:, sl], want, rtol=0, atol=1e-12)
    blk, w = topo.blocks[0], net.weights[0]
    dense = Dense((blk.lo, blk.hi), (topo.slice(blk.post).start, topo.slice(blk.post).stop))
    torch.testing.assert_close(dense.feedback(z, w), z[:, topo.slice(blk.post)] @ w)
    torch.testing.assert_close(dense.update(z, z), z[:, topo.slice(blk.post)].t() @ z[:, blk.lo : blk.hi])
