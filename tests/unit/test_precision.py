"""``trainer.precision=bf16-mixed``: the relaxation's products with bf16 operands, all else fp32.

Tolerances (tiny nets, three training batches, fake targets off, so that no threshold decision
flips): the weights' change at bf16 within 5 % (relative norm) of its change at fp32 and the states
within 0.02; the fused engine at bf16 equals the eager one at bf16 to 1e-5 (fake targets on, the
same counter draws), as it does at fp32. bf16 keeps about 3 significant digits, so an error of a
few 1e-3 per product is what the format gives; what must not happen is an update rounded away.
"""

import pytest
import torch

from astdp.core import dynamics, fused, plasticity
from astdp.core.network import Network, Topology
from astdp.core.precision import Products, products_for
from astdp.factory import build_system

BATCH, N_IN, N_OUT = 4, 9, 3
MODEL = dict(activation="hardsigmoid", eps=[0.5, 0.5], beta=[0.4, 0.5], beta_input=[1.0, 1.0], beta_output=[0.0, 1.0],
             bounds=[0.0, 1.0], input_clamp="exact", fake_target=dict(k=2.0, t_c=0.25, m=0.9))
LEARNER = dict(alpha=0.02, steps=8, free_steps=3, schedule="constant")
CONV = {"name": "tiny_conv", "hidden": [{"channels": 2, "kernel": 3, "pool": 2}, 6], "lateral": False,
        "input_shape": [1, 6, 6]}
needs_compiler = pytest.mark.skipif(fused.compiler_notice() is not None, reason="no C++ compiler for torch.compile")


def _system(engine, precision, fake=True, depth=None, dtype=torch.float64):
    n_in = 36 if depth else N_IN
    model = {**MODEL, "engine": engine, "fake_target": {**MODEL["fake_target"], "enabled": fake}}
    sysm = build_system(model, {"name": "supervised", **LEARNER}, depth or {"hidden": [40], "lateral": False},
                        n_in, N_OUT, BATCH, seed=3).to(dtype)
    sysm.relaxer.draws = "counter"
    sysm.relaxer.set_precision(precision)
    return sysm


def _train(sysm, n=3):
    g = torch.Generator().manual_seed(11)
    n_in = sysm.topology.sizes[0]
    for _ in range(n):
        x, y = torch.rand(BATCH, n_in, generator=g, dtype=sysm.train_s.dtype), torch.randint(0, N_OUT, (BATCH,), generator=g)
        sysm.train_batch(x, y)
    return sysm


@pytest.mark.parametrize("depth", [None, CONV], ids=["dense", "conv"])
def test_bf16_agrees_with_fp32_on_a_tiny_net(depth):
    a, b = _system("eager", None, fake=False, depth=depth), _system("eager", "bf16-mixed", fake=False, depth=depth)
    start = [p.clone() for p in a.net.parameters()]
    _train(a), _train(b)
    assert b.relaxer.cast is not None and a.relaxer.cast is None
    for w0, wa, wb in zip(start, a.net.parameters(), b.net.parameters()):
        assert wb.dtype == torch.float64  # the weights keep their own precision
        change = (wa - w0).norm()
        if change > 0:
            assert ((wb - w0) - (wa - w0)).norm() / change < 0.05
    torch.testing.assert_close(a.train_s, b.train_s, rtol=0, atol=0.02)
    assert not torch.equal(a.train_s, b.train_s)  # the products did run in bf16


@needs_compiler
def test_fused_at_bf16_equals_eager_at_bf16():
    eager, fast = _train(_system("eager", "bf16-mixed")), _train(_system("fused", "bf16-mixed"))
    assert fast.relaxer.engine == "fused"
    for name in ("train_s", "train_v", "train_dzm"):
        torch.testing.assert_close(getattr(eager, name), getattr(fast, name), rtol=0, atol=1e-5, msg=name)
    for a, b in zip(eager.net.parameters(), fast.net.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_the_bf16_copy_of_a_weight_follows_it():
    cast = Products()
    w = torch.rand(5, 4)
    copy = cast.copy(w)
    assert copy.dtype == torch.bfloat16 and torch.equal(copy, w.bfloat16())
    w[:, 1:].add_(1.0)  # in place on a view, as an update of a block with frozen columns
    cast.refresh(w)
    assert torch.equal(copy, w.bfloat16()) and cast.copy(w) is copy


def test_the_drive_is_a_bf16_product_added_to_the_fp32_bias():
    topo = Topology.build(6, [5], 3, False)
    net = Network.init(topo, torch.Generator().manual_seed(0), bias_init="uniform")
    z = torch.rand(4, topo.n, generator=torch.Generator().manual_seed(1))
    out = torch.zeros_like(z)
    dynamics.drive_into(net, z, out, cast=Products())
    for layer in range(topo.n_layers):
        sl = topo.slice(layer)
        want = net.biases[layer].clone()
        for k, b in enumerate(topo.blocks):
            if b.post == layer:
                want = want + (z[:, b.lo : b.hi].bfloat16() @ net.weights[k].t().bfloat16()).float()
        torch.testing.assert_close(out[:, sl], want, rtol=0, atol=1e-6)


def test_a_small_update_is_not_rounded_away():
    """An update far below bf16's spacing at the weight (|W| up to 1: 2^-8) still moves the fp32
    weight, by what fp32 gives to within bf16's relative error of the product; ``dz`` is the fp32
    difference of two close rates (1e-4 apart, below bf16's spacing near 0.5), which rates rounded
    to bf16 first would have lost."""
    topo = Topology.build(6, [5], 3, False)
    g = torch.Generator().manual_seed(0)
    z = 0.4 + 0.2 * torch.rand(4, topo.n, generator=g)  # (B, N) rates of net_s
    dz = 1e-4 * torch.rand(4, topo.n, generator=g)  # rates of net_l: z + dz
    lost = ((z + dz).bfloat16() - z.bfloat16()).float() - dz
    assert lost.norm() / dz.norm() > 0.9  # a difference of bf16 rates is mostly rounding (here: all lost)
    deltas = []
    for cast in (None, Products()):
        net = Network.init(topo, torch.Generator().manual_seed(1))
        w0 = [w.clone() for w in net.weights]
        plasticity.apply(net, dz, z, 0.1, cast=cast)
        deltas.append([w - a for w, a in zip(net.weights, w0)])
    for w, d32, d16 in zip(w0, *deltas):
        assert (d16 != 0).all()
        torch.testing.assert_close(d16, d32, rtol=0.02, atol=2.4e-7)  # 2.4e-7: two fp32 steps at |W| < 2
        assert ((w.bfloat16() + d32.bfloat16()) == w.bfloat16()).float().mean() > 0.9  # bf16 weights: lost


def test_precision_names():
    assert products_for(None) is None and products_for("32-true") is None
    assert products_for("bf16-mixed").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="trainer.precision must be one of"):
        products_for("bf16")


def test_a_parameter_moved_or_converted_gets_a_new_copy():
    """``Module.to`` replaces a parameter's data without a version bump: the copy follows the new data."""
    cast = Products()
    p = torch.nn.Parameter(torch.rand(3, 2), requires_grad=False)
    cast.copy(p)
    p.data = torch.rand(3, 2)
    assert torch.equal(cast.copy(p), p.bfloat16())


def test_a_conv_net_tests_at_bf16_under_inference_mode():
    """Lightning tests under ``torch.inference_mode``: the conv patches made there have no version
    counter, and are cast anyway; the outputs agree with fp32 inference."""
    a, b = _system("eager", None, fake=False, depth=CONV), _system("eager", "bf16-mixed", fake=False, depth=CONV)
    x = torch.rand(BATCH, 36, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with torch.inference_mode():
        out_a, _ = a.infer(x, steps=20)
        out_b, _ = b.infer(x, steps=20)
        out_b2, _ = b.infer(x, steps=20)  # again, from the first call's copies
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0.02)
    torch.testing.assert_close(out_b, out_b2, rtol=0, atol=0.02)


def test_the_copy_of_a_phase_constant_is_freed_with_it():
    """A tensor constant over one phase (a Gram matrix, conv patches) keeps its copy only while it lives."""
    import gc

    cast, w = Products(), torch.nn.Parameter(torch.rand(3, 3))
    cast.copy(w)
    for _ in range(5):
        cast.copy(torch.rand(100, 25))  # a new phase's constant; the last one is freed by the next
        gc.collect()
    cast.copy(torch.rand(100, 25))
    assert len(cast._copies) == 2  # the weight's and the live constant's: nothing of the freed ones
