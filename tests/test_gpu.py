"""CUDA: the engine against the CPU one, the fake-target generator following the network between
devices, checkpoints moved CUDA -> CPU -> CUDA, exact resume on CUDA, and data parallel over two
GPUs with nccl. Deselected by default; ``pytest -m gpu`` (or ``bash scripts/gpu_check.sh``) runs
them, each skipped where its devices are missing."""

from __future__ import annotations

import pytest
import torch

from astdp.factory import build_system
from astdp.lit.build import build_module
from tests.conftest import FALLBACK_MNIST
from tests.test_ddp import PER_PROCESS_BATCH, SAME_DRAWS
from tests.test_reliability import SMALL, StopAt, _assert_same_run, _cfg, _fit, _interrupt
from tests.test_train import read_metrics, run_dirs

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="fewer than two CUDA devices")

MODEL = {"activation": "hardsigmoid", "eps": [0.5, 0.5], "bounds": [0.0, 1.0], "input_clamp": "exact",
         "beta_input": [1.0, 1.0], "beta_output": [0.0, 1.0]}
LEARNER = {"name": "supervised", "alpha": 1e-3, "steps": 12, "free_steps": 4, "schedule": "constant"}


@pytest.fixture(autouse=True)
def _no_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTDP_DATA_ROOT", str(tmp_path / "no_mnist_here"))


def _system(device: str, fake: bool = False, engine: str = "eager"):
    model = {**MODEL, "fake_target": {"enabled": fake}, "engine": engine}
    return build_system(model, LEARNER, {"hidden": [12]}, 20, 5, 16, seed=0, device=device)


def _batch(device: str = "cpu"):
    gen = torch.Generator().manual_seed(3)
    return torch.rand(16, 20, generator=gen).to(device), (torch.arange(16) % 5).to(device)


@needs_cuda
@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_engine_on_cuda_matches_the_cpu_engine(engine):
    nets = []
    for device in ("cpu", "cuda"):
        system = _system(device, engine=engine)
        system.train_batch(*_batch(device))
        nets.append([w.cpu() for w in system.net.weights])
    for w_cpu, w_cuda in zip(*nets):
        assert torch.allclose(w_cpu, w_cuda, atol=1e-5)


@needs_cuda
def test_fake_target_draws_follow_the_network_between_devices():
    """Built on CUDA or moved there, the draws come from a CUDA generator seeded from the run's seed;
    back on the CPU, from the System's own CPU generator; a saved CUDA generator state waits for the
    move to CUDA and is then restored."""
    built = _system("cuda", fake=True)
    moved = _system("cpu", fake=True).to("cuda")
    for system in (built, moved):
        assert system.relaxer.generator.device.type == "cuda"
        assert system.device_rng_state() is not None
    assert torch.equal(built.relaxer.generator.get_state(), moved.relaxer.generator.get_state())
    for system in (built, moved):
        system.train_batch(*_batch("cuda"))
    for w_built, w_moved in zip(built.net.weights, moved.net.weights):
        assert torch.equal(w_built, w_moved)  # same seed, same draws
    assert built.train_s.is_cuda and moved.train_s.is_cuda

    state = built.device_rng_state()
    back = built.to("cpu")
    assert back.relaxer.generator is back.generator and back.device_rng_state() is None
    back.train_batch(*_batch("cpu"))  # trains on the CPU with the CPU generator
    waiting = _system("cpu", fake=True)
    waiting.set_device_rng_state(state)
    assert torch.equal(waiting.device_rng_state(), state)  # kept while on the CPU (saved again in its checkpoints)
    waiting.to("cuda")
    assert torch.equal(waiting.relaxer.generator.get_state(), state)


@needs_cuda
def test_resume_on_cuda_is_bit_for_bit(compose_cfg, tmp_path):
    """Fake targets on: the CUDA generator's state travels in the checkpoint (astdp_rng_device)."""
    small = [*SMALL, "trainer=gpu"]
    straight, t_straight = _fit(_cfg(compose_cfg, tmp_path / "straight", *small))
    cfg = _cfg(compose_cfg, tmp_path / "stopped", *small)
    ckpt = _interrupt(cfg, StopAt(step=5))
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert "astdp_rng_device" in saved and saved["global_step"] == 6
    resumed, t_resumed = _fit(cfg, ckpt_path=str(ckpt))
    _assert_same_run(straight, resumed, t_straight, t_resumed)


@needs_cuda
def test_checkpoint_moves_from_cuda_to_cpu_and_back(compose_cfg, tmp_path):
    one = [*SMALL, "trainer.max_epochs=1"]
    gpu, t_gpu = _fit(_cfg(compose_cfg, tmp_path / "gpu", *one, "trainer=gpu"))
    assert t_gpu.global_step == 4 and gpu.system.net.weights[0].is_cuda
    gpu_ckpt = tmp_path / "gpu" / "checkpoints" / "last.ckpt"
    saved = torch.load(gpu_ckpt, map_location="cpu", weights_only=True)

    # resumed on the CPU: the weights it starts from are the CUDA run's, and it trains on
    cpu_cfg = _cfg(compose_cfg, tmp_path / "cpu", *SMALL, "trainer=cpu")
    module = build_module(cpu_cfg)
    module.load_state_dict(saved["state_dict"])
    for key, value in saved["state_dict"].items():
        assert torch.equal(module.state_dict()[key], value), key
    cpu, t_cpu = _fit(cpu_cfg, ckpt_path=str(gpu_ckpt))
    assert t_cpu.global_step == 8 and not cpu.system.net.weights[0].is_cuda
    assert cpu.system.relaxer.generator is cpu.system.generator
    cpu_ckpt = tmp_path / "cpu" / "checkpoints" / "last.ckpt"
    kept = torch.load(cpu_ckpt, map_location="cpu", weights_only=True)["astdp_rng_device"]
    assert torch.equal(kept, saved["astdp_rng_device"])  # the CUDA draws' state, untouched on the CPU

    # and back on CUDA for a third epoch
    back_cfg = _cfg(compose_cfg, tmp_path / "back", *SMALL, "trainer=gpu", "trainer.max_epochs=3")
    back, t_back = _fit(back_cfg, ckpt_path=str(cpu_ckpt))
    assert t_back.global_step == 12 and back.system.net.weights[0].is_cuda
    assert back.system.relaxer.generator.device.type == "cuda"
    assert all(torch.isfinite(w).all() for w in back.system.net.weights)


@needs_two_gpus
def test_two_gpus_with_nccl_stay_in_step(run_script, tmp_path):
    """trainer=ddp on two GPUs (nccl), both sync modes: identical weights on both processes."""
    proc = run_script("train.py", "-m", *FALLBACK_MNIST, *SAME_DRAWS, "trainer=ddp", "trainer.accelerator=gpu",
                      "trainer.devices=2", f"data.batch_size={PER_PROCESS_BATCH}", "logger=none",
                      "trainer.strategy.sync=step,periodic", "trainer.strategy.sync_every=2")
    jobs = run_dirs(tmp_path, "multiruns")
    assert len(jobs) == 2 and proc.stdout.count("summary: test/acc=") == 2
    for run, sync in zip(jobs, ("step", "periodic")):
        m = read_metrics(run)
        assert m["dist/world_size"] == 2 and m["dist/sync"] == sync and m["dist/weight_spread"] == 0.0
        assert m["trainer/global_step"] == 5 and m["train/samples_seen"] == 200
        assert 0.0 <= m["test/acc"] <= 1.0


@needs_cuda
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("engine", ["eager", "fused"])
def test_low_precision_products_on_cuda_agree_with_fp32(engine, precision):
    """trainer.precision on CUDA: the weights stay fp32 and their change is within 5 % of fp32's."""
    torch.set_float32_matmul_precision("highest")
    changes = []
    for prec in (None, precision):
        system = _system("cuda", engine=engine)
        system.relaxer.set_precision(prec)
        start = [w.clone() for w in system.net.weights]
        for _ in range(3):
            system.train_batch(*_batch("cuda"))
        assert all(w.dtype == torch.float32 for w in system.net.weights)
        changes.append([w - w0 for w, w0 in zip(system.net.weights, start)])
    for d32, dlow in zip(*changes):
        if d32.norm() > 0:
            assert (dlow - d32).norm() / d32.norm() < 0.05
