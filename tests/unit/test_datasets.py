"""The torchvision image sets without Lightning: tiny files in each real format load with the right
shapes, channel order, labels and counts; missing or bad files are one line; normalisation and
augmentation do what they say."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from astdp.data import DataError, ensure_files, files, mnist, transforms, vision
from tests import tiny_datasets as tiny

NAMES = list(vision.SETS)


@pytest.fixture
def accept(monkeypatch):
    tiny.accept_tiny_files(monkeypatch)


def test_layout_is_torchvisions():
    import torchvision.datasets as tv

    assert vision.SETS["cifar10"].folder == tv.CIFAR10.base_folder
    assert vision.SETS["cifar10"].files == (*(f for f, _ in tv.CIFAR10.train_list + tv.CIFAR10.test_list),
                                            tv.CIFAR10.meta["filename"])
    assert vision.SETS["cifar100"].folder == tv.CIFAR100.base_folder
    assert vision.SETS["cifar100"].files == (*(f for f, _ in tv.CIFAR100.train_list + tv.CIFAR100.test_list),
                                             tv.CIFAR100.meta["filename"])
    assert vision.SETS["svhn"].files == tuple(tv.SVHN.split_list[s][1] for s in ("train", "test"))
    for name, cls in (("fashion_mnist", tv.FashionMNIST), ("kmnist", tv.KMNIST)):
        assert vision.SETS[name].folder == f"{cls.__name__}/raw"
        assert set(vision.SETS[name].files) == {url.rsplit("/", 1)[-1].removesuffix(".gz") for url, _ in cls.resources}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_train,n_test", [(20, 10), (13, 7)])
def test_each_set_loads_channel_major_with_the_files_counts(tmp_path, accept, name, n_train, n_test):
    written = tiny.write(name, tmp_path, n_train, n_test)
    splits = vision.load(name, tmp_path, download=False)
    c, h, w = vision.SETS[name].shape
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = splits[split]
        images, labels = written[split]  # (n, C, H, W) uint8, (n,)
        assert x.shape == (n, c * h * w) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(x.view(n, c, h, w), torch.from_numpy(images).float() / 255)  # channel-major, exact
        assert torch.equal(y, torch.from_numpy(labels))
        assert 0 <= int(y.min()) and int(y.max()) < vision.SETS[name].n_classes
    if c == 3:  # one pixel by hand: channel 2, row 5, column 7 of the first test image
        assert splits["test"][0][0, 2 * h * w + 5 * w + 7] == float(written["test"][0][0, 2, 5, 7]) / 255


def test_svhn_digit_zero_is_label_zero(tmp_path, accept):
    from scipy.io import loadmat

    written = tiny.write_svhn(tmp_path, 20, 10)
    on_disk = loadmat(tmp_path / "train_32x32.mat")["y"].reshape(-1)
    assert 10 in on_disk and 0 not in on_disk  # the files' convention
    _, y = vision.load("svhn", tmp_path, download=False)["train"]
    assert torch.equal(y, torch.from_numpy(written["train"][1])) and set(y.tolist()) == set(range(10))


@pytest.mark.parametrize("name", NAMES)
def test_missing_set_is_one_line_naming_the_folder_and_files(tmp_path, name):
    with pytest.raises(DataError) as err:
        vision.load(name, tmp_path, download=False)
    msg = str(err.value)
    folder = vision.folder(name, tmp_path)
    assert "\n" not in msg and f"{folder}/" in msg and "data.download=false" in msg
    assert all(f in msg for f in vision.SETS[name].files)
    with pytest.raises(DataError, match="not found"):  # the check a run makes before building its model
        ensure_files({"name": name, "root": str(tmp_path), "download": False})


def test_a_partial_set_says_which_files_are_missing(tmp_path):
    tiny.write_cifar(tmp_path)
    (vision.folder("cifar10", tmp_path) / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"missing data_batch_3\)"):
        vision.load("cifar10", tmp_path, download=False)


def test_a_users_changed_cifar_and_svhn_files_fail_torchvisions_md5_check(tmp_path):
    tiny.write_cifar(tmp_path)
    with pytest.raises(DataError, match="CIFAR-10 files in .* failed torchvision's check"):
        vision.load("cifar10", tmp_path, download=False)
    tiny.write_svhn(tmp_path)
    with pytest.raises(DataError, match="SVHN files in .* failed torchvision's check"):
        vision.load("svhn", tmp_path, download=False)


def test_idx_sets_check_their_headers(tmp_path):
    raw = vision.folder("kmnist", tmp_path)
    tiny.write_idx(raw, 20, 10)
    assert files.check_idx(raw) == {"train": 20, "test": 10}
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1])  # one byte short
    with pytest.raises(DataError, match="KMNIST file .*t10k-labels-idx1-ubyte"):
        vision.load("kmnist", tmp_path, download=False)


def test_labels_outside_the_range_are_refused(tmp_path, accept):
    tiny.write_cifar(tmp_path)
    path = vision.folder("cifar10", tmp_path) / "test_batch"
    batch = pickle.loads(path.read_bytes())
    batch["labels"][0] = 12
    path.write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match="labels .* run from 0 to 12, expected 0 to 9"):
        vision.load("cifar10", tmp_path, download=False)


def test_ensure_files_passes_present_sets_and_mnist_with_its_fallback(tmp_path, accept):
    tiny.write_svhn(tmp_path)
    ensure_files({"name": "svhn", "root": str(tmp_path), "download": False})
    ensure_files({"name": "mnist", "root": str(tmp_path), "download": False})  # the fallback stands in
    ensure_files({"name": "toy_order"})
    with pytest.raises(DataError, match=r"MNIST not found: .*MNIST/raw/.*allow_fallback=false"):
        ensure_files({"name": "mnist", "root": str(tmp_path), "download": False, "allow_fallback": False})
    assert mnist.FILES == vision.SETS["fashion_mnist"].files


def test_channel_stats_and_normalisation():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(50, 3 * 4 * 5, generator=gen) * torch.tensor([1.0, 0.5, 0.2]).repeat_interleave(20)
    mean, std = transforms.channel_stats(x, 3, chunk=7)
    images = x.view(50, 3, 20).double()
    assert torch.allclose(mean.double(), images.mean((0, 2)), atol=1e-6)
    assert torch.allclose(std.double(), images.transpose(0, 1).reshape(3, -1).std(1, unbiased=False), atol=1e-6)
    z = transforms.normalize_(x.clone(), mean, std).view(50, 3, 20)
    assert torch.allclose(z.mean((0, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.transpose(0, 1).reshape(3, -1).std(1, unbiased=False), torch.ones(3), atol=1e-4)


def _set(flip: bool = True, n: int = 16, seed: int = 3) -> transforms.AugmentedSet:
    x = torch.rand(n, 2 * 6 * 6, generator=torch.Generator().manual_seed(1))
    return transforms.AugmentedSet(x, torch.arange(n), (2, 6, 6), seed, pad=2, flip=flip,
                                   fill=torch.tensor([-1.0, -2.0]))


def test_augmentation_is_a_padded_crop_and_mirror_drawn_per_seed_and_epoch():
    ds = _set()
    offsets, mirror = ds.draws(0)
    assert offsets.shape == (16, 2) and 0 <= int(offsets.min()) and int(offsets.max()) <= 4 and mirror.any()
    for i in range(16):
        out, label = ds[(0, i)]
        canvas = torch.tensor([-1.0, -2.0]).view(2, 1, 1).repeat(1, 10, 10)
        canvas[:, 2:8, 2:8] = ds.tensors[0][i].view(2, 6, 6)
        dy, dx = offsets[i].tolist()
        want = canvas[:, dy : dy + 6, dx : dx + 6]
        want = want.flip(-1) if mirror[i] else want
        assert torch.equal(out, want.reshape(-1)) and int(label) == i
    assert torch.equal(ds[3][0], ds.tensors[0][3])  # a plain index: the stored image
    again = _set()
    assert all(torch.equal(again[(0, i)][0], ds[(0, i)][0]) for i in (5, 0, 9))  # any order, a fresh copy
    assert not torch.equal(ds.draws(1)[0], ds.draws(0)[0])  # another epoch, other draws
    assert not torch.equal(_set(seed=4).draws(0)[0], ds.draws(0)[0])  # another seed, other draws
    assert not _set(flip=False).draws(0)[1].any()  # digits are never mirrored
