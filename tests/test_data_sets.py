"""The torchvision image sets through the data module and train.py, on tiny files in the real formats
(tests/tiny_datasets.py): batches, validation split, normalisation, resumable augmentation, a dense
net training a few batches on each, and a missing set as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from astdp.data import vision
from astdp.data.datamodule import AstdpDataModule, has_val_split
from astdp.data.errors import DataError
from astdp.lit import images
from astdp.lit.build import build_datamodule, build_module, build_trainer
from tests import tiny_datasets as tiny
from tests.conftest import ROOT, TINY, last_line, pinned

NAMES = list(vision.SETS)
SMALL = ["data.batch_size=10", "data.val_size=10", "trainer.max_epochs=1", "logger=none", *TINY]


@pytest.fixture
def accept(monkeypatch):
    tiny.accept_tiny_files(monkeypatch)


def _module(name: str, root: Path, **kw) -> AstdpDataModule:
    s = vision.SETS[name]
    c, h, w = s.shape
    dm = AstdpDataModule(name, str(root), batch_size=10, val_size=10, download=False, n_inputs=c * h * w,
                         n_outputs=s.n_classes, image_shape=list(s.shape), **kw)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("name", NAMES)
def test_batches_are_flat_channel_major_with_a_validation_split(tmp_path, accept, name):
    written = tiny.write(name, tmp_path, 40, 10)
    dm = _module(name, tmp_path)
    c, h, w = vision.SETS[name].shape
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 10) and dm.source == name
    assert has_val_split(name, 10) and not has_val_split(name, 0) and has_val_split("toy_order", 0)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (10, c * h * w) and torch.equal(x.view(10, c, h, w), torch.from_numpy(written["test"][0]) / 255)
    assert torch.equal(y, torch.from_numpy(written["test"][1]))
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (10, c * h * w) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert f"source={name}" in dm.describe()


def test_normalisation_from_the_training_files_or_given(tmp_path, accept):
    tiny.write_cifar(tmp_path, n_train=40)
    dm = _module("cifar10", tmp_path, normalize=True)
    pool = torch.cat([dm.train_set.tensors[0], dm.val_set.tensors[0]]).view(40, 3, -1)  # the whole training pool
    assert torch.allclose(pool.mean((0, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(pool.transpose(0, 1).reshape(3, -1).std(1, unbiased=False), torch.ones(3), atol=1e-4)
    given = _module("cifar10", tmp_path, normalize=True, mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])
    raw = _module("cifar10", tmp_path)
    assert torch.allclose(given.test_set.tensors[0].view(10, 3, -1),
                          (raw.test_set.tensors[0].view(10, 3, -1) - 0.5) / torch.tensor([0.25, 0.5, 1.0]).view(1, 3, 1))
    assert given.stats == ([0.5, 0.5, 0.5], [0.25, 0.5, 1.0])


def test_augmented_batches_resume_inside_an_epoch(tmp_path, accept):
    tiny.write_cifar(tmp_path, n_train=50)
    dm = _module("cifar10", tmp_path, augment=True, order_seed=7)
    full = [x for x, _ in dm.train_dataloader()]  # epoch 0, 4 batches
    assert not torch.equal(full[0], dm.train_set.tensors[0][dm.train_sampler.order(0)[:10]])  # augmented
    loader = dm.train_dataloader()
    dm.train_sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader))[0], full[0])  # another epoch: other order and draws
    again = _module("cifar10", tmp_path, augment=True, order_seed=7)
    again.load_state_dict({"epoch": 0, "samples_done": 20, "order_seed": 7})
    rest = [x for x, _ in again.train_dataloader()]
    assert len(rest) == 2 and all(torch.equal(a, b) for a, b in zip(rest, full[2:]))  # the same crops and mirrors
    x, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(x, dm.val_set.tensors[0][:10])  # validation is never augmented


def test_image_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"data.augment is for \['cifar10', 'cifar100', 'svhn'\], not fashion_mnist"):
        AstdpDataModule("fashion_mnist", str(tmp_path), augment=True)
    with pytest.raises(ValueError, match="data.image_shape=\\[3, 32, 32\\] holds 3072 values but data.n_inputs=784"):
        AstdpDataModule("cifar10", str(tmp_path), n_inputs=784, image_shape=[3, 32, 32])
    with pytest.raises(ValueError, match="data.std needs one value per channel \\(3\\)"):
        AstdpDataModule("cifar10", str(tmp_path), image_shape=[3, 32, 32], normalize=True, std=[0.5])
    tiny.write_idx(vision.folder("kmnist", tmp_path))
    dm = AstdpDataModule("kmnist", str(tmp_path), val_size=5, download=False, image_shape=[1, 14, 56])
    with pytest.raises(DataError, match=r"data.image_shape=\[1, 14, 56\] but the kmnist images are \[1, 28, 28\]"):
        dm.setup("fit")


def test_colour_grid_keeps_the_channels():
    x = torch.zeros(2, 3 * 4 * 4)
    x.view(2, 3, 4, 4)[1, 0] = 1.0  # the second image pure red
    for shape in (4, (3, 4, 4)):
        g = images.grid(x, shape, nrow=2)  # (H', W', 3) uint8
        assert g.shape == (2 + 4 + 2, 2 * (4 + 2) + 2, 3)
        assert tuple(g[3, 2 + 6 + 1]) == (255, 0, 0) and tuple(g[3, 3]) == (0, 0, 0)
    assert images.grid(torch.ones(2, 784), 28).shape == (32, 62, 3)  # grey as before


@pytest.mark.parametrize("name", NAMES)
def test_a_dense_net_trains_a_few_batches_on_each(compose_cfg, tmp_path, accept, name):
    tiny.write(name, tmp_path / "data", 40, 10)
    cfg = compose_cfg([f"data={name}", f"data.root={tmp_path / 'data'}", "data.download=false", *SMALL])
    module, dm = build_module(cfg), build_datamodule(cfg)
    trainer = build_trainer(cfg, logger=False, with_callbacks=False, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    assert trainer.global_step == 3 and dm.source == name
    assert 0.0 <= float(trainer.callback_metrics["test/acc"]) <= 1.0


def _train(run_script, tmp_path: Path, name: str, *args: str, check: bool = True,
           small: tuple[str, ...] = tuple(SMALL)):
    """train.py on tiny files, in a subprocess whose torchvision takes them without their md5 sums."""
    tiny.write(name, tmp_path / "data", 40, 10)
    (tmp_path / "tiny_train.py").write_text(
        tiny.ACCEPT + f"sys.argv = ['train.py', *sys.argv[1:]]; runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n")
    return run_script("-m", "tiny_train", f"data={name}", f"data.root={tmp_path / 'data'}", *small, *args, check=check)


def _metrics(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "outputs").glob("*/runs/**/metrics.json")
    return json.loads(path.read_text())


@pytest.mark.slow  # in process, a dense net trains on each set in the default run
@pytest.mark.parametrize("name", NAMES)
def test_train_py_on_a_data_set(run_script, tmp_path, name):
    """The dense default through train.py (one set by default: each run is mostly start-up, 10-20 s here)."""
    option = "data.augment=true" if vision.SETS[name].crop else "data.normalize=true"
    proc = _train(run_script, tmp_path, name, option)
    assert f"data/source={name}" in last_line(proc.stdout)
    m = _metrics(tmp_path)
    assert m["data/source"] == name and m["train/samples_seen"] == 30 and m["trainer/global_step"] == 3


EXPERIMENTS = {p.stem: pinned(p.stem, "data") for p in sorted((ROOT / "conf" / "experiment").glob("*.yaml"))
               if pinned(p.stem, "data") in NAMES}  # experiment -> its data set, MNIST's aside (tests/test_train.py)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_each_experiment_on_another_data_set_runs_a_tiny_version(run_script, tmp_path, experiment):
    """Each experiment file pinned to one of these sets, its learner and budget as pinned, on tiny files with a
    handful of relaxation steps (the backprop baselines: their own). The GPU net conv_cifar (minutes for these
    three batches on one thread) becomes conv_cifar_small, as its files say for a CPU;
    its shapes are checked in tests/test_configs.py."""
    bp = pinned(experiment, "learner").startswith("bp_")
    small = [a for a in SMALL if not (bp and a.startswith("learner."))]
    if pinned(experiment, "depth") == "conv_cifar":
        small.append("depth=conv_cifar_small")
    proc = _train(run_script, tmp_path, EXPERIMENTS[experiment], f"experiment={experiment}", small=tuple(small))
    m = _metrics(tmp_path)
    assert f"data/source={EXPERIMENTS[experiment]}" in last_line(proc.stdout)
    assert m["train/samples_seen"] == 30 and m["trainer/global_step"] == 3 and 0.0 <= m["test/acc"] <= 1.0


@pytest.mark.slow
def test_a_missing_data_set_is_one_line(run_script, tmp_path):
    proc = run_script("train.py", "data=svhn", f"data.root={tmp_path}", "data.download=false", *SMALL, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip() == (f"error: SVHN not found: expected train_32x32.mat, test_32x32.mat in {tmp_path}/ "
                                   "(torchvision's layout) and no download (data.download=false)")
