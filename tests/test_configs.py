"""Every config group option (and every experiment file) composes and instantiates; bad values fail fast."""

from __future__ import annotations

import os
import re

import pytest
import torch
from omegaconf import OmegaConf

from astdp.lit.build import build_datamodule, build_logger, build_module, build_trainer
from astdp.lit.config import ConfigError, validate
from tests.conftest import CONF, ROOT

GROUPS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml"))
          for g in ("data", "model", "learner", "depth", "logger", "trainer", "hparams_search", "experiment")}
EXPECTED = {
    "data": ["cifar10", "cifar100", "fashion_mnist", "kmnist", "mnist", "stdp_pair", "svhn", "toy_order", "toy_rivalry"],
    "model": ["astdp", "astdp_unbounded", "paper"],
    "learner": ["bp_ce", "bp_mse", "ep", "generation", "self_supervised", "supervised", "unsupervised"],
    "depth": ["conv_cifar", "conv_cifar_small", "conv_mnist", "conv_mnist_large", "h500x3", "h512", "h512x2", "h512x3",
              "toy16", "toy8"],
    "logger": ["csv", "none", "wandb"],
    "trainer": ["cpu", "ddp", "gpu"],
    "hparams_search": ["optuna", "optuna_deep", "optuna_ep"],
}


def test_option_names_match_the_schema():
    for group, names in EXPECTED.items():
        assert GROUPS[group] == names, group


def test_default_is_the_papers_main_model(compose_cfg):
    cfg = compose_cfg()
    assert (cfg.data.name, cfg.learner.name, list(cfg.depth.hidden), cfg.logger.offline) == ("mnist", "supervised", [512], True)
    assert cfg.data.root == os.environ.get("ASTDP_DATA_ROOT", "data")  # the one env override
    validate(OmegaConf.to_container(cfg, resolve=True))
    assert cfg.learner.hidden_alpha == 2.0 and cfg.learner.layer_alpha is None  # MNIST's hidden rate x2
    assert compose_cfg(["experiment=paper_literal"]).learner.hidden_alpha == 1.0  # the paper: one rate
    assert compose_cfg(["data=toy_order"]).learner.hidden_alpha == 1.0  # no MNIST budget: one rate


@pytest.mark.parametrize("name", GROUPS["data"])
def test_data_options_instantiate(compose_cfg, name):
    dm = build_datamodule(compose_cfg([f"data={name}"]))
    assert dm.name == name and dm.batch_size >= 1


@pytest.mark.parametrize("learner", EXPECTED["learner"])
@pytest.mark.parametrize("depth", EXPECTED["depth"])
def test_learner_and_depth_options_build(compose_cfg, learner, depth):
    data = "toy_order" if depth.startswith("toy") else "cifar10" if depth.startswith("conv_cifar") else "mnist"
    if learner == "self_supervised" and data == "toy_order":
        pytest.skip("inpainting squares need image data")
    cfg = compose_cfg([f"learner={learner}", f"depth={depth}", f"data={data}"])
    if depth.startswith("conv") and learner in ("self_supervised", "generation"):
        with pytest.raises(ConfigError, match=f"learner={learner} does not run on conv nets"):
            validate(OmegaConf.to_container(cfg, resolve=True))
        with pytest.raises(ConfigError, match=f"learner={learner} does not run on conv nets"):
            build_module(cfg)
        return
    module = build_module(cfg)
    assert module.run_config["learner"]["name"] == learner
    hidden = list(cfg.depth.hidden)
    if learner.startswith("bp_"):  # the same layers, feed-forward
        assert module.mlp.n_layers == len(hidden) + 1
    elif depth.startswith("conv"):  # conv layers, then the outputs
        assert len(module.system.topology.convs) == len(hidden) == len(module.system.topology.sizes) - 2
    else:  # the built net has the depth's hidden layers
        assert list(module.system.topology.sizes[1:-1]) == hidden


@pytest.mark.parametrize(("overrides", "message"), [
    (["depth=conv_mnist", "data=cifar10"], "depth=conv_mnist takes inputs of shape [1, 28, 28] (depth.input_shape), "
                                           "but data=cifar10 gives [3, 32, 32]"),
    (["depth=conv_mnist", "data=toy_order"], "has conv layers, which need images"),
    (["depth=conv_mnist", "depth.hidden.0.pool=5"], "5x5 pooling does not divide"),
    (["depth=conv_mnist", "depth.hidden.1.kernel=0"], "depth.hidden[1].kernel must be an integer >= 1"),
    (["depth=conv_mnist", "+depth.hidden.0.dilation=2"], "depth.hidden[0] has unknown keys ['dilation']"),
    (["depth.hidden=[512,0]"], "depth.hidden must be a non-empty list of integers >= 1"),
])
def test_conv_depth_errors_are_one_line_before_any_data(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(OmegaConf.to_container(compose_cfg(overrides), resolve=True))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("logger", EXPECTED["logger"])
def test_logger_options_instantiate(compose_cfg, logger, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    built = build_logger(compose_cfg([f"logger={logger}"]))
    assert (built is False) == (logger == "none")


def test_trainer_options(compose_cfg):
    trainer = build_trainer(compose_cfg(["logger=none"]), logger=False)
    assert trainer.max_epochs == 1
    gpu = compose_cfg(["trainer=gpu", "data.max_epochs=3"])
    assert (gpu.trainer.accelerator, gpu.trainer.devices, gpu.trainer.max_epochs) == ("gpu", 1, 3)


@pytest.mark.parametrize("learner,lightning", [("supervised", "32-true"), ("ep", "32-true"), ("bp_ce", "bf16-mixed")])
def test_precision_goes_to_the_engine_or_to_lightning(compose_cfg, learner, lightning):
    """The aSTDP engine casts its own products (Lightning stays at 32-true); backprop uses Lightning's autocast."""
    cfg = compose_cfg(["logger=none", "data=toy_order", "depth=toy16", f"learner={learner}", "trainer.precision=bf16-mixed"])
    validate(OmegaConf.to_container(cfg, resolve=True))
    module = build_module(cfg)
    trainer = build_trainer(cfg, logger=False)
    assert trainer.precision == lightning
    if learner != "bp_ce":
        assert module.system.relaxer.cast.dtype == torch.bfloat16
    assert build_module(compose_cfg(["data=toy_order", "depth=toy16"])).system.relaxer.cast is None  # default: fp32


@pytest.mark.parametrize("overrides", [["hparams_search=optuna"], ["hparams_search=optuna_deep", "experiment=table2_h500x3_nofake"],
                                       ["hparams_search=optuna_deep", "experiment=table2_h512x3"], ["hparams_search=optuna_ep"],
                                       ["hydra/launcher=joblib"], ["hydra/launcher=submitit_slurm"]])
def test_sweep_and_launcher_configs_compose(compose_cfg, overrides):
    cfg = compose_cfg(overrides, hydra=True)
    if overrides[0].startswith("hparams"):
        assert cfg.hydra.sweeper.direction == "maximize" and cfg.optimized_metric == "val/acc"
        for key in cfg.hydra.sweeper.params:  # every searched key exists in the run config
            assert OmegaConf.select(cfg, key, default="missing") != "missing", key
    else:
        assert "_target_" in cfg.hydra.launcher


def test_eval_config_composes(compose_cfg):
    cfg = compose_cfg(["ckpt_path=x.ckpt", "test_steps=[20,40]", "+data.stride=3"], name="eval")
    assert list(cfg.test_steps) == [20, 40] and cfg.data.stride == 3


@pytest.mark.parametrize("name", GROUPS["experiment"])
def test_experiment_files_compose_and_instantiate(compose_cfg, name):
    """A training experiment passes the run's checks as pinned (a conv depth's input shape against the data
    set's images, ...) and builds; built with 2 state slots, as the net's layers do not depend on them and
    128 slots of a large conv net cost seconds."""
    cfg = compose_cfg([f"experiment={name}"])
    if cfg.get("experiment_fn"):
        from astdp.experiments.runner import resolve

        assert callable(resolve(cfg.experiment_fn))
    else:
        validate(OmegaConf.to_container(cfg, resolve=True))
        cfg.data.batch_size = 2
        build_module(cfg)
        build_datamodule(cfg)


BAD = [
    ("model.beta=[0.5,0.4]", "model.beta must satisfy 0 <= beta_small <= beta_large"),
    ("model.eps=[0,0.4]", "model.eps must lie in (0, 1]"),
    ("model.eps=[0.5,1.5]", "model.eps must lie in (0, 1]"),
    ("model.activation=relu", "model.activation must be one of"),
    ("model.momentum=0", "model.momentum must lie in (0, 1]"),
    ("model.fake_target.k=0", "model.fake_target.k must be > 0"),
    ("model.fake_target.m=1.0", "model.fake_target.m must lie in [0, 1)"),
    ("model.readout=x", "model.readout must be one of"),
    ("model.reduction=max", "model.reduction must be one of"),
    ("model.engine=turbo", "model.engine must be one of ['auto', 'eager', 'fused']"),
    ("model.eps=abc", "model.eps must be a pair of numbers"),
    ("learner.steps=-5", "learner.steps must be an integer >= 1"),
    ("learner.free_steps=300", "learner.free_steps must be an integer in [0, learner.steps=60]"),
    ("learner.free_steps=-1", "learner.free_steps must be an integer in [0, learner.steps=60]"),
    ("learner.test_steps=0", "learner.test_steps must be an integer >= 1"),
    ("learner.alpha=-1e-4", "learner.alpha must be a number >= 0"),
    ("learner.tol=0", "learner.tol must be a number > 0"),
    ("learner.hidden_alpha=-2", "learner.hidden_alpha must be a finite number >= 0"),
    ("data.batch_size=0", "data.batch_size must be an integer >= 1"),
    ("data.val_size=-1", "data.val_size must be a fraction in [0, 1) or a count >= 0"),
    ("data.n_train=-10", "data.n_train must be an integer >= 1 or null"),
    ("trainer.max_epochs=-3", "trainer.max_epochs must be an integer >= 1 or -1 (no limit)"),
    ("trainer.precision=bf16", "trainer.precision must be one of null, 32-true, bf16-mixed or 16-mixed (GPU), got 'bf16'"),
    ("trainer.precision=16-mixed", "trainer.precision=16-mixed needs a GPU (trainer=gpu)"),
    ("seed=-1", "seed must be an integer >= 0"),
]


@pytest.mark.parametrize("override,message", BAD, ids=[b[0] for b in BAD])
def test_bad_values_fail_before_data_loads(compose_cfg, override, message):
    cfg = compose_cfg([override])
    with pytest.raises(ConfigError) as err:
        validate(OmegaConf.to_container(cfg, resolve=True))
        build_module(cfg)
    assert message in str(err.value)


@pytest.mark.parametrize("override,message", [("learner.beta=0", "learner.beta must be > 0"),
                                              ("learner.free_steps=40", "learner.free_steps must lie in [1, learner.steps=40)"),
                                              ("learner.optimizer=rmsprop", "learner.optimizer must be one of"),
                                              ("learner.init_gain=0", "learner.init_gain must be > 0")])
def test_bad_ep_values(compose_cfg, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_module(compose_cfg(["learner=ep", override]))


def test_ep_ties_the_pairs(compose_cfg):
    module = build_module(compose_cfg(["learner=ep", "depth=toy8", "data=toy_order"]))
    assert module.system.net.pairs == "tied" and module.system.net.symmetry_index() > 0.999


def test_bad_toy_and_baseline_values(compose_cfg):
    for overrides, message in ((["data=toy_order", "data.stride=2"], "data.stride must be one of [1, 3]"),
                               (["learner=bp_ce", "learner.lr=0"], "learner.lr must be a number > 0"),
                               (["learner=bp_mse", "learner.optimizer=rmsprop"], "learner.optimizer must be sgd or adam"),
                               (["data=stdp_pair"], "experiment=fig6_stdp")):
        with pytest.raises(ConfigError) as err:
            validate(OmegaConf.to_container(compose_cfg(overrides), resolve=True))
        assert message in str(err.value)


def test_help_lists_the_groups(run_script):
    out = run_script("train.py", "--help").stdout
    for group, names in EXPECTED.items():
        assert f"{group}:" in out and all(n in out for n in names), group
    assert "experiment" in out


def test_repo_layout():
    for path in ("conf", "src", "tests", "outputs", "train.py", "evaluate.py", "requirements.txt", "README.md"):
        assert (ROOT / path).exists(), path
    assert (CONF / "experiment").is_dir()


def test_bad_exchange_is_named(compose_cfg):
    cfg = compose_cfg(["trainer=ddp", "trainer.strategy.exchange=sometimes"])
    with pytest.raises(ConfigError, match=r"trainer.strategy.exchange must be one of \['auto', 'dense', 'factors'\]"):
        validate(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("learner", ["self_supervised", "generation"])
def test_one_channel_learners_refuse_colour_images_in_one_line(compose_cfg, learner):
    cfg = compose_cfg([f"learner={learner}", "data=cifar10"])
    with pytest.raises(ConfigError, match=f"learner={learner} draws and covers one-channel images, but data=cifar10 "
                                          "has 3 channels"):
        validate(OmegaConf.to_container(cfg, resolve=True))
    validate(OmegaConf.to_container(compose_cfg([f"learner={learner}", "data=fashion_mnist"]), resolve=True))


def test_a_depth_sets_its_own_default_feedback_rate(compose_cfg):
    """``depth.feedback_alpha`` (conv_mnist: 0) is learner=supervised's default; an override still wins,
    other depths keep 1, and learners without the key are untouched."""
    assert compose_cfg(["depth=conv_mnist"]).learner.feedback_alpha == 0.0
    assert compose_cfg(["depth=conv_mnist", "learner.feedback_alpha=0.5"]).learner.feedback_alpha == 0.5
    assert compose_cfg(["depth=h512x2"]).learner.feedback_alpha == 1.0
    assert "feedback_alpha" not in compose_cfg(["depth=conv_mnist", "learner=ep"]).learner
