"""Runs that lose nothing: exact resume for every learner (at an epoch boundary and inside an epoch),
checkpoint cadence, saves on signals and divergence, atomic saves, and one-line errors for bad input.

Everything runs on a few hundred fallback digits with a 24-neuron hidden layer and a handful of
relaxation steps; only the tests of the entry points themselves start subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from pytorch_lightning import Callback

from astdp.lit import checkpoints as C
from astdp.lit import run as R
from astdp.lit.build import build_datamodule, build_module, build_trainer
from astdp.lit.checkpoints import CheckpointError, Interrupted, RunCheckpoint
from astdp.lit.module import DivergenceError
from tests.conftest import FALLBACK_DATA, ROOT, TINY, TOY

# 200 training digits in batches of 50: 4 batches per epoch, 2 epochs.
SMALL = [*FALLBACK_DATA, *TINY, "logger=none", "depth.hidden=[24]", "trainer.max_epochs=2"]
LEARNERS = {
    "supervised": [],
    "unsupervised": [],  # (its learner has no free phase: learner.free_steps is dropped below)
    # pretrain for 5 batches, then the readout: the switch falls inside the second epoch
    "self_supervised": ["learner.pretrain_batches=5", "learner.square=6"],
}


@pytest.fixture(autouse=True)
def _no_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTDP_DATA_ROOT", str(tmp_path / "no_mnist_here"))


def _cfg(compose_cfg, out: Path, *overrides, name: str = "train"):
    cfg = compose_cfg(list(overrides), name=name)
    with open_dict(cfg):
        cfg.output_dir = str(out)
    return cfg


class StopAt(Callback):
    """Asks the run to stop as a signal would: before batch ``step`` ends, or during epoch ``epoch``'s validation."""

    def __init__(self, step: int | None = None, epoch: int | None = None) -> None:
        self.step, self.epoch = step, epoch

    def _checkpoint(self, trainer) -> RunCheckpoint:
        return next(cb for cb in trainer.callbacks if isinstance(cb, RunCheckpoint))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            self._checkpoint(trainer).request_stop(signal.SIGTERM)

    def on_validation_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            self._checkpoint(trainer).request_stop(signal.SIGINT)


def _fit(cfg, ckpt_path=None, stop: Callback | None = None):
    module, dm = build_module(cfg), build_datamodule(cfg)
    trainer = build_trainer(cfg, logger=False, enable_progress_bar=False, enable_model_summary=False)
    if stop is not None:
        trainer.callbacks.insert(0, stop)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module, trainer


def _interrupt(cfg, stop: Callback) -> Path:
    with pytest.raises(Interrupted) as info:
        _fit(cfg, stop=stop)
    ckpt = Path(cfg.output_dir) / "checkpoints" / "last.ckpt"
    assert str(ckpt) in str(info.value) and ckpt.exists()
    return ckpt


def _assert_same_run(a, b, trainer_a, trainer_b) -> None:
    """Bit for bit: every weight, bias, persistent state and counter, the rate, the best validation."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert trainer_a.global_step == trainer_b.global_step
    assert a.system.relaxer.plast.current_alpha == b.system.relaxer.plast.current_alpha
    assert torch.equal(a.val_acc_best.compute(), b.val_acc_best.compute())
    assert float(trainer_a.callback_metrics["val/acc"]) == float(trainer_b.callback_metrics["val/acc"])
    assert a.system.learner.state_dict().keys() == b.system.learner.state_dict().keys()
    for key, value in a.system.learner.state_dict().items():
        other = b.system.learner.state_dict()[key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key
    assert a.system.net.frozen == b.system.net.frozen


@pytest.mark.parametrize("learner", [  # the two slowest under -m slow: the same resume path as the others
    pytest.param(n, marks=pytest.mark.slow) if n in ("self_supervised", "unsupervised") else n for n in sorted(LEARNERS)])
def test_resume_is_bit_for_bit_at_an_epoch_boundary_and_inside_an_epoch(compose_cfg, tmp_path, learner):
    extra = [f"learner={learner}", *LEARNERS[learner]]
    small = [a for a in SMALL if not (learner == "unsupervised" and a.startswith("learner.free_steps"))]
    straight, t_straight = _fit(_cfg(compose_cfg, tmp_path / "straight", *small, *extra))
    assert t_straight.global_step == 8

    for where, stop in (("epoch_end", StopAt(epoch=0)), ("mid_epoch", StopAt(step=5))):
        cfg = _cfg(compose_cfg, tmp_path / where, *small, *extra)
        ckpt = _interrupt(cfg, stop)
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert saved["global_step"] == (4 if where == "epoch_end" else 6)
        resumed, t_resumed = _fit(cfg, ckpt_path=str(ckpt))
        _assert_same_run(straight, resumed, t_straight, t_resumed)
        assert int(resumed.samples_seen) == 400
    if learner == "self_supervised":
        assert straight.system.learner.stage == "readout" and straight.system.learner.batches_seen == 8


def test_one_epoch_then_resumed_to_two_equals_two_epochs(compose_cfg, tmp_path):
    """The order of epoch 2 is restored, not redrawn (a constant rate: a cosine's length is the run's)."""
    extra = ["learner.schedule=constant"]
    straight, t_straight = _fit(_cfg(compose_cfg, tmp_path / "two", *SMALL, *extra))
    one = _cfg(compose_cfg, tmp_path / "one", *SMALL, *extra, "trainer.max_epochs=1")
    _fit(one)
    resumed, t_resumed = _fit(_cfg(compose_cfg, tmp_path / "one", *SMALL, *extra),
                              ckpt_path=str(tmp_path / "one" / "checkpoints" / "last.ckpt"))
    _assert_same_run(straight, resumed, t_straight, t_resumed)


def test_training_order_is_a_function_of_seed_and_epoch(compose_cfg, tmp_path):
    dm = build_datamodule(_cfg(compose_cfg, tmp_path, *SMALL))
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == sorted(second) == list(range(200)) and first != second
    sampler.resume_at(1, 150)  # a run stopped after 3 of the 4 batches of epoch 1
    assert list(sampler) == second[150:]
    sampler.resume_at(0, 200)  # stopped at the end of epoch 0: the next pass is epoch 1
    assert list(sampler) == second
    other = build_datamodule(_cfg(compose_cfg, tmp_path, *SMALL, "seed=1"))
    other.setup("fit")
    assert list(other.train_dataloader().sampler) != first


# -- cadence, divergence, atomic saves ---------------------------------------------------------
def test_checkpoints_every_n_batches_and_every_epoch(compose_cfg, tmp_path, monkeypatch):
    saved: list[tuple[str, int]] = []
    original = RunCheckpoint.save

    def spy(self, trainer, name=None):
        saved.append((name or "last", trainer.global_step))
        return original(self, trainer, name)

    monkeypatch.setattr(RunCheckpoint, "save", spy)
    cfg = _cfg(compose_cfg, tmp_path, *SMALL, "callbacks.checkpoint.every_n_train_steps=3",
               "callbacks.checkpoint.save_top_k=-1")
    _fit(cfg)
    assert saved == [("last", 3), ("epoch=0-step=4.ckpt", 4), ("last", 4), ("last", 6),
                     ("epoch=1-step=8.ckpt", 8), ("last", 8)]
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "last.ckpt"]  # no temporary files


def test_default_cadence_keeps_several_checkpoints_per_full_mnist_epoch(compose_cfg):
    cfg = compose_cfg([])
    per_epoch = 54000 // cfg.data.batch_size  # full MNIST less the validation split
    assert cfg.callbacks.checkpoint.every_n_train_steps and per_epoch // cfg.callbacks.checkpoint.every_n_train_steps >= 3


def test_divergence_saves_its_state_and_says_where_the_last_good_one_is(compose_cfg, tmp_path):
    cfg = _cfg(compose_cfg, tmp_path, *TOY, "logger=none", "model=astdp_unbounded", "learner.alpha=100",
               "callbacks.checkpoint.every_n_train_steps=1")
    with pytest.raises(DivergenceError) as info:
        _fit(cfg)
    diverged = tmp_path / "checkpoints" / "diverged.ckpt"
    assert diverged.exists() and str(diverged) in str(info.value)
    assert "no earlier checkpoint" in str(info.value) or "last.ckpt holds batch" in str(info.value)


def test_atomic_save_keeps_the_previous_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    C.atomic_save({"step": 1}, path)
    good = path.read_bytes()

    def torn_write(obj, f):  # the disk fills up halfway through the write
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C.torch, "save", torn_write)
    with pytest.raises(CheckpointError, match="the previous one is unchanged"):
        C.atomic_save({"step": 2}, path)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]

    def killed(obj, f):  # interrupted during the write
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(C.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        C.atomic_save({"step": 3}, path)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_temporary_files_of_a_killed_save_are_removed_at_the_next_start(compose_cfg, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".last.ckpt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    _fit(_cfg(compose_cfg, tmp_path, *TOY, "logger=none"))
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]


# -- bad input: one line, exit code 2, before the data load, nothing lost ----------------------
@pytest.fixture
def no_data(monkeypatch):
    """Any attempt to load data fails the test: these errors must come first."""

    def refuse(cfg):
        raise AssertionError("data were loaded before the error")

    monkeypatch.setattr(R, "build_datamodule", refuse)


def _error(fn, cfg, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        R.guarded(fn, cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained run (toy data) whose checkpoint the resume and evaluate checks use."""
    from hydra import compose, initialize_config_dir

    out = tmp_path_factory.mktemp("trained")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*TOY, "logger=none", f"output_dir={out}"])
    _fit(cfg)
    return out / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("case,expected", [
    ("missing", "does not exist"),
    ("folder", "is a folder, not a checkpoint file"),
    ("empty", "is empty (0 bytes)"),
    ("truncated", "is not a readable checkpoint (truncated or corrupt"),
    ("garbage", "is not a readable checkpoint"),
    ("depth", "was trained with depth.hidden=[16], this run has depth.hidden=[8, 8]"),
])
def test_bad_ckpt_path_is_one_line_before_the_data(compose_cfg, tmp_path, capsys, no_data, trained, case, expected):
    ckpt = tmp_path / "x.ckpt"
    if case == "folder":
        ckpt = tmp_path
    elif case == "empty":
        ckpt.write_bytes(b"")
    elif case == "truncated":
        ckpt.write_bytes(trained.read_bytes()[:2000])
    elif case == "garbage":
        ckpt.write_bytes(b"not a checkpoint at all")
    elif case == "depth":
        ckpt = trained
    before = trained.read_bytes()
    extra = ["depth.hidden=[8,8]"] if case == "depth" else []
    err = _error(R.train, _cfg(compose_cfg, tmp_path / "run", *TOY, "logger=none", f"ckpt_path={ckpt}", *extra), capsys)
    assert expected in err and str(ckpt) in err
    assert trained.read_bytes() == before


@pytest.mark.parametrize("override,expected", [
    ("+learner.alpah=1", "error: learner.alpah is not a learner setting that anything reads (did you mean learner.alpha?)"),
    ("+model.fake_target.tc=1", "error: model.fake_target.tc is not a fake-target setting (did you mean model.fake_target.t_c?)"),
    ("trainer.max_epochs=0", "error: trainer.max_epochs must be an integer >= 1 or -1 (no limit), got 0"),
    ("learner.alpha=inf", "error: learner.alpha must be a number >= 0, got inf"),
    ("model.momentum=nan", "error: model.momentum must be a number, got nan"),
])
def test_bad_value_is_one_line_before_the_data(compose_cfg, tmp_path, capsys, no_data, override, expected):
    assert _error(R.train, _cfg(compose_cfg, tmp_path, *TOY, "logger=none", override), capsys) == expected


def test_explicit_data_root_must_be_a_folder(compose_cfg, tmp_path, capsys, no_data):
    a_file = tmp_path / "mnist.npz"
    a_file.write_bytes(b"")
    err = _error(R.train, _cfg(compose_cfg, tmp_path / "a", *SMALL, f"data.root={a_file}"), capsys)
    assert err == f"error: data.root={a_file} is a file, not a folder: give the folder that holds MNIST/raw/"
    typo = tmp_path / "dtaa"
    err = _error(R.train, _cfg(compose_cfg, tmp_path / "b", *SMALL, f"data.root={typo}"), capsys)
    assert err.startswith(f"error: data.root={typo} does not exist") and not typo.exists()


def test_unwritable_checkpoint_folder_is_one_line_before_the_data(compose_cfg, tmp_path, capsys, no_data):
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    err = _error(R.train, _cfg(compose_cfg, tmp_path, *TOY, "logger=none"), capsys)
    assert err.startswith(f"error: cannot write checkpoints to {tmp_path / 'checkpoints'}")
    assert (tmp_path / "checkpoints").read_text() == "a file where the folder should be"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind the superuser")
def test_read_only_run_folder_is_one_line(compose_cfg, tmp_path, capsys, no_data):
    tmp_path.chmod(0o555)
    try:
        err = _error(R.train, _cfg(compose_cfg, tmp_path, *TOY, "logger=none"), capsys)
    finally:
        tmp_path.chmod(0o755)
    assert err.startswith("error: cannot write checkpoints to")


@pytest.mark.parametrize("overrides,expected", [
    ([], "error: ckpt_path is required: python evaluate.py ckpt_path=<run>/checkpoints/last.ckpt"),
    (["+depth.hidden=[8,8]"], "error: depth cannot be set when testing a checkpoint"),
    (["+data.batch_size=3"], "error: data.batch_size cannot be changed when testing a checkpoint (it has 8, got 3)"),
    (["test_steps=[5,0]"], "error: test_steps must be null, an integer >= 1 or a list of them"),
    (["split=train"], "error: split must be test or val, got 'train'"),
])
def test_evaluate_refuses_bad_input_in_one_line(compose_cfg, tmp_path, capsys, no_data, trained, overrides, expected):
    ckpt = [] if not overrides else [f"ckpt_path={trained}"]
    err = _error(R.evaluate, _cfg(compose_cfg, tmp_path, *ckpt, *overrides, name="eval"), capsys)
    assert err.startswith(expected), err


def test_evaluate_uses_the_config_inside_the_checkpoint(compose_cfg, tmp_path, trained):
    """A later run that reused the folder (and failed) must not change what the checkpoint is tested as."""
    hydra_dir = trained.parent.parent / ".hydra"
    hydra_dir.mkdir(exist_ok=True)
    (hydra_dir / "config.yaml").write_text("data: {name: mnist}\ndepth: {hidden: [512]}\n")
    try:
        m = R.evaluate(_cfg(compose_cfg, tmp_path, f"ckpt_path={trained}", "test_steps=5", name="eval"))
    finally:
        (hydra_dir / "config.yaml").unlink()
    assert m["data/source"] == "toy_order_stride1" and "test/acc" in m and "test/acc@5" not in m


def test_evaluate_on_the_validation_split(compose_cfg, tmp_path, trained):
    """split=val reports the validation metrics (where test-time constants are chosen), and no test metric."""
    m = R.evaluate(_cfg(compose_cfg, tmp_path, f"ckpt_path={trained}", "split=val", "test_steps=5", name="eval"))
    assert {"val/acc", "val/infer_steps", "val/infer_converged"} <= set(m) and 0 <= m["val/acc"] <= 1
    assert not any(k.startswith(("test/", "infer/")) for k in m) and "val/acc_best" not in m


def test_evaluate_on_the_validation_split_needs_one(compose_cfg, tmp_path, capsys, no_data):
    run = tmp_path / "run"
    _fit(_cfg(compose_cfg, run, *SMALL, "trainer.max_epochs=1", "data.val_size=0"))
    err = _error(R.evaluate, _cfg(compose_cfg, tmp_path / "eval", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                                  "split=val", name="eval"), capsys)
    assert err == "error: split=val needs a validation split, but this run was trained with data.val_size=0: " \
                  "test it with split=test"


# -- the entry points: signals and run folders --------------------------------------------------
def _env(tmp_path: Path) -> dict:
    return dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(tmp_path), ASTDP_DATA_ROOT=str(tmp_path / "no_mnist"),
                OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0", PYTHONWARNINGS="ignore")


def test_sigterm_saves_a_checkpoint_and_the_run_resumes_from_it(tmp_path):
    """What SLURM does before it kills a job: the batch in progress ends, last.ckpt is saved, exit 143."""
    run = tmp_path / "run"
    args = [sys.executable, str(ROOT / "train.py"), "data=toy_order", "depth=toy16", "data.repeats=50", "threads=1",
            "learner.steps=20", "learner.free_steps=5", "learner.test_steps=10", "logger=none", "trainer.max_epochs=40",
            "callbacks.checkpoint.every_n_train_steps=20", f"hydra.run.dir={run}"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: stopped by SIGTERM at batch ") and f"resume with ckpt_path={ckpt}" in last
    stopped_at = int(last.split("at batch ")[1].split()[0])
    assert 0 < stopped_at < 40 * 50
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == stopped_at
    assert json.loads((run / "metrics.json").read_text())["run/status"] == "interrupted"
    assert not list((run / "checkpoints").glob(".*.tmp"))

    resumed = subprocess.run([*args[:-1], f"ckpt_path={ckpt}", f"trainer.max_steps={stopped_at + 3}"], cwd=tmp_path,
                             env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.strip().splitlines()[-1].startswith("summary: test/acc=")
    (metrics,) = (tmp_path / "outputs").glob("train/runs/*/metrics.json")
    assert json.loads(metrics.read_text())["trainer/global_step"] == stopped_at + 3


def test_two_runs_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    monkeypatch.chdir(tmp_path)
    stamp = "outputs/train/runs/2025-01-01_12-00-00"
    first = OmegaConf.create({"dir": f"${{astdp_new_dir:{stamp}}}"})
    second = OmegaConf.create({"dir": f"${{astdp_new_dir:{stamp}}}"})
    a, b = first.dir, second.dir
    assert (a, b) == (stamp, f"{stamp}_1") and Path(a).is_dir() and Path(b).is_dir()
    assert first.dir == a  # one config resolves to one folder, however often it is read
