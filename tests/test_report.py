"""The report command on a small synthetic multirun folder."""

import csv
import json
import subprocess
import sys

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from astdp import report


def _config(overrides):
    """The config a run with these overrides saves (``.hydra/config.yaml``), or a stub where the
    overrides only compose inside a sweep."""
    try:
        with initialize_config_dir(config_dir=str(report.CONF_DIR), version_base="1.3"):
            return OmegaConf.to_yaml(compose("train", overrides=list(overrides)))
    except Exception:
        return yaml.safe_dump({"task_name": "train", "seed": 0})


def _run(folder, experiment, metrics, extra=(), config=None):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / ".hydra").mkdir()
    overrides = [f"experiment={experiment}", *extra]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text(config or _config(overrides))


def _fake_multirun(root):
    _run(root / "0", "table2_h512", {"test/acc": 0.95, "infer/steps": 80.0, "infer/converged": 1.0,
                                     "data/source": "mnist", "train/samples_seen": 54000, "time/wall_s": 12.5})
    _run(root / "1", "table2_h512", {"test/acc": 0.97, "infer/steps": 70.0, "train/samples_seen": 54000,
                                     "time/wall_s": 13.5}, ["seed=1", "data.max_epochs=1"])  # the file's own budget
    _run(root / "2", "table1_supervised", {"test/acc": 0.9, "train/samples_seen": 1000, "time/wall_s": 3.0})
    _run(root / "3", "table3_order81", {"order/acc_81_160": 1.0, "order/acc_83_160": 0.75,
                                        "order/acc_81_80": 1.0, "order/acc_83_80": 0.5, "time/wall_s": 9.0})
    _run(root / "4", "fig3_rivalry", {"rivalry/switches_fake_on": 27, "rivalry/switches_fake_off": 0})
    # a sweep-file job: the row comes from the appended experiment
    _run(root / "5", "table2_all", {"test/acc": 0.9, "infer/steps": 100.0}, ["+experiment@_global_=table2_h512x2"])
    # a probe on other settings is not averaged into the row (it uses the experiment's own settings)
    _run(root / "6", "table2_h512", {"test/acc": 0.5, "infer/steps": 300.0}, ["learner.alpha=1e-2", "threads=1"])
    # a run logged with logger=csv: its validation curve against the samples seen
    log = root / "0" / "csv" / "version_0"
    log.mkdir(parents=True)
    (log / "metrics.csv").write_text("epoch,step,train/samples_seen,val/acc\n0,0,128,\n0,1,256,\n0,1,,0.5\n"
                                     "1,2,384,\n1,3,512,\n1,3,,0.75\n1,4,x,oops\n")  # a damaged last row is skipped
    # a PNG written by a run is collected
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(root / "4" / "fig3_rivalry.png")
    plt.close(fig)


def test_report_command_writes_markdown_csv_and_pngs(tmp_path):
    root = tmp_path / "multirun"
    _fake_multirun(root)
    proc = subprocess.run([sys.executable, "-m", "astdp.report", str(root)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    md = (root / "report.md").read_text()
    assert "Table 1" in md and "Table 2" in md and "Table 3" in md and "Table 4" in md
    assert "python train.py experiment=table2_h512 seed=1" in md  # each run's command, with its overrides
    rows = list(csv.DictReader((root / "report.csv").open()))
    by = {(r["table"], r["row"], r["metric"]): r for r in rows}
    acc = by[("Table 2", "784-512-10", "test/acc")]
    assert float(acc["paper"]) == 96.0 and float(acc["ours"]) == 96.0 and acc["runs"] == "2"
    assert acc["other_settings"] == "1"
    assert report.load_run(root / "1" / "metrics.json").setting == ()  # data.max_epochs=1 is the experiment's own
    assert report.load_run(root / "6" / "metrics.json").setting == ("learner.alpha=0.01",)
    assert float(acc["ours_min"]) == 95.0 and float(acc["ours_max"]) == 97.0  # the two seeds' range
    assert "| 96.0 (95.0-97.0) | 2 |" in md
    assert float(by[("Table 2", "784-512-10", "infer/steps")]["ours"]) == 75.0
    assert float(by[("Table 2", "784-512-512-10", "test/acc")]["ours"]) == 90.0
    assert float(by[("Table 3", "Net81, order 83, 160 iterations", "order/acc_83_160")]["ours"]) == 75.0
    assert by[("Table 1", "unsupervised 784-512-10", "test/acc")]["ours"] == ""
    pngs = sorted(p.name for p in (root / "report_figures").glob("*.png"))
    assert "table2_depth.png" in pngs and "table34_order.png" in pngs
    assert "curves_table2_h512.png" in pngs and not any(p.startswith("curves_table1") for p in pngs)
    assert report.val_curve(report.load_run(root / "0" / "metrics.json")) == [(256, 50.0), (512, 75.0)]
    assert any(p.endswith("fig3_rivalry.png") for p in pngs)


def test_paper_values_are_defined_once():
    exps = {e for _, e, _, _, _, _ in report.PAPER_ROWS}
    assert {"table1_supervised", "table2_h500x3_nofake"} <= exps
    assert report.PAPER_ORDER[80][("83", "81")] == 87.0


def test_a_row_without_runs_on_its_own_settings_reports_the_most_run_setting(tmp_path):
    runs = []
    for i, setting in enumerate([("learner.alpha=1",), ("learner.alpha=1",), ("depth=h512x2",)]):
        (tmp_path / str(i)).mkdir()
        runs.append(report.Run(tmp_path / str(i), "table2_h512", {"test/acc": 0.1 * i}, "cmd", setting))
    chosen, others = report.pick_setting(runs)
    assert [r.path.name for r in chosen] == ["0", "1"] and others == 1
    assert report.pick_setting([])[0] == []


def test_a_run_from_before_its_experiment_file_changed_is_another_setting(tmp_path):
    """Settings come from the saved config against the experiment file as it is now: a run whose
    file has since changed differs although it had no override; keys only one side has (added or
    removed since) and keys both sides take from another key are left out, unless the experiment
    file sets the key; without a saved config the overrides tell."""
    cfg = OmegaConf.create(_config(["experiment=table2_h512"]))
    cfg.learner.alpha = 0.5  # the file's value when the run was made
    cfg.trainer.max_epochs = "${data.max_epochs}"
    cfg.data.max_epochs = 7
    del cfg.learner["layer_alpha"]  # a key added to the config since
    cfg.learner.retired = 3  # a key removed from it since
    del cfg.learner["test_steps"]  # a key the experiment file sets, chosen after the run
    _run(tmp_path / "old", "table2_h512", {"test/acc": 0.9}, config=OmegaConf.to_yaml(cfg))
    assert report.load_run(tmp_path / "old" / "metrics.json").setting == (
        "data.max_epochs=7", "learner.alpha=0.5", "learner.test_steps=(unset)")
    _run(tmp_path / "bare", "table2_h512", {"test/acc": 0.9}, ["learner.alpha=1", "seed=3"],
         config=yaml.safe_dump({"task_name": "train"}))
    assert report.load_run(tmp_path / "bare" / "metrics.json").setting == ("learner.alpha=1",)
