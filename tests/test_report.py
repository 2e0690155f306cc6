"""The report command on a small synthetic multirun folder, and on a user's own sweep run for real."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from astdp import report, tracking
from tests.conftest import FALLBACK_MNIST, run_entry


def _config(overrides):
    """The config a run with these overrides saves (``.hydra/config.yaml``); a broken compose fails the test."""
    with initialize_config_dir(config_dir=str(report.CONF_DIR), version_base="1.3"):
        return OmegaConf.to_yaml(compose("train", overrides=list(overrides)))


def _config_and_choices(overrides):
    """The config a run saves and the config group options it chose (``.hydra/hydra.yaml``), from one compose."""
    with initialize_config_dir(config_dir=str(report.CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    choices = {"hydra": {"runtime": {"choices": OmegaConf.to_container(cfg.hydra.runtime.choices)}}}
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_yaml(cfg), choices


def _run(folder, experiment, metrics, extra=(), config=None, choices=False):
    """A run folder as train.py leaves it (``experiment=None``: no experiment chosen); ``choices``: with
    ``.hydra/hydra.yaml``, as every real run has."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / ".hydra").mkdir()
    overrides = [*([f"experiment={experiment}"] if experiment else []), *extra]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if choices:
        config, chosen = _config_and_choices(overrides)
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(chosen))
    (folder / ".hydra" / "config.yaml").write_text(config or _config(overrides))


def _fake_multirun(root):
    _run(root / "0", "table2_h512", {"test/acc": 0.95, "infer/steps": 80.0, "infer/converged": 1.0,
                                     "data/source": "mnist", "train/samples_seen": 54000, "time/wall_s": 12.5})
    _run(root / "1", "table2_h512", {"test/acc": 0.97, "infer/steps": 70.0, "train/samples_seen": 54000,
                                     "time/wall_s": 13.5}, ["seed=1", "data.max_epochs=1"])  # the file's own budget
    _run(root / "2", "table1_supervised", {"test/acc": 0.9, "train/samples_seen": 1000, "time/wall_s": 3.0})
    _run(root / "7", "table1_ep", {"test/acc": 0.965, "infer/steps": 13.0, "train/samples_seen": 1000})
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
    ep = "Equilibrium Propagation 784-512-10 (not in the paper)"  # beside aSTDP's rows, with its steps
    assert float(by[("Table 1", ep, "test/acc")]["ours"]) == 96.5 and float(by[("Table 1", ep, "infer/steps")]["ours"]) == 13
    assert ("Table 1", "unsupervised 784-512-10", "test/acc") not in by  # no runs of it: with --paper only
    assert "Toy figures" in md and "Figure 2" not in md
    sweep = {r["group"]: r for r in csv.DictReader((root / "sweep.csv").open())}
    assert float(sweep["experiment=table2_h512 learner.alpha=0.001"]["test/acc"]) == 96.0  # the two seeds
    assert sweep["experiment=table2_h512 learner.alpha=0.01"]["runs"] == "1"  # the probe: a group of its own
    assert sweep["experiment=table1_supervised"]["runs"] == "1"  # the only alpha of its experiment: not named
    pngs = sorted(p.name for p in (root / "report_figures").glob("*.png"))
    assert "table2_depth.png" in pngs and "table34_order.png" in pngs
    assert "curves_table2_h512.png" in pngs and not any(p.startswith("curves_table1") for p in pngs)
    assert report.val_curve(report.load_run(root / "0" / "metrics.json")) == [(256, 50.0), (512, 75.0)]
    assert any(p.endswith("fig3_rivalry.png") for p in pngs)

    assert report.main([str(root), "--paper"]) == 0
    rows = {(r["table"], r["row"], r["metric"]): r for r in csv.DictReader((root / "report.csv").open())}
    assert rows[("Table 1", "unsupervised 784-512-10", "test/acc")]["ours"] == ""
    assert "Figure 2" in (root / "report.md").read_text()


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


# -- a user's own sweep, run for real -----------------------------------------------------------
SWEEP = ["-m", "depth=h512,h512x2", "seed=0,1", *[a for a in FALLBACK_MNIST if not a.startswith("learner.test_steps")],
         "learner.test_steps=60", "logger=wandb"]


@pytest.fixture(scope="module")
def user_sweep(tmp_path_factory):
    """Two depths x two seeds of tiny budgets on the offline digits, logged with W&B (one directory
    for the sweep), then ``python -m astdp.report <sweep> --wandb``: (sweep folder, the report's
    console, the runs' metrics by group)."""
    folder = tmp_path_factory.mktemp("user")
    run_entry(folder, "train.py", *SWEEP)
    (root,) = (folder / "outputs" / "train" / "multiruns").iterdir()
    proc = run_entry(folder, "-m", "astdp.report", str(root), "--wandb")
    metrics: dict[str, list[dict]] = {}
    for job in sorted(p for p in root.iterdir() if (p / "metrics.json").exists()):
        depth = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]["depth"]
        metrics.setdefault(f"depth={depth}", []).append(json.loads((job / "metrics.json").read_text()))
    return root, proc, metrics


def _mean(metrics, key, scale=1.0):
    vals = [m[key] * scale for m in metrics if m.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


@pytest.mark.slow
def test_the_sweep_table_has_one_row_per_depth_over_its_seeds(user_sweep):
    root, proc, metrics = user_sweep
    assert "4 runs in 2 groups ->" in proc.stdout
    rows = list(csv.DictReader((root / "sweep.csv").open()))
    (deep,) = [r for r in rows if r["group"] == "depth=h512x2"]
    assert deep["runs"] == "2" and deep["seeds"] == "0,1" and len(rows) == 2
    assert float(deep["test/acc"]) == pytest.approx(_mean(metrics["depth=h512x2"], "test/acc", 100))
    for r in rows:  # inference steps: the seeds' mean (empty where no test sample converged)
        steps = _mean(metrics[r["group"]], "infer/steps")
        assert (r["infer/steps"] == "") if steps is None else float(r["infer/steps"]) == pytest.approx(steps)
    assert [r["group"] for r in rows] == ["depth=h512", "depth=h512x2"]  # by depth (one data set)
    md = (root / "report.md").read_text()
    assert "| `depth=h512x2` | 2 | 0,1 |" in md and "inference steps" in md
    assert "Table 1" not in md and "Paper vs ours" not in md  # no experiment of the paper among these runs


def _points(ax) -> dict[str, tuple[float, float]]:
    """The groups an axes plots as points with bars: {legend label: (x, y)}."""
    return {c.get_label(): tuple(c.lines[0].get_xydata()[0]) for c in ax.containers}


def test_the_figures_plot_the_users_groups(user_sweep):
    root, _, metrics = user_sweep
    runs = report.find_runs(root)
    report.name_groups(runs)
    sweep = report.sweep_rows(runs)
    assert {"accuracy_vs_steps.png", "table2_depth.png", "curves_train.png"} <= {
        p.name for p in (root / "report_figures").glob("*.png")}

    fig = report.draw_accuracy_vs_steps(sweep)
    with_steps = {g: m for g, m in metrics.items() if _mean(m, "infer/steps") is not None}
    assert set(_points(fig.axes[0])) == set(with_steps) and with_steps
    for group, (x, y) in _points(fig.axes[0]).items():
        assert (x, y) == pytest.approx((_mean(metrics[group], "infer/steps"), _mean(metrics[group], "test/acc", 100)))

    acc, steps = report.draw_depth(sweep).axes
    paper = [ln for ln in acc.lines if ln.get_label() == "paper (Table 2)"]
    assert list(paper[0].get_ydata()) == [96.0, 95.0, 93.0]
    points = _points(acc)
    assert set(points) == {"depth=h512", "depth=h512x2"}
    assert round(points["depth=h512"][0]) == 1 and round(points["depth=h512x2"][0]) == 2
    assert points["depth=h512x2"][1] == pytest.approx(_mean(metrics["depth=h512x2"], "test/acc", 100))
    assert set(_points(steps)) == set(with_steps)

    histories = report.wandb_histories(root)  # the learning curves, from the W&B logs
    assert all(report.val_curve(r, histories)[-1][0] == 200 for r in runs)  # validation after the 200 samples
    costs = [report.logged_curve(report.logged_rows(r, histories), "train/cost") for r in runs]
    assert all([x for x, _ in c] == [50, 100, 150, 200] for c in costs)  # every training batch


def test_one_wandb_directory_holds_the_sweep_and_its_report(user_sweep):
    """Every job logs into <sweep>/wandb (none into its own folder), in the sweep's group; ``report
    --wandb`` adds an offline run there whose sweep table reads back."""
    root, proc, _ = user_sweep
    assert tracking.run_files(root / "wandb") == tracking.run_files(root)  # no job folder holds a W&B run
    logged = [tracking.read_run(f) for f in tracking.run_files(root)]
    jobs = sorted(Path(r["config"]["output_dir"]).name for r in logged if r["job_type"] == "train")
    assert jobs == ["0", "1", "2", "3"] and [r["job_type"] for r in logged].count("report") == 1
    assert {r["group"] for r in logged} == {f"train-{root.name}"}
    (table_file,) = root.glob("wandb/offline-run-*/files/media/table/report/sweep_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"][:3] == ["group", "runs", "seeds"] and "infer/steps" in table["columns"]
    (deep,) = [row for row in table["data"] if row[0] == "depth=h512x2"]
    assert deep[1] == 2
    assert f"wandb sync {root / 'wandb'}" in proc.stdout


def test_report_on_a_folder_without_runs_is_one_line(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: no runs under {tmp_path} (no metrics.json in it or below it)"
    assert report.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"error: no such runs folder: {tmp_path / 'missing'}"


def test_runs_with_other_process_counts_are_other_groups(tmp_path):
    """Two processes train on twice the combined batch: never averaged with one process, nor 2 with 4."""
    metrics = {"test/acc": 0.9, "infer/steps": 50.0}
    _run(tmp_path / "a", "table2_h512", metrics)
    _run(tmp_path / "b", "table2_h512", metrics, ["seed=1"])
    _run(tmp_path / "c", "table2_h512", metrics, ["trainer=ddp", "trainer.devices=2"])
    _run(tmp_path / "d", "table2_h512", metrics, ["trainer=ddp", "trainer.devices=4"])
    _run(tmp_path / "e", "table2_h512", metrics, ["trainer=ddp", "trainer.devices=2", "trainer.num_nodes=2"])
    runs = report.find_runs(tmp_path)
    report.name_groups(runs)
    group = {Path(r.path).name: r.group for r in runs}
    assert group["a"] == group["b"]  # seeds only
    assert len({group[k] for k in "acde"}) == 4, group


def test_runs_on_other_data_sets_or_depths_are_groups_named_and_ordered_by_them(tmp_path):
    """Runs of experiments on other images or nets, or of data=... depth=... overrides, are groups of their
    own whose names give the data set and the depth; the table lists them by data set, then depth, then
    best test accuracy (accuracies on other images are not ranked against each other)."""
    experiments = tmp_path / "experiments"
    sweep_job = ["+experiment@_global_=conv_mnist_ep"]  # a job of experiment=conv_mnist_all
    for name, experiment, acc, extra in [("0", "fashion_mnist_astdp", 0.82, []), ("1", "conv_mnist_astdp", 0.85, []),
                                         ("2", "conv_mnist_astdp", 0.87, ["seed=1"]),
                                         ("3", "conv_mnist_all", 0.90, sweep_job), ("4", "conv_cifar10_astdp", 0.30, [])]:
        _run(experiments / name, experiment, {"test/acc": acc}, extra, choices=True)
    runs = report.find_runs(experiments)
    report.name_groups(runs)
    sweep = report.sweep_rows(runs)
    assert [r["group"] for r in sweep] == [
        "data=cifar10 depth=conv_cifar experiment=conv_cifar10_astdp learner=supervised",
        "data=fashion_mnist depth=h512 experiment=fashion_mnist_astdp learner=supervised",
        "data=mnist depth=conv_mnist experiment=conv_mnist_ep learner=ep",  # the best of its data set and depth first
        "data=mnist depth=conv_mnist experiment=conv_mnist_astdp learner=supervised"]
    assert sweep[-1]["runs"] == 2 and sweep[-1]["test/acc"] == pytest.approx(86.0)  # two seeds, one group

    overrides = tmp_path / "overrides"  # python train.py -m data=... depth=...: no experiment
    for name, extra, acc in [("0", ["data=mnist", "depth=h512"], 0.9), ("1", ["data=cifar10", "depth=conv_cifar"], 0.4),
                             ("2", ["data=mnist", "depth=conv_mnist"], 0.8)]:
        _run(overrides / name, None, {"test/acc": acc}, extra, choices=True)
    runs = report.find_runs(overrides)
    report.name_groups(runs)
    assert [r["group"] for r in report.sweep_rows(runs)] == [
        "data=cifar10 depth=conv_cifar", "data=mnist depth=conv_mnist", "data=mnist depth=h512"]
