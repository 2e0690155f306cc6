"""Runs folder -> a table of what the runs did, grouped by what varies between them; the paper's
tables beside ours where its experiments are present; figures (PNG); optionally a W&B run of it all.

    python -m astdp.report <folder> [--wandb] [--paper]    (a multirun folder, or any folder holding runs)

Every folder below the given one that holds a ``metrics.json`` (a flat dict written by each run)
is a run. **The sweep table** groups the runs by the config keys whose values differ between them
(seed aside, and keys that do not change what a run computes: data root, threads, logger,
callbacks, ...), read from each run's saved config (``.hydra/config.yaml``) and the config group
options it chose (``.hydra/hydra.yaml``: ``depth=h512x2``); a key whose value follows from an
option that varies (``depth.hidden`` from ``depth``) is left out of the group's name. One row per
group: the mean and range over its runs (seeds) of test accuracy, inference steps, converged
fraction, best validation accuracy, samples seen and wall time; ordered by data set, then depth
(``data=...`` and ``depth=...``, which name the group where they differ), then best test accuracy first.

**The paper's tables** (only those of experiments present among the runs; ``--paper``: all of
them, empty rows included): a run's ``.hydra/overrides.yaml`` gives the command and the experiment
name (the ``+experiment@_global_=...`` override a sweep file appends, else ``experiment=...``, else
``.hydra/hydra.yaml``'s choices, else the config's ``task_name``). A run's setting is how its saved
config (data, model, learner, depth, trainer, resolved) differs from its experiment file as it is
in this checkout (without a saved config: its overrides other than seed, data root, logger,
threads, hydra and device). Runs of one experiment on one setting (seeds) are averaged; where an
experiment also ran on other settings (a probe, a search, a run from before its file changed), its
row uses the runs on the experiment's own settings, else the setting with the most runs, and says
how many other settings it left out.

Writes, in the given folder: ``report.md``, ``sweep.csv`` (the sweep table), ``report.csv`` (the
paper's rows shown), ``report_figures/*.png``: test accuracy against inference steps (one point
per group), accuracy and inference steps against depth (the paper's Table 2 line and the groups
of MNIST runs), the learning curves of each experiment (runs logged with ``logger=csv`` or W&B),
the order tables' bars, and every PNG found in the runs. ``--wandb``: a W&B run of its own
(``job_type=report``, in ``<folder>/wandb`` beside a sweep's runs, offline unless ``WANDB_MODE``
says otherwise) carrying the tables as ``wandb.Table`` s and the figures.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import re
import shutil
import statistics
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from astdp import tracking

# -- the paper's numbers, defined once ------------------------------------------------------------
# (table, experiment, row label, metric key, paper value (None: the paper gives none), unit)
PAPER_ROWS: list[tuple[str, str, str, str, float | None, str]] = [
    ("Table 1", "table1_unsupervised", "unsupervised 784-512-10", "test/acc", 91.0, "%"),
    ("Table 1", "table1_supervised", "supervised 784-512-10", "test/acc", 92.0, "%"),
    ("Table 1", "table1_supervised", "supervised 784-512-10", "infer/steps", None, "steps"),
    ("Table 1", "table1_ep", "Equilibrium Propagation 784-512-10 (not in the paper)", "test/acc", None, "%"),
    ("Table 1", "table1_ep", "Equilibrium Propagation 784-512-10 (not in the paper)", "infer/steps", None, "steps"),
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
    ("Table 2", "table2_h500x3_ep", "784-500-500-500-10, Equilibrium Propagation (the paper quotes EP [7])", "test/acc",
     97.0, "%"),
    ("Table 2", "table2_h500x3_ep", "784-500-500-500-10, Equilibrium Propagation (the paper quotes EP [7])",
     "infer/steps", 500.0, "steps"),
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
# overrides that do not change what a run computes: runs differing only in these are averaged (the number of
# processes, trainer.devices and trainer.num_nodes, does: their combined batch and exchanges differ)
INCIDENTAL = ("seed", "data.root", "logger", "threads", "trainer.accelerator", "ckpt_path")
# the config sections that decide what a run computes, and their keys that do not
COMPARED = ("data", "model", "learner", "depth", "trainer")
INCIDENTAL_KEYS = ("data.root", "data.num_workers", "data.download", "data.allow_fallback", "trainer.accelerator",
                   "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.log_every_n_steps")
# the sweep table: top-level config keys that do not name a group, and config groups whose option does not either
SWEEP_SKIPPED = ("seed", "threads", "output_dir", "ckpt_path", "logger", "callbacks", "tags", "group",
                 "optimized_metric", "hydra")
SWEEP_SKIPPED_CHOICES = ("logger", "hydra")
# (metric, column title, in %): each as mean, min and max over a group's runs
SWEEP_METRICS = [("test/acc", "test acc (%)", True), ("infer/steps", "inference steps", False),
                 ("infer/converged", "converged (%)", True), ("val/acc_best", "best val acc (%)", True),
                 ("train/samples_seen", "samples seen", False), ("time/wall_s", "wall time (s)", False)]
SWEEP_COLUMNS = ["group", "runs", "seeds"] + [f"{k}{end}" for k, _, _ in SWEEP_METRICS for end in ("", "_min", "_max")]
ALL_RUNS = "(all runs)"  # the name of the one group of runs that do not differ
UNSET = "(unset)"


@dataclass
class Run:
    path: Path
    experiment: str
    metrics: dict[str, Any]
    command: str
    setting: tuple[str, ...] = ()  # how the run differs from its experiment file, as ``key=value`` s
    values: dict[str, str] = field(default_factory=dict)  # the saved config as {dotted key: value}, SWEEP_SKIPPED aside
    links: frozenset[str] = frozenset()  # its keys whose value is another key's (interpolations)
    choices: dict[str, str] = field(default_factory=dict)  # config group -> the option chosen
    seed: Any = None
    group: str = ALL_RUNS  # its row of the sweep table, set by :func:`name_groups`


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
    choices = ((_load_yaml(hydra_dir / "hydra.yaml") or {}).get("hydra") or {}).get("runtime", {}).get("choices", {})
    cfg = _load_config(hydra_dir / "config.yaml")
    # a sweep file's job appends its row as +experiment@_global_=<row>; that names the run
    named = keys.get("experiment@_global_") or keys.get("experiment") or choices.get("experiment")
    named = None if named in (None, "null") else str(named)
    experiment = named or (cfg or {}).get("experiment_name") or (cfg or {}).get("task_name") or folder.name
    if keys.get("experiment@_global_"):
        # rerun one sweep job alone: select its row directly, keep the job's other overrides
        rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+") not in ("experiment", "experiment@_global_")]
        overrides = [f"experiment={experiment}", *rest]
    command = " ".join(["python train.py", *overrides]).strip()
    setting = _resolved_setting(cfg, str(experiment))
    if setting is None:  # no saved config, or no experiment file to compare it with: the overrides tell
        setting = tuple(sorted(o.lstrip("+") for o in overrides if _changes_run(o.split("=", 1)[0].lstrip("+"))))
    if cfg is not None:
        values, links = _flat(cfg, [k for k in cfg if k not in SWEEP_SKIPPED])
        values = {k: _show(v) for k, v in values.items()}
    else:  # no saved config: the overrides that change what a run computes
        values, links = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in setting if "=" in o}, frozenset()
    choices = {k: _show(v) for k, v in choices.items() if not k.startswith(SWEEP_SKIPPED_CHOICES)}
    if named:  # the row a sweep file's job ran is its experiment (once: not also as experiment@_global_)
        choices.pop("experiment@_global_", None)
        choices["experiment"] = named
    seed = cfg.get("seed") if cfg is not None else keys.get("seed")
    return Run(folder, str(experiment), metrics, command, setting, values, links, choices, seed)


def _load_config(path: Path):
    """A run's saved config (an OmegaConf ``DictConfig``), or None without a readable one."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not path.is_file():
        return None
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, yaml.YAMLError):
        return None
    return cfg if isinstance(cfg, DictConfig) else None


def _changes_run(key: str) -> bool:
    return key not in ("experiment", "experiment@_global_", *INCIDENTAL) and not key.startswith("hydra.")


def _flat(cfg: Any, sections=COMPARED) -> tuple[dict[str, Any], frozenset[str]]:
    """The keys of a config's ``sections`` (an OmegaConf ``DictConfig``) as {dotted key: plain value},
    interpolations resolved, and the keys that are interpolations; a key that cannot be resolved
    outside its run is left out, and so are the INCIDENTAL_KEYS."""
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    out: dict[str, Any] = {}
    links: set[str] = set()

    def walk(node: DictConfig, keys, prefix: str) -> None:
        for key in keys:
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
                walk(value, value.keys(), full + ".")
            else:
                out[full] = value
                if OmegaConf.is_interpolation(node, key):
                    links.add(full)

    walk(cfg, [k for k in sections if k in cfg], "")
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


def _resolved_setting(cfg, experiment: str) -> tuple[str, ...] | None:
    """How a run's saved config differs from its experiment file as it is now, as sorted ``key=value``
    s over the COMPARED sections (so an override that only repeats the file's value, or an experiment
    file changed after the run, is seen as it is). Keys only one side has (added or removed since)
    are left out, unless the experiment file sets one the run lacks (``key=(unset)``), and so are
    keys that both sides take from another key (``trainer.max_epochs:
    ${data.max_epochs}``: that key tells). None without a saved config with those sections or a
    composable experiment."""
    if cfg is None:
        return None
    run, run_links = _flat(cfg)
    composed = _experiment_config(experiment) if run else None
    if composed is None:
        return None
    exp, exp_links = composed
    differ = [f"{k}={_show(v)}" for k, v in run.items()
              if k in exp and exp[k] != v and not (k in run_links and k in exp_links)]
    # a key the experiment file sets but the run's config lacks: the file chose it after the run
    unset = [f"{k}={UNSET}" for k in exp if k not in run and _file_sets(experiment, k)]
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


# -- the sweep table: one row per group of runs that differ only in seed ----------------------------
def name_groups(runs: list[Run]) -> None:
    """Set each run's ``group``: ``key=value`` for each config group option whose choice differs between
    the runs, then for each key whose value differs between runs on the same options (``depth.hidden``
    is left out where ``depth=...`` decides it), except keys taken from another key in every run
    (``trainer.max_epochs: ${data.max_epochs}``)."""
    choice = lambda r, k: r.choices.get(k, UNSET)  # noqa: E731
    value = lambda r, k: r.values.get(k, UNSET)  # noqa: E731
    options = sorted(k for k in {k for r in runs for k in r.choices} if len({choice(r, k) for r in runs}) > 1)
    cells: dict[tuple, list[Run]] = {}
    for r in runs:
        cells.setdefault(tuple(choice(r, k) for k in options), []).append(r)
    for cell in cells.values():
        keys = sorted(k for k in {k for r in cell for k in r.values} if len({value(r, k) for r in cell}) > 1
                      and not all(k in r.links for r in cell if k in r.values))
        for r in cell:
            r.group = " ".join([f"{k}={choice(r, k)}" for k in options] + [f"{k}={value(r, k)}" for k in keys]) or ALL_RUNS


def _option(group: list[Run], name: str) -> str:
    """The ``data`` or ``depth`` option a group's runs chose (its config's ``<name>.name`` without a
    saved choice); empty where they differ or none is known."""
    chosen = {r.choices.get(name) or r.values.get(f"{name}.name") or "" for r in group}
    return chosen.pop() if len(chosen) == 1 else ""


def _natural(text: str) -> tuple:
    """Sort key that puts numbers in order: toy8 before toy16, h512 before h512x2."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def sweep_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per group (:func:`name_groups`): its runs, their seeds, and the mean, lowest and
    highest value of each of SWEEP_METRICS; ordered by data set, then depth (accuracies on different
    images or nets side by side), then best test accuracy first."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    rows = []
    for name, group in groups.items():
        seeds = sorted({str(r.seed) for r in group if r.seed is not None}, key=lambda s: (len(s), s))
        row: dict[str, Any] = {"group": name, "runs": len(group), "seeds": ",".join(seeds)}
        for key, _, pct in SWEEP_METRICS:
            vals = _values(group, key, pct)
            row.update({key: _mean(vals), f"{key}_min": min(vals, default=None), f"{key}_max": max(vals, default=None)})
        hidden = {r.values.get("depth.hidden") for r in group}
        row["hidden_layers"] = len(yaml.safe_load(hidden.pop())) if len(hidden) == 1 and None not in hidden else None
        row["mnist"] = all(r.values.get("data.name") == "mnist" for r in group)
        row["data"], row["depth"] = _option(group, "data"), _option(group, "depth")
        rows.append(row)
    return sorted(rows, key=lambda r: (_natural(r["data"]), _natural(r["depth"]),
                                       math.inf if r["test/acc"] is None else -r["test/acc"]))


# -- the paper's tables --------------------------------------------------------------------------
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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _span(row: dict[str, Any], key: str, digits: int) -> str:
    """A mean with its range in brackets when several runs give it."""
    text = _fmt(row[key], digits)
    if row[f"{key}_min"] is not None and row[f"{key}_min"] != row[f"{key}_max"]:
        text += f" ({_fmt(row[f'{key}_min'], digits)}-{_fmt(row[f'{key}_max'], digits)})"
    return text


def to_markdown(sweep: list[dict[str, Any]], rows: list[dict[str, Any]], runs: list[Run], root: Path,
                figures: list[Path]) -> str:
    out = [f"# Report: `{root}`\n",
           f"{_count(len(runs), 'run')} found, in {_count(len(sweep), 'group')} by what differs between them "
           "(seed aside). Each row gives the mean over its runs, their lowest and highest value in brackets; "
           "accuracies in %, inference steps from a data change until `max|ds| < tol`.\n",
           "\n## Sweep (by data set, then depth, then best test accuracy first)\n",
           "| group | runs | seeds | " + " | ".join(title for _, title, _ in SWEEP_METRICS) + " |",
           "|---|---|---|" + "---|" * len(SWEEP_METRICS)]
    for r in sweep:
        cells = [_span(r, key, 0 if key in ("train/samples_seen", "time/wall_s") else 1) for key, _, _ in SWEEP_METRICS]
        out.append(f"| `{r['group']}` | {r['runs']} | {r['seeds']} | " + " | ".join(cells) + " |")
    if rows:
        out.append("\n## Paper vs ours\n")
        out.append("Runs of one experiment on the same settings (seeds) are averaged (`runs`); where it also ran "
                   "with other overrides, the row keeps its own settings (else the most-run one) and `other "
                   "settings` counts the rest (listed under Runs).\n")
    for table in dict.fromkeys(r["table"] for r in rows):
        out.append(f"\n### {table}\n")
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
    out.append("| experiment | group | seed | val acc | test acc | inference steps | status | wall time (s) | folder "
               "| command |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    pct = lambda v: None if _num(v) is None else 100 * _num(v)  # noqa: E731
    for r in sorted(runs, key=lambda r: -(_num(r.metrics.get("val/acc")) or -1.0)):
        m = r.metrics
        out.append(f"| {r.experiment} | `{r.group}` | {r.seed} | {_fmt(pct(m.get('val/acc')))} | {_fmt(pct(m.get('test/acc')))} "
                   f"| {_fmt(_num(m.get('infer/steps')))} | {m.get('run/status', 'done')} "
                   f"| {_fmt(_num(m.get('time/wall_s')), 0)} "
                   f"| `{r.path.relative_to(root) if r.path != root else '.'}` | `{r.command}` |")
    if figures:
        out.append("\n## Figure files\n")
        for f in figures:
            out.append(f"![{f.stem}]({f.relative_to(root)})")
    return "\n".join(out) + "\n"


def write_csv(rows: list[dict[str, Any]], columns: list[str], path: Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in columns})


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _group_style(sweep: list[dict[str, Any]]) -> dict[str, tuple[Any, str]]:
    """A colour per group (the same in every figure) and its legend label."""
    cmap = _pyplot().get_cmap("tab10" if len(sweep) <= 10 else "tab20")
    return {r["group"]: (cmap(i % cmap.N), textwrap.shorten(r["group"], 60)) for i, r in enumerate(sweep)}


def _point(ax, row: dict[str, Any], x: float, y_key: str, style: tuple[Any, str], x_key: str | None = None) -> None:
    """One group as a point with its range over runs as bars (on x too when ``x_key`` is a metric)."""
    def bar(key):
        return [[row[key] - row[f"{key}_min"]], [row[f"{key}_max"] - row[key]]]

    ax.errorbar([x], [row[y_key]], yerr=bar(y_key), xerr=bar(x_key) if x_key else None, fmt="o", capsize=3,
                color=style[0], label=style[1])


def draw_accuracy_vs_steps(sweep: list[dict[str, Any]]):
    """Test accuracy against inference steps, one point per group with its range; None without both."""
    rows = [r for r in sweep if r["test/acc"] is not None and r["infer/steps"] is not None]
    if not rows:
        return None
    style = _group_style(sweep)
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    for r in rows:
        _point(ax, r, r["infer/steps"], "test/acc", style[r["group"]], x_key="infer/steps")
    ax.set_xlabel("inference steps (test, mean over converged samples)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy against inference steps (bars: range over runs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def draw_depth(sweep: list[dict[str, Any]], paper: bool = False):
    """Test accuracy and inference steps against hidden layers: the paper's Table 2 line and each
    group of MNIST runs; None when no group has a depth (unless ``paper``)."""
    rows = [r for r in sweep if r["mnist"] and r["hidden_layers"] and r["test/acc"] is not None]
    if not rows and not paper:
        return None
    style = _group_style(sweep)
    fig, axes = _pyplot().subplots(1, 2, figsize=(10, 4))
    for ax, key, unit in ((axes[0], "test/acc", "%"), (axes[1], "infer/steps", "steps")):
        line = sorted((DEPTH_OF[e], v) for _, e, _, k, v, _ in PAPER_ROWS if k == key and e in DEPTH_OF)
        ax.plot(*zip(*line), "k--", marker="s", mfc="none", label="paper (Table 2)")
        for depth in sorted({r["hidden_layers"] for r in rows}):
            here = [r for r in rows if r["hidden_layers"] == depth and r[key] is not None]
            for i, r in enumerate(here):  # side by side around the depth
                _point(ax, r, depth + 0.12 * (i - (len(here) - 1) / 2), key, style[r["group"]])
        ax.set_xlabel("hidden layers")
        ax.set_ylabel(f"{key} ({unit})")
        ax.set_xticks(sorted({1, 2, 3} | {r["hidden_layers"] for r in rows}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("accuracy and inference steps against depth: the paper and these runs (bars: range over runs)")
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def plot_summary(rows: list[dict[str, Any]], sweep: list[dict[str, Any]], fig_dir: Path, paper: bool = False
                 ) -> list[Path]:
    """Accuracy against inference steps, accuracy and steps against depth (Table 2), and accuracy per
    order (Tables 3-4)."""
    plt = _pyplot()
    paths = []
    for name, fig in (("accuracy_vs_steps", draw_accuracy_vs_steps(sweep)), ("table2_depth", draw_depth(sweep, paper))):
        if fig is not None:
            paths.append(_save(fig, fig_dir / f"{name}.png"))

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
        paths.append(_save(fig, fig_dir / "table34_order.png"))
    return paths


def _cell(value: Any) -> float | None:
    """A logged value (a CSV cell, a W&B history value) as a number; None when empty or damaged."""
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def logged_curve(records: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[tuple[float, float]]:
    """(training samples seen, ``key`` x ``scale``) wherever logged rows give ``key``, in order (a
    training row's samples count precedes the validation after it)."""
    seen, curve = 0.0, []
    for row in records:
        seen = _cell(row.get("train/samples_seen")) or seen
        value = _cell(row.get(key))
        if value is not None:
            curve.append((seen, scale * value))
    return curve


def _csv_log(run: Run) -> Path | None:
    """The run's ``logger=csv`` file (``csv/version_*/metrics.csv``, the latest version), if any."""
    files = sorted(run.path.glob("csv/version_*/metrics.csv"), key=lambda f: f.stat().st_mtime)
    return files[-1] if files else None


def wandb_histories(root: Path) -> dict[Path, list[dict[str, Any]]]:
    """The logged history of every W&B run below ``root`` (a run's own ``wandb/`` or a sweep's),
    by the run folder it logged for (its config's ``output_dir``)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:  # each read is a short `wandb leet inspect` process
        logged = list(pool.map(tracking.read_run, tracking.run_files(root)))
    return {Path(r["config"]["output_dir"]).resolve(): r["history"] for r in logged
            if r and isinstance(r["config"].get("output_dir"), str)}


def logged_rows(run: Run, histories: dict[Path, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """What the run logged, row by row: its ``logger=csv`` file, else its W&B history (``histories``:
    :func:`wandb_histories`); empty without either."""
    log = _csv_log(run)
    if log is None:
        return (histories or {}).get(run.path.resolve(), [])
    with log.open() as fh:
        return list(csv.DictReader(fh))


def val_curve(run: Run, histories: dict[Path, list[dict[str, Any]]] | None = None) -> list[tuple[float, float]]:
    """The run's validation accuracy (%) against training samples seen (:func:`logged_rows`)."""
    return logged_curve(logged_rows(run, histories), "val/acc", 100.0)


def plot_curves(runs: list[Run], sweep: list[dict[str, Any]], root: Path, fig_dir: Path) -> list[Path]:
    """One figure per experiment, one line per run logged with ``logger=csv`` or W&B (coloured by its
    group, a marker per seed), against training samples: the training cost of each batch, and the
    validation accuracy with the test accuracy as a star."""
    plt = _pyplot()
    style = _group_style(sweep)
    histories = wandb_histories(root) if any(_csv_log(r) is None for r in runs) else {}
    by_exp: dict[str, list[tuple[Run, list, list]]] = {}
    for r in runs:
        rows = logged_rows(r, histories)
        val, cost = logged_curve(rows, "val/acc", 100.0), logged_curve(rows, "train/cost")
        if val or cost:
            by_exp.setdefault(r.experiment, []).append((r, val, cost))
    paths = []
    for exp, items in sorted(by_exp.items()):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        seeds = sorted({str(r.seed) for r, _, _ in items})
        for r, val, cost in sorted(items, key=lambda item: (item[0].group, str(item[0].seed), str(item[0].path))):
            color, label = style[r.group]
            marker = "osD^v<>p"[seeds.index(str(r.seed)) % 8]
            label = f"{label}, seed {r.seed}"
            if cost:
                left.plot(*zip(*cost), "-", lw=0.8, alpha=0.8, color=color, label=label)
                left.plot(*cost[-1], marker, ms=4, color=color)
            if val:
                right.plot(*zip(*val), "-", marker=marker, ms=4, color=color, label=label)
            test = _num(r.metrics.get("test/acc"))
            if test is not None and val:
                right.plot([val[-1][0]], [100.0 * test], "*", ms=10, color=color)
        left.set_ylabel("training cost per batch (train/cost)")
        left.set_yscale("log")
        right.set_ylabel("validation accuracy (%); star: test")
        for ax in (left, right):
            ax.set_xlabel("training samples seen")
            ax.grid(alpha=0.3)
        (right if right.lines else left).legend(fontsize=7)
        fig.suptitle(f"{exp}: learning curves")
        fig.tight_layout()
        paths.append(_save(fig, fig_dir / f"curves_{exp}.png"))
    return paths


def collect_pngs(runs: list[Run], root: Path, fig_dir: Path) -> list[Path]:
    out = []
    for r in runs:
        for png in sorted(r.path.glob("*.png")):
            dest = fig_dir / f"{r.experiment}__{r.path.name}__{png.name}"
            shutil.copyfile(png, dest)
            out.append(dest)
    return out


class ReportError(Exception):
    """A folder the report cannot work on: said in one line."""


def wandb_group(runs: list[Run], root: Path) -> str:
    """The report's W&B group: its sweep's (a multirun folder) where it reports on one, else the folder's name."""
    tasks = {r.values.get("task_name") for r in runs}
    if (root / "multirun.yaml").is_file() and len(tasks) == 1 and None not in tasks:
        return tracking.sweep_group(tasks.pop(), root.resolve())
    return root.resolve().name


def make_report(root: str | Path, wandb: bool = False, paper: bool = False) -> dict[str, Any]:
    """Report on the runs below ``root`` (see the module's docstring); ``paper``: all the paper's rows,
    also those without runs; ``wandb``: also a W&B run of the report."""
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"no such runs folder: {root}")
    runs = find_runs(root)
    if not runs:
        raise ReportError(f"no runs under {root} (no metrics.json in it or below it)")
    name_groups(runs)
    sweep = sweep_rows(runs)
    rows = [r for r in build_rows(runs) if r["runs"] or paper]
    fig_dir = root / "report_figures"
    fig_dir.mkdir(exist_ok=True)
    ours = plot_summary(rows, sweep, fig_dir, paper) + plot_curves(runs, sweep, root, fig_dir)
    figures = ours + collect_pngs(runs, root, fig_dir)
    (root / "report.md").write_text(to_markdown(sweep, rows, runs, root, figures))
    write_csv(sweep, SWEEP_COLUMNS, root / "sweep.csv")
    write_csv(rows, COLUMNS, root / "report.csv")
    out = {"runs": len(runs), "sweep": sweep, "rows": rows, "markdown": root / "report.md",
           "csv": [root / "sweep.csv", root / "report.csv"], "figures": figures, "wandb": None}
    if wandb:
        tables = {"sweep": (SWEEP_COLUMNS, [[r[c] for c in SWEEP_COLUMNS] for r in sweep])}
        for table in dict.fromkeys(r["table"] for r in rows):
            tables[table.replace(" ", "_").lower()] = (COLUMNS, [[r[c] for c in COLUMNS] for r in rows if r["table"] == table])
        out["wandb"] = tracking.log_report(root, wandb_group(runs, root), os.environ.get("WANDB_PROJECT", "astdp"),
                                           tables, ours, {"folder": str(root.resolve()), "runs": len(runs)})
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m astdp.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a multirun folder, or any folder holding run folders")
    parser.add_argument("--wandb", action="store_true", help="also a W&B run of the report (job_type=report)")
    parser.add_argument("--paper", action="store_true", help="all of the paper's rows, also those without runs")
    args = parser.parse_args(argv)
    try:
        out = make_report(args.folder, wandb=args.wandb, paper=args.paper)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{_count(out['runs'], 'run')} in {_count(len(out['sweep']), 'group')} -> {out['markdown']}, "
          f"{', '.join(map(str, out['csv']))}, {len(out['figures'])} figures in {Path(args.folder) / 'report_figures'}")
    if out["wandb"]:
        print(f"W&B: {out['wandb']} (browse: wandb leet {out['wandb'].parent}; upload: wandb sync {out['wandb'].parent})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
