"""Runs folder -> the paper's tables side by side with ours (Markdown, CSV) and figures (PNG).

    python -m astdp.report outputs/multirun/<date>/<time>    (or any folder holding runs)

Every folder below the given one that holds a ``metrics.json`` (a flat dict written by each run)
is a run; its ``.hydra/overrides.yaml`` gives the command and the experiment name (the
``+experiment@_global_=...`` override a sweep file appends, else ``experiment=...``, else ``.hydra/hydra.yaml``'s choices, else the config's
``task_name``). A run's setting is how its saved config (``.hydra/config.yaml``: data, model,
learner, depth, trainer, resolved) differs from its experiment file as it is in this checkout
(without a saved config: its overrides other than seed, data root, logger, threads, hydra and
device). Runs of one experiment on one setting (seeds) are averaged; where an experiment also ran
on other settings (a probe, a search, a run from before its file changed), its row uses the runs
on the experiment's own settings, else the setting with the most runs, and says how many other
settings it left out. Writes, in the given folder:
``report.md``, ``report.csv``, ``report_figures/*.png`` (our plots, a learning-curve figure per
experiment with runs logged by ``logger=csv``, and every PNG found in the runs). With an active
W&B run the same tables go up as ``wandb.Table`` s and the PNGs as images.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import shutil
import statistics
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# -- the paper's numbers, defined once ------------------------------------------------------------
# (table, experiment, row label, metric key, paper value (None: the paper gives none), unit)
PAPER_ROWS: list[tuple[str, str, str, str, float | None, str]] = [
    ("Table 1", "table1_unsupervised", "unsupervised 784-512-10", "test/acc", 91.0, "%"),
    ("Table 1", "table1_supervised", "supervised 784-512-10", "test/acc", 92.0, "%"),
    ("Table 1", "table1_self_supervised", "self-supervised 784-512-10", "test/acc", 92.0, "%"),
    ("Table 1", "table1_self_supervised", "self-supervised: inpainted square, squared pixel error", "test/inpaint_mse",
     None, ""),
    ("Table 1", "table1_self_supervised", "the same square left black (reference)", "test/inpaint_mse_blank", None, ""),
    ("Table 1", "table1_bp_mse", "backprop, MSE", "test/acc", 93.0, "%"),
    ("Table 1", "table1_bp_ce", "backprop, cross-entropy", "test/acc", 97.0, "%"),
    ("Table 2", "table2_h512", "784-512-10", "test/acc", 96.0, "%"),
    ("Table 2", "table2_h512", "784-512-10", "infer/steps", 76.0, "steps"),
    ("Table 2", "table2_h512x2", "784-512-512-10", "test/acc", 95.0, "%"),
    ("Table 2", "table2_h512x2", "784-512-512-10", "infer/steps", 95.0, "steps"),
    ("Table 2", "table2_h512x3", "784-512-512-512-10", "test/acc", 93.0, "%"),
    ("Table 2", "table2_h512x3", "784-512-512-512-10", "infer/steps", 121.0, "steps"),
    ("Table 2", "table2_h500x3_nofake", "784-500-500-500-10, no fake target", "test/acc", 97.0, "%"),
    ("Table 2", "table2_h500x3_nofake", "784-500-500-500-10, no fake target", "infer/steps", 500.0, "steps"),
    ("Figure 2", "fig2_generation", "generated digits a classifier reads as the clamped label (target >= 80 %)",
     "generation/classified_as_label", None, "%"),
    ("Figure 2", "fig2_generation", "variety among one label's samples (pixel standard deviation)", "generation/spread",
     None, ""),
]
# Tables 3 (160 test iterations) and 4 (80): accuracy of Net<train> on order <test>, in %
PAPER_ORDER: dict[int, dict[tuple[str, str], float]] = {
    160: {("81", "81"): 100.0, ("81", "83"): 98.0, ("83", "81"): 99.0, ("83", "83"): 100.0},
    80: {("81", "81"): 100.0, ("81", "83"): 91.0, ("83", "81"): 87.0, ("83", "83"): 100.0},
}
ORDER_TABLE = {160: "Table 3", 80: "Table 4"}
DEPTH_OF = {"table2_h512": 1, "table2_h512x2": 2, "table2_h512x3": 3}
# toy figures: (experiment, metric key, what the paper shows)
TOY_ROWS: list[tuple[str, str, str]] = [
    ("fig3_rivalry", "rivalry/switches_fake_on", "visible states alternate (Figure 3): > 0"),
    ("fig3_rivalry", "rivalry/switches_fake_off", "no fake targets: no oscillation (0)"),
    ("fig4_adaptation", "adaptation/overshoot_on_momentum_fake", "overshoot then settle (Figure 4): > 0"),
    ("fig4_adaptation", "adaptation/overshoot_off_momentum_fake", "undershoot then settle: > 0"),
    ("fig4_adaptation", "adaptation/overshoot_on_plain", "no momentum, no fake target"),
    ("fig6_stdp", "stdp/classic_shape_frac", "LTP for pre->post, LTD for post->pre (Figure 6): 1"),
    ("fig6_stdp", "stdp/asymmetry_mean", "up/down asymmetric, more so as beta_l/beta_s grows"),
    ("fig6_stdp", "stdp/w10_b0.4-0.5/asymmetry", "asymmetry, window 10, beta 0.4/0.5"),
    ("fig6_stdp", "stdp/w10_b0.4-0.7/asymmetry", "asymmetry, window 10, beta 0.4/0.7 (larger)"),
]
COLUMNS = ["table", "row", "metric", "paper", "ours", "ours_min", "ours_max", "runs", "other_settings", "samples_seen",
           "wall_s", "command"]


CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# overrides that do not change what a run computes: runs differing only in these are averaged
INCIDENTAL = ("seed", "data.root", "logger", "threads", "trainer.accelerator", "trainer.devices", "ckpt_path")
# the config sections that decide what a run computes, and their keys that do not
COMPARED = ("data", "model", "learner", "depth", "trainer")
INCIDENTAL_KEYS = ("data.root", "data.num_workers", "data.download", "data.allow_fallback", "trainer.accelerator",
                   "trainer.devices", "trainer.default_root_dir", "trainer.enable_progress_bar",
                   "trainer.log_every_n_steps")


@dataclass
class Run:
    path: Path
    experiment: str
    metrics: dict[str, Any]
    command: str
    setting: tuple[str, ...] = ()  # how the run differs from its experiment file, as ``key=value`` s


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.exists() else None
    except yaml.YAMLError:
        return None


def load_run(metrics_path: Path) -> Run:
    folder = metrics_path.parent
    metrics = json.loads(metrics_path.read_text())
    hydra_dir = folder / ".hydra"
    overrides = _load_yaml(hydra_dir / "overrides.yaml") or []
    keys = {o.split("=", 1)[0].lstrip("+"): o.split("=", 1)[1] for o in overrides if "=" in o}
    # a sweep file's job appends its row as +experiment@_global_=<row>; that names the run
    experiment = keys.get("experiment@_global_") or keys.get("experiment")
    if experiment is None:
        choices = ((_load_yaml(hydra_dir / "hydra.yaml") or {}).get("hydra") or {}).get("runtime", {}).get("choices", {})
        experiment = choices.get("experiment")
    if experiment in (None, "null"):
        cfg = _load_yaml(hydra_dir / "config.yaml") or {}
        experiment = cfg.get("experiment_name") or cfg.get("task_name") or folder.name
    if keys.get("experiment@_global_"):
        # rerun one sweep job alone: select its row directly, keep the job's other overrides
        rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+") not in ("experiment", "experiment@_global_")]
        overrides = [f"experiment={experiment}", *rest]
    command = " ".join(["python train.py", *overrides]).strip()
    setting = _resolved_setting(hydra_dir / "config.yaml", str(experiment))
    if setting is None:  # no saved config, or no experiment file to compare it with: the overrides tell
        setting = tuple(sorted(o.lstrip("+") for o in overrides if _changes_run(o.split("=", 1)[0].lstrip("+"))))
    return Run(folder, str(experiment), metrics, command, setting)


def _changes_run(key: str) -> bool:
    return key not in ("experiment", "experiment@_global_", *INCIDENTAL) and not key.startswith("hydra.")


def _flat(cfg: Any) -> tuple[dict[str, Any], frozenset[str]]:
    """The COMPARED keys of a config (an OmegaConf ``DictConfig``) as {dotted key: plain value},
    interpolations resolved, and the keys that are interpolations; a key that cannot be resolved
    outside its run is left out."""
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    out: dict[str, Any] = {}
    links: set[str] = set()

    def walk(node: DictConfig, prefix: str) -> None:
        for key in node.keys():
            full = f"{prefix}{key}"
            if full in INCIDENTAL_KEYS:
                continue
            try:
                value = node[key]
                if isinstance(value, ListConfig):
                    value = OmegaConf.to_container(value, resolve=True)
            except OmegaConfBaseException:
                continue
            if isinstance(value, DictConfig):
                walk(value, full + ".")
            else:
                out[full] = value
                if OmegaConf.is_interpolation(node, key):
                    links.add(full)

    for section in COMPARED:
        if isinstance(cfg.get(section), DictConfig):
            walk(cfg[section], section + ".")
    return out, frozenset(links)


@functools.lru_cache(maxsize=None)
def _experiment_config(experiment: str) -> tuple[dict[str, Any], frozenset[str]] | None:
    """``experiment=<name>`` composed from this checkout's conf/ (:func:`_flat`), or None where it
    cannot be (no such file, a file that only composes inside a sweep, Hydra already running)."""
    if not (CONF_DIR / "experiment" / f"{experiment}.yaml").is_file():
        return None
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return None
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return _flat(compose("train", overrides=[f"experiment={experiment}"]))
    except Exception:  # any composition error: the caller falls back to the run's overrides
        return None


def _show(value: Any) -> str:
    """A value as an override would write it."""
    if isinstance(value, list):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _resolved_setting(config_path: Path, experiment: str) -> tuple[str, ...] | None:
    """How a run's saved config differs from its experiment file as it is now, as sorted ``key=value``
    s over the COMPARED sections (so an override that only repeats the file's value, or an experiment
    file changed after the run, is seen as it is). Keys only one side has (added or removed since)
    are left out, unless the experiment file sets one the run lacks (``key=(unset)``), and so are
    keys that both sides take from another key (``trainer.max_epochs:
    ${data.max_epochs}``: that key tells). None without a saved config with those sections or a
    composable experiment."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not config_path.is_file():
        return None
    try:
        run, run_links = _flat(OmegaConf.load(config_path))
    except (OmegaConfBaseException, yaml.YAMLError):
        return None
    composed = _experiment_config(experiment) if run else None
    if composed is None:
        return None
    exp, exp_links = composed
    differ = [f"{k}={_show(v)}" for k, v in run.items()
              if k in exp and exp[k] != v and not (k in run_links and k in exp_links)]
    # a key the experiment file sets but the run's config lacks: the file chose it after the run
    unset = [f"{k}=(unset)" for k in exp if k not in run and _file_sets(experiment, k)]
    return tuple(sorted(differ + unset))


@functools.lru_cache(maxsize=None)
def _file_sets(experiment: str, key: str) -> bool:
    """The experiment file itself (``conf/experiment/<name>.yaml``, global package) sets ``key``."""
    node = _load_yaml(CONF_DIR / "experiment" / f"{experiment}.yaml")
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def pick_setting(group: list[Run]) -> tuple[list[Run], int]:
    """The runs of one experiment to report: those on its own settings (only incidental overrides),
    else the setting with the most runs (the latest on a tie); and how many other settings exist."""
    by_setting: dict[tuple[str, ...], list[Run]] = {}
    for r in group:
        by_setting.setdefault(r.setting, []).append(r)
    if not by_setting:
        return [], 0
    best = () if () in by_setting else max(by_setting, key=lambda k: (len(by_setting[k]),
                                                                         max(r.path.stat().st_mtime for r in by_setting[k])))
    return by_setting[best], len(by_setting) - 1


def find_runs(root: Path) -> list[Run]:
    return [load_run(p) for p in sorted(root.rglob("metrics.json")) if "report_figures" not in p.parts]


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(float(v)):
        return float(v)
    return None


def _values(runs: list[Run], key: str, pct: bool = False) -> list[float]:
    vals = [x for x in (_num(r.metrics.get(key)) for r in runs) if x is not None]
    return [100 * v if v <= 1.0 else v for v in vals] if pct else vals


def _mean(vals: list[float]) -> float | None:
    return statistics.fmean(vals) if vals else None


def _first(runs: list[Run], *keys: str) -> float | None:
    for key in keys:
        vals = _values(runs, key)
        if vals:
            return _mean(vals)
    return None


def build_rows(runs: list[Run]) -> list[dict[str, Any]]:
    by_exp: dict[str, list[Run]] = {}
    for r in runs:
        by_exp.setdefault(r.experiment, []).append(r)

    def row(table, label, metric, paper, group, key, pct):
        group, others = pick_setting(group)
        vals = _values(group, key, pct)
        return {"table": table, "row": label, "metric": metric, "paper": paper, "ours": _mean(vals),
                "ours_min": min(vals) if vals else None, "ours_max": max(vals) if vals else None, "runs": len(vals),
                "other_settings": others,
                "samples_seen": _first(group, "train/samples_seen", "order/samples_seen", "rivalry/samples_seen"),
                "wall_s": _first(group, "time/wall_s"),
                "command": group[0].command if group else ""}

    rows = []
    for table, exp, label, key, paper, unit in PAPER_ROWS:
        rows.append(row(table, label, key, paper, by_exp.get(exp, []), key, unit == "%"))
    for steps, cells in PAPER_ORDER.items():
        for (net, order), paper in cells.items():
            key_full = f"order/acc_net{net}_on{order}_{steps}"
            group = [r for r in runs if key_full in r.metrics]
            key = key_full
            if not group:
                group, key = by_exp.get(f"table3_order{net}", []), f"order/acc_{order}_{steps}"
            rows.append(row(ORDER_TABLE[steps], f"Net{net}, order {order}, {steps} iterations", key, paper,
                            group, key, True))
    for exp, key, claim in TOY_ROWS:
        rows.append(row("Toy figures", claim, key, None, by_exp.get(exp, []), key, False))
    return rows


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"
    return str(v)


def to_markdown(rows: list[dict[str, Any]], runs: list[Run], root: Path, figures: list[Path]) -> str:
    out = ["# Paper vs ours\n", f"Runs found under `{root}`: {len(runs)}. Accuracies in %, steps from a data change "
           "until `max|ds| < tol`. Runs of one experiment on the same settings (seeds) are averaged (`runs`; "
           "their lowest and highest value in brackets); "
           "where it also ran with other overrides, the row keeps its own settings (else the most-run one) "
           "and `other settings` counts the rest (listed under Runs).\n"]
    for table in dict.fromkeys(r["table"] for r in rows):
        out.append(f"\n## {table}\n")
        out.append("| row | metric | paper | ours | runs | other settings | samples seen | wall time (s) | command |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if r["table"] != table:
                continue
            digits = 3 if table == "Toy figures" or r["metric"].endswith(("mse", "mse_blank", "spread")) else 1
            ours = _fmt(r["ours"], digits)
            if r["runs"] > 1:
                ours += f" ({_fmt(r['ours_min'], digits)}-{_fmt(r['ours_max'], digits)})"
            out.append(f"| {r['row']} | `{r['metric']}` | {_fmt(r['paper'])} | {ours} | {r['runs']} "
                       f"| {r['other_settings']} | {_fmt(r['samples_seen'], 0)} | {_fmt(r['wall_s'], 1)} | `{r['command']}` |")
    out.append("\n## Runs (best final validation accuracy first: a search's trials)\n")
    out.append("| experiment | val acc | test acc | status | wall time (s) | folder | command |")
    out.append("|---|---|---|---|---|---|---|")
    pct = lambda v: None if _num(v) is None else 100 * _num(v)  # noqa: E731
    for r in sorted(runs, key=lambda r: -(_num(r.metrics.get("val/acc")) or -1.0)):
        m = r.metrics
        out.append(f"| {r.experiment} | {_fmt(pct(m.get('val/acc')))} | {_fmt(pct(m.get('test/acc')))} "
                   f"| {m.get('run/status', 'done')} | {_fmt(_num(m.get('time/wall_s')), 0)} "
                   f"| `{r.path.relative_to(root) if r.path != root else '.'}` | `{r.command}` |")
    if figures:
        out.append("\n## Figure files\n")
        for f in figures:
            out.append(f"![{f.stem}]({f.relative_to(root)})")
    return "\n".join(out) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})


def plot_summary(rows: list[dict[str, Any]], runs: list[Run], fig_dir: Path) -> list[Path]:
    """Accuracy and inference steps against depth (Table 2), and accuracy per order (Tables 3-4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    by_exp: dict[str, list[Run]] = {}
    for r in runs:
        by_exp.setdefault(r.experiment, []).append(r)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, unit in ((axes[0], "test/acc", "%"), (axes[1], "infer/steps", "steps")):
        paper = [(DEPTH_OF[e], v) for _, e, _, k, v, _ in PAPER_ROWS if k == key and e in DEPTH_OF]
        ours = sorted((DEPTH_OF[e], _values(pick_setting(g)[0], key, unit == "%")) for e, g in by_exp.items()
                      if e in DEPTH_OF)
        ours = [(d, vals) for d, vals in ours if vals]
        ax.plot(*zip(*sorted(paper)), "o--", label="paper")
        if ours:
            depth, mean = [d for d, _ in ours], [_mean(v) for _, v in ours]
            span = [[m - min(v) for m, (_, v) in zip(mean, ours)], [max(v) - m for m, (_, v) in zip(mean, ours)]]
            ax.errorbar(depth, mean, yerr=span, fmt="s-", capsize=3, label="ours (bars: range of runs)")
        ax.set_xlabel("hidden layers")
        ax.set_ylabel(f"{key} ({unit})")
        ax.set_xticks([1, 2, 3])
        ax.legend()
    fig.suptitle("Table 2: accuracy and inference steps vs depth")
    fig.tight_layout()
    paths.append(fig_dir / "table2_depth.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    order_rows = [r for r in rows if r["table"] in ORDER_TABLE.values()]
    if any(r["ours"] is not None for r in order_rows):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        labels = [r["row"].replace(" iterations", "") for r in order_rows]
        x = range(len(order_rows))
        ax.bar([i - 0.2 for i in x], [r["paper"] for r in order_rows], 0.4, label="paper")
        ax.bar([i + 0.2 for i in x], [r["ours"] or 0 for r in order_rows], 0.4, label="ours")
        ax.set_xticks(list(x), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("accuracy (%)")
        ax.legend()
        ax.set_title("Tables 3-4: state relationships")
        fig.tight_layout()
        paths.append(fig_dir / "table34_order.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def _cell(text: str | None) -> float | None:
    """A CSV log cell as a number; None when empty or damaged."""
    try:
        return float(text) if text else None
    except ValueError:
        return None


def val_curve(run: Run) -> list[tuple[float, float]]:
    """(training samples seen, val/acc in %) at each validation of a run logged with ``logger=csv``
    (its ``csv/version_*/metrics.csv``; the latest version); empty without one."""
    files = sorted(run.path.glob("csv/version_*/metrics.csv"), key=lambda f: f.stat().st_mtime)
    if not files:
        return []
    seen, curve = 0.0, []
    with files[-1].open() as fh:
        for row in csv.DictReader(fh):  # a training row's samples count precedes the validation after it
            seen = _cell(row.get("train/samples_seen")) or seen
            acc = _cell(row.get("val/acc"))
            if acc is not None:
                curve.append((seen, 100.0 * acc))
    return curve


def plot_curves(runs: list[Run], fig_dir: Path) -> list[Path]:
    """One figure per experiment: validation accuracy against training samples, one line per run
    logged with ``logger=csv`` (labelled by its settings and seed), the test accuracy as a marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_exp: dict[str, list[tuple[Run, list]]] = {}
    for r in runs:
        curve = val_curve(r)
        if curve:
            by_exp.setdefault(r.experiment, []).append((r, curve))
    paths = []
    for exp, items in sorted(by_exp.items()):
        fig, ax = plt.subplots(figsize=(7, 4))
        for r, curve in sorted(items, key=lambda item: (item[0].setting, str(item[0].path))):
            seed = (_load_yaml(r.path / ".hydra" / "config.yaml") or {}).get("seed", "?")
            label = textwrap.shorten(f"{' '.join(r.setting) or 'as the experiment file'}, seed {seed}", 70)
            line, = ax.plot(*zip(*curve), "o-", ms=3, label=label)
            test = _num(r.metrics.get("test/acc"))
            if test is not None:
                ax.plot([curve[-1][0]], [100.0 * test], "*", ms=10, color=line.get_color())
        ax.set_xlabel("training samples seen")
        ax.set_ylabel("validation accuracy (%); star: test")
        ax.set_title(f"{exp}: learning curves")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(fig_dir / f"curves_{exp}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def collect_pngs(runs: list[Run], root: Path, fig_dir: Path) -> list[Path]:
    out = []
    for r in runs:
        for png in sorted(r.path.glob("*.png")):
            dest = fig_dir / f"{r.experiment}__{r.path.name}__{png.name}"
            shutil.copyfile(png, dest)
            out.append(dest)
    return out


def log_wandb(rows: list[dict[str, Any]], figures: list[Path]) -> bool:
    try:
        import wandb
    except ImportError:
        return False
    if wandb.run is None:
        return False
    for table in dict.fromkeys(r["table"] for r in rows):
        data = [[r[c] for c in COLUMNS] for r in rows if r["table"] == table]
        wandb.log({f"report/{table.replace(' ', '_').lower()}": wandb.Table(columns=COLUMNS, data=data)})
    wandb.log({f"report/figures/{p.stem}": wandb.Image(str(p)) for p in figures})
    return True


def make_report(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such runs folder: {root}")
    runs = find_runs(root)
    rows = build_rows(runs)
    fig_dir = root / "report_figures"
    fig_dir.mkdir(exist_ok=True)
    figures = plot_summary(rows, runs, fig_dir) + plot_curves(runs, fig_dir) + collect_pngs(runs, root, fig_dir)
    (root / "report.md").write_text(to_markdown(rows, runs, root, figures))
    write_csv(rows, root / "report.csv")
    log_wandb(rows, figures)
    return {"runs": len(runs), "rows": rows, "markdown": root / "report.md", "csv": root / "report.csv",
            "figures": figures}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    out = make_report(argv[0])
    print(f"{out['runs']} runs -> {out['markdown']}, {out['csv']}, {len(out['figures'])} figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
