"""The fused engine (one compiled pass per step) against the eager one, and the counter-based draws.

Both engines run the same nets from the same seed in float64, the eager one with the fused one's
counter-based fake-target draws (``Relaxer.draws = "counter"``), so that both see the same uniforms:
states, velocities, running means, weights, biases and statistics must agree to 1e-5 after three
training batches with fake targets on. Compiling costs seconds per step shape (inductor caches it
on disk for later runs), so the default run covers the supervised and unsupervised learners on one
small net; every other learner and option is ``slow``.
"""

import logging

import pytest
import torch

from astdp.core import draws, fake_target, fused
from astdp.factory import build_system
from astdp.system import AUTO_MIN_WORK

D = torch.float64
TOL = 1e-5
BATCH, N_IN, N_OUT = 4, 9, 3  # 3 x 3 images
MODEL = dict(activation="hardsigmoid", eps=[0.5, 0.5], beta=[0.4, 0.5], beta_input=[1.0, 1.0], beta_output=[0.0, 1.0],
             bounds=[0.0, 1.0], input_clamp="exact", fake_target=dict(k=2.0, t_c=0.25, m=0.9))
LEARNER = dict(alpha=0.02, steps=8, free_steps=3, schedule="constant")
needs_compiler = pytest.mark.skipif(fused.compiler_notice() is not None, reason="no C++ compiler for torch.compile")


def _system(engine, learner="supervised", model=None, hidden=(40,), lateral=False, **extra):
    sysm = build_system({**MODEL, **(model or {}), "engine": engine}, {"name": learner, **LEARNER, **extra},
                        {"hidden": list(hidden), "lateral": lateral}, N_IN, N_OUT, BATCH, seed=3).to(D)
    sysm.relaxer.draws = "counter"  # the eager engine draws as the fused one does
    return sysm


def _batches(n=3):
    g = torch.Generator().manual_seed(11)
    return [(torch.rand(BATCH, N_IN, generator=g, dtype=D), torch.randint(0, N_OUT, (BATCH,), generator=g))
            for _ in range(n)]


def _assert_same(a, b, tol=TOL):
    close = dict(rtol=0, atol=tol)
    for name in ("train_s", "train_v", "train_dzm", "eval_s"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), **close, msg=name)
    for wa, wb in zip([*a.net.weights, *a.net.biases], [*b.net.weights, *b.net.biases]):
        torch.testing.assert_close(wa, wb, **close)
    assert int(a.relaxer.draw_counter) == int(b.relaxer.draw_counter)


def _train_both(learner="supervised", model=None, **kw):
    eager, fast = _system("eager", learner, model, **kw), _system("fused", learner, model, **kw)
    assert (eager.relaxer.engine, fast.relaxer.engine) == ("eager", "fused")
    w0 = [w.clone() for w in fast.net.weights]
    for x, y in _batches():
        se, sf = eager.train_batch(x, y), fast.train_batch(x, y)
        assert se.steps == sf.steps
        assert abs(se.dz_abs.item() - sf.dz_abs.item()) < TOL
        assert abs(se.fake_rate.item() - sf.fake_rate.item()) < TOL
    _assert_same(eager, fast)
    assert any(not torch.equal(a, b) for a, b in zip(w0, fast.net.weights))  # learning did happen
    return eager, fast, sf


# -- the counter-based draws ------------------------------------------------------------------------------
def test_counter_draws_are_uniform_independent_and_reproducible():
    key = torch.tensor(draws.seed_key(7))
    u = torch.stack([draws.uniform(torch.tensor(c), key, 256, 64, D) for c in range(8)])  # (8, 256, 64)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0
    flat = u.flatten()
    assert abs(flat.mean().item() - 0.5) < 0.005 and abs(flat.var().item() - 1 / 12) < 0.002
    hist = torch.histc(flat, bins=16, min=0.0, max=1.0) / flat.numel()
    assert (hist - 1 / 16).abs().max() < 0.004  # flat in every sixteenth
    successive = torch.corrcoef(torch.stack([u[:-1].flatten(), u[1:].flatten()]))[0, 1]
    assert abs(successive.item()) < 0.01  # draw c and draw c + 1 at the same position
    neighbours = torch.corrcoef(torch.stack([u[..., :-1].flatten(), u[..., 1:].flatten()]))[0, 1]
    assert abs(neighbours.item()) < 0.01  # neighbouring neurons in one draw
    assert torch.equal(u[3], draws.uniform(torch.tensor(3), key, 256, 64, D))
    other = draws.uniform(torch.tensor(3), torch.tensor(draws.seed_key(8)), 256, 64, D)
    assert (other != u[3]).float().mean() > 0.99


def test_fake_target_fires_with_algorithm1_probability_on_counter_draws():
    g = torch.Generator().manual_seed(0)
    dz = torch.rand(2000, 50, generator=g, dtype=D) * 0.02
    dzm = torch.full_like(dz, 0.01)
    u = draws.uniform(torch.tensor(5), torch.tensor(draws.seed_key(1)), 2000, 50, D)
    fired = fake_target.fire(dz, dzm, u, k=1.5)
    p = fake_target.firing_probability(dz, dzm, 1.5)
    assert abs(fired.double().mean().item() - p.mean().item()) < 0.01
    high = p > 0.9
    assert fired[high].double().mean() > 0.85 and fired[p < 0.1].double().mean() < 0.12


# -- fused against eager -----------------------------------------------------------------------------------
@needs_compiler
@pytest.mark.parametrize("learner", ["supervised", "unsupervised"])
def test_fused_matches_eager_after_three_batches(learner):
    _, fast, stats = _train_both(learner)
    assert 0.0 < stats.fake_rate.item() < 1.0  # fake targets fired, and not everywhere


@needs_compiler
def test_fused_inference_matches_eager_with_convergence():
    eager, fast, _ = _train_both()
    x, _ = _batches(1)[0]
    out_e, st_e = eager.infer(x, steps=40, tol=1e-3, stop_when_converged=True)
    out_f, st_f = fast.infer(x, steps=40, tol=1e-3, stop_when_converged=True)
    torch.testing.assert_close(out_e, out_f, rtol=0, atol=TOL)
    assert torch.equal(st_e.converge_step, st_f.converge_step) and st_e.steps == st_f.steps
    assert (st_f.converge_step > 0).any()


@needs_compiler
def test_fused_resume_is_bit_for_bit():
    batches = _batches(4)
    ref = _system("fused")
    for x, y in batches:
        ref.train_batch(x, y)
    first = _system("fused")
    for x, y in batches[:2]:
        first.train_batch(x, y)
    saved, counter, rng = first.state_dict(), int(first.relaxer.draw_counter), first.generator.get_state()
    resumed = _system("fused")
    resumed.load_state_dict(saved)
    resumed.relaxer.draw_counter.fill_(counter)
    resumed.generator.set_state(rng)
    for x, y in batches[2:]:
        resumed.train_batch(x, y)
    _assert_same(ref, resumed, tol=0.0)


@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("case", [
    dict(learner="self_supervised", square=2),
    dict(learner="generation"),
    dict(learner="supervised", shared_free=True),
    dict(learner="supervised", model=dict(momentum=0.6)),
    dict(learner="supervised", model=dict(fake_target=dict(k=0.4, rule="eq18", center=0.5))),
    dict(learner="supervised", lateral=True, hidden=(40,)),
    dict(learner="supervised", hidden=(40, 35)),
    dict(learner="supervised", model=dict(activation="sigmoid4_centered", bounds=None, input_clamp="nudge",
                                          beta_output=None)),
    dict(learner="supervised", model=dict(smoothing=0.01)),  # smoothing: the fused engine runs eager steps
    dict(learner="ep", optimizer="adam", pairs="tied"),  # Equilibrium Propagation: learning off in the steps
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_fused_matches_eager_for_every_learner_and_option(case):
    _train_both(**case)


# -- choosing the engine ----------------------------------------------------------------------------------
def test_auto_engine_is_eager_for_short_runs_and_fused_for_long_ones(monkeypatch):
    sysm = _system("auto")
    assert sysm.relaxer.engine == "eager"  # until the harness knows the run's length
    assert sysm.choose_engine(work=AUTO_MIN_WORK / 10) == "eager"
    monkeypatch.setattr(fused, "compiler_notice", lambda device="cpu": None)
    assert sysm.choose_engine(work=AUTO_MIN_WORK) == "fused" and sysm.relaxer.draws == "counter"


def test_without_a_compiler_the_engine_is_eager_with_one_line(monkeypatch, caplog):
    monkeypatch.setattr(fused, "compiler_notice", lambda device="cpu": "no C++ compiler (g++) on PATH")
    with caplog.at_level(logging.WARNING):
        sysm = _system("fused")
    assert sysm.relaxer.engine == "eager"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no C++ compiler" in lines[0] and "\n" not in lines[0]


def test_a_failed_compile_falls_back_to_eager_and_keeps_the_state(monkeypatch, caplog):
    """A compiler error on the first step leaves nothing half done: the phase goes on uncompiled,
    the rest of the run eager, with the same draws, and the result equals the eager engine's."""
    def broken(spec, layout):
        def fail(*args):
            raise RuntimeError("compiler exploded\nsecond line")
        return fail

    monkeypatch.setattr(fused, "compiled", broken)
    eager, fast = _system("eager"), _system("fused")
    with caplog.at_level(logging.WARNING):
        for x, y in _batches():
            eager.train_batch(x, y)
            fast.train_batch(x, y)
    assert fast.relaxer.engine == "eager" and fast.relaxer.draws == "counter"
    assert sum("compiling the step failed" in r.getMessage() for r in caplog.records) == 1
    _assert_same(eager, fast)


@needs_compiler
def test_a_short_batch_takes_eager_steps_with_the_same_draws():
    """The short last batch of an epoch is not compiled for: it runs the eager step on the counter
    draws, so the run equals the eager engine's all the same."""
    eager, fast = _system("eager"), _system("fused")
    (x, y), (x2, y2) = _batches(2)
    for sysm in (eager, fast):
        sysm.train_batch(x, y)
        sysm.train_batch(x2[:3], y2[:3])
    _assert_same(eager, fast)
    compiled_batches = {layout[0][0][0] for _, layout in fast.relaxer._ready}  # the first argument's (B, M)
    assert compiled_batches == {BATCH}
