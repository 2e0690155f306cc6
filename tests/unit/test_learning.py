"""It learns: the toy tasks of §3.2 reach perfect accuracy in the default suite (tens of seconds).

Settings: the documented "EP-style" clamping (docs/FINDINGS.md): inputs nudged equally hard in both
networks (beta_input = (1, 1)), outputs free in net_s and nudged in net_l (beta_output = (0, 0.5)).
"""

import pytest
import torch

from astdp.factory import build_system

MODEL = {"activation": "sigmoid4_centered", "beta_input": [1.0, 1.0], "beta_output": [0.0, 0.5],
         "fake_target": {"enabled": True}}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_four_patterns_unsupervised_reconstructs_every_pattern(seed):
    """Algorithm 1 on the 4 one-hot patterns (label one-hot = pattern); clamping a pattern on the
    inputs alone brings the free output neurons to that pattern."""
    learner = {"name": "unsupervised", "alpha": 3e-3, "steps": 160}
    sysm = build_system(MODEL, learner, {"hidden": [16]}, 4, 4, batch_size=4, seed=seed)
    eye, slots = torch.eye(4), torch.arange(4)
    for p in range(100):
        idx = (slots + p) % 4
        sysm.train_batch(eye[idx], idx)
    out, stats = sysm.infer(eye, 160)
    assert torch.equal(out.argmax(1), torch.arange(4))
    assert bool(stats.converged.all())


def test_self_supervised_switches_to_readout_and_then_trains_only_label_blocks():
    learner = {"name": "self_supervised", "alpha": 1e-3, "steps": 6, "free_steps": 3, "square": 2,
               "pretrain_batches": 2}
    sysm = build_system(MODEL, learner, {"hidden": [5]}, 16, 3, batch_size=2, seed=0)
    out_blocks = set(sysm.net.blocks_touching(sysm.topology.output_layer))
    x, y = torch.rand(2, 16), torch.tensor([0, 2])
    for _ in range(2):
        sysm.train_batch(x, y)
    assert all(float(sysm.net.weights[k].abs().sum()) == 0.0 for k in out_blocks)  # labels take no part
    frozen = {k: sysm.net.weights[k].clone() for k in range(len(sysm.net.weights)) if k not in out_blocks}
    sysm.train_batch(x, y)
    assert sysm.learner.stage == "readout"
    assert all(float(sysm.net.weights[k].abs().sum()) > 0.0 for k in out_blocks)
    assert all(torch.equal(w, sysm.net.weights[k]) for k, w in frozen.items())


def test_self_supervised_pretraining_learns_with_exact_inputs():
    """Inputs set exactly in both networks: the covered pixels are nudged in net_l only, so dz is not
    zero and the input -> hidden weights learn (with them set alike, the networks would be identical)."""
    model = {"activation": "hardsigmoid", "eps": [0.5, 0.5], "bounds": [0.0, 1.0], "input_clamp": "exact",
             "beta_output": [0.0, 1.0], "fake_target": {"enabled": False}}
    learner = {"name": "self_supervised", "alpha": 1e-2, "steps": 6, "free_steps": 2, "square": 2}
    sysm = build_system(model, learner, {"hidden": [5], "lateral": False}, 16, 3, batch_size=2, seed=0)
    into_hidden = [k for k, b in enumerate(sysm.topology.blocks) if b.post == 1 and b.lo == 0]
    before = {k: sysm.net.weights[k].clone() for k in into_hidden}
    stats = sysm.train_batch(torch.rand(2, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 2]))
    assert float(stats.dz_abs) > 0
    assert all(not torch.equal(before[k], sysm.net.weights[k]) for k in into_hidden)


@pytest.mark.slow
def test_default_reading_learns_fallback_digits_without_a_late_drop(compose_cfg):
    """The default model, learner and MNIST schedule (a 784-128-10 net to stay fast) on 2,000 of the
    fallback digits for 5 epochs: it learns, and from epoch 3 on the validation accuracy never falls
    more than 1 point below its best so far (the stability the default schedule promises)."""
    from omegaconf import OmegaConf

    from astdp.data.mnist import load_fallback

    epochs, n_train, batch = 5, 2000, 100
    cfg = compose_cfg([f"data.batch_size={batch}", "depth.hidden=[128]"])
    learner = OmegaConf.to_container(cfg.learner, resolve=True)
    if learner["schedule"] == "cosine":
        learner["total_batches"] = epochs * n_train // batch
    sysm = build_system(OmegaConf.to_container(cfg.model, resolve=True), learner,
                        OmegaConf.to_container(cfg.depth, resolve=True), 784, 10, batch_size=batch, seed=0)
    x, y = load_fallback()["train"]
    xv, yv = x[n_train:n_train + 500], y[n_train:n_train + 500]
    gen, accs = torch.Generator().manual_seed(0), []
    for epoch in range(epochs):
        sysm.relaxer.plast.epoch = epoch
        perm = torch.randperm(n_train, generator=gen)
        for b in range(n_train // batch):
            sysm.relaxer.plast.batch = epoch * (n_train // batch) + b
            idx = perm[b * batch:(b + 1) * batch]
            sysm.train_batch(x[idx], y[idx])
        assert sysm.diverged() is None
        pred = torch.cat([sysm.predict(xv[i:i + batch], int(learner["test_steps"])) for i in range(0, 500, batch)])
        accs.append(float((pred == yv).float().mean()))
    assert max(accs) > 0.8, accs
    for e in range(2, epochs):
        assert accs[e] >= max(accs[: e + 1]) - 0.01, accs


def test_visible_cost_is_eq6_on_the_chosen_network():
    """eq (6): C = 1/2 sum over visible neurons (inputs, and labels when targeted) of (t - s)^2."""
    learner = {"name": "supervised", "alpha": 0.0, "steps": 2, "free_steps": 1}
    sysm = build_system(MODEL, learner, {"hidden": [3]}, 2, 2, batch_size=2, seed=0)
    x, y = torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([0, 1])
    st = sysm.train_state.s  # (2 networks, 2 slots, 2 + 3 + 2 neurons)
    st.zero_()
    st[0, 0, :2] = torch.tensor([0.0, 0.0])  # sample 0, net_s: input error (1, 0), label error (1, 0)
    st[1] = torch.tensor([[1.0, 0.0, 0, 0, 0, 1.0, 0.0], [0.5, 0.5, 0, 0, 0, 0.0, 1.0]])  # net_l: exact
    # net_s, sample 0: 1/2 (1 + 1) = 1; sample 1: inputs (0.25 + 0.25), labels (0 + 1) -> 1/2 * 1.5 = 0.75
    assert torch.isclose(sysm.visible_cost(x, y), torch.tensor(0.875))
    assert torch.isclose(sysm.visible_cost(x, None), torch.tensor(0.5 * (1.0 + 0.5) / 2))  # inputs only
    assert float(sysm.visible_cost(x, y, network=1)) == 0.0


@pytest.mark.parametrize("cover", [0.0, 0.4])
def test_covered_pixels_let_the_blocks_into_the_input_layer_learn(cover):
    """With inputs set exactly the blocks into the input layer learn only when some pixels are drawn."""
    model = {"activation": "hardsigmoid", "eps": [0.5, 0.5], "bounds": [0.0, 1.0], "input_clamp": "exact",
             "beta_input": [1.0, 1.0], "beta_output": [0.0, 1.0], "fake_target": {"enabled": False}}
    learner = {"name": "supervised", "alpha": 1e-2, "steps": 8, "free_steps": 3, "cover": cover}
    sysm = build_system(model, learner, {"hidden": [6]}, 9, 3, batch_size=4, seed=0)
    into_input = [k for k, b in enumerate(sysm.topology.blocks) if b.post == 0]
    before = [sysm.net.weights[k].clone() for k in into_input]
    phases = sysm.learner.phases(torch.rand(4, 9), torch.tensor([0, 1, 2, 0]))
    sysm.train_batch(torch.rand(4, 9), torch.tensor([0, 1, 2, 0]))
    moved = any(not torch.equal(w0, sysm.net.weights[k]) for w0, k in zip(before, into_input))
    assert moved == (cover > 0)
    if cover > 0:  # the clamped phase: seen pixels set in both nets, drawn ones free in net_s, pulled in net_l
        seen, drawn, _ = phases[1].targets
        assert seen.exact and not drawn.exact
        assert torch.equal(seen.beta[0] > 0, drawn.beta[1] == 0)  # each pixel either set or drawn
        assert float(drawn.beta[0].sum()) == 0.0 and float(drawn.beta[1].sum()) > 0


EXACT = {"activation": "hardsigmoid", "eps": [0.5, 0.5], "bounds": [0.0, 1.0], "input_clamp": "exact",
         "beta_output": [0.0, 1.0], "fake_target": {"enabled": False}}


def test_inpaint_keeps_the_seen_pixels_and_leaves_the_persistent_states_alone():
    learner = {"name": "self_supervised", "alpha": 1e-2, "steps": 6, "free_steps": 2, "square": 2, "image_size": 4}
    sysm = build_system(EXACT, learner, {"hidden": [5], "lateral": False}, 16, 3, batch_size=3, seed=0)
    x = torch.rand(3, 16, generator=torch.Generator().manual_seed(1))
    covered = sysm.learner.cover_mask(3, x.device, torch.Generator().manual_seed(2))
    assert covered.sum(1).tolist() == [4, 4, 4]
    before = sysm.eval_state.s.clone()
    draws = [sysm.inpaint(x, covered, steps=8, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])  # the same squares and initial states, the same picture
    assert torch.allclose(draws[0][~covered], x[~covered])
    assert not torch.allclose(draws[0][covered], x[covered])
    assert torch.equal(sysm.eval_state.s, before)


def test_generation_learner_sets_the_label_and_learns_to_draw_the_image():
    """§2.3.4, inputs and outputs swapped: the label is set in both networks, the image is free in
    net_s and pulled in net_l, so the blocks into the input layer learn and those into the label
    layer do not; after training, each clamped label draws an image nearer its own pattern."""
    learner = {"name": "generation", "alpha": 2e-2, "steps": 30, "free_steps": 10}
    sysm = build_system(EXACT, learner, {"hidden": [8], "lateral": False}, 6, 2, batch_size=2, seed=0)
    t = sysm.topology
    into_label = [k for k, b in enumerate(t.blocks) if b.post == t.output_layer]
    into_image = [k for k, b in enumerate(t.blocks) if b.post == t.input_layer]
    frozen = {k: sysm.net.weights[k].clone() for k in into_label}
    start = {k: sysm.net.weights[k].clone() for k in into_image}
    patterns, y = torch.tensor([[1.0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]]), torch.tensor([0, 1])
    for _ in range(150):
        sysm.train_batch(patterns, y)
    assert all(torch.equal(w, sysm.net.weights[k]) for k, w in frozen.items())
    assert all(not torch.equal(w, sysm.net.weights[k]) for k, w in start.items())
    drawn = sysm.generate(y, steps=60, init_scale=1.0, generator=torch.Generator().manual_seed(0))
    dist = torch.cdist(drawn, patterns)  # (label drawn, pattern)
    assert torch.equal(dist.argmin(1), y) and float(dist.diagonal().max()) <= 1.0


def test_shared_free_phase_learns_only_while_the_labels_are_clamped():
    """``learner.shared_free``: after a batch has left net_l nudged away from net_s, a free phase
    learns in the paper's reading and learns nothing when shared (net_l restarts from net_s);
    settings the two networks cannot share are refused."""
    learner = {"name": "supervised", "alpha": 1e-2, "steps": 8, "free_steps": 3}
    x, y = torch.rand(4, 9, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0])
    for shared in (False, True):
        sysm = build_system(EXACT, learner, {"hidden": [6]}, 9, 3, batch_size=4, seed=0)
        sysm.train_batch(x, y)  # ends with the labels clamped in net_l
        assert not torch.equal(sysm.train_state.s[0], sysm.train_state.s[1])
        sysm.learner.free_steps, sysm.learner.shared_free = 8, shared  # a batch that is all free phase
        before = [w.clone() for w in sysm.net.weights]
        sysm.train_batch(x, y)
        assert torch.equal(sysm.train_state.s[0], sysm.train_state.s[1]) == shared
        assert all(torch.equal(w0, w) for w0, w in zip(before, sysm.net.weights)) == shared
    with pytest.raises(ValueError, match="one model.eps"):
        build_system({**EXACT, "eps": [0.5, 0.4]}, {**learner, "shared_free": True}, {"hidden": [6]}, 9, 3,
                     batch_size=4)
    with pytest.raises(ValueError, match="cover=0"):
        build_system(EXACT, {**learner, "shared_free": True, "cover": 0.3}, {"hidden": [6]}, 9, 3, batch_size=4)
