"""Run one toy experiment from a plain config dict and save what it returns.

A config names the function as ``experiment_fn: "package.module:function"`` and passes it
``experiment_params`` (a dict of keyword arguments: the protocol) and, where the function takes
them, the composed config groups ``model``, ``learner`` and ``depth`` (plain dicts) and ``seed``, so
an override such as ``model.eps=[0.4,0.5]`` reaches the experiment. The function returns
``{"metrics": {name: number}, "figures": {name: matplotlib Figure}, ...}``; this module writes the
figures as ``<name>.png`` and the flat metrics (plus ``time/wall_s`` and ``experiment/fn``) as
``metrics.json`` in ``out_dir``, logs both to W&B when a run is active, and returns the metrics.
"""

from __future__ import annotations

import importlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from astdp.errors import ConfigError

GROUPS = ("model", "learner", "depth")  # config groups handed to the experiment function as plain dicts


def resolve(spec: str) -> Callable[..., dict]:
    """``"astdp.experiments.order:run"`` -> the function."""
    if ":" not in spec:
        raise ValueError(f"experiment_fn must look like 'package.module:function', got {spec!r}")
    module, name = spec.split(":", 1)
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise ValueError(f"experiment_fn {spec!r}: {module} has no function {name!r}")
    return fn


def _plain(x: Any) -> Any:
    """Lists (from YAML) -> tuples where a function expects pairs; leaves the rest alone."""
    if isinstance(x, list):
        return tuple(_plain(v) for v in x)
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    return x


def save_figures(figures: Mapping[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name, fig in figures.items():
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _finite(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)):
            out[k] = v if math.isfinite(float(v)) else None
        elif isinstance(v, str):
            out[k] = v
    return out


def call_params(fn: Callable[..., dict], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``experiment_params`` plus the config groups and seed that ``fn`` takes; unknown keys are an error."""
    import inspect

    accepted = inspect.signature(fn).parameters
    params = _plain(dict(cfg.get("experiment_params") or {}))
    name = f"{fn.__module__}:{fn.__name__}"
    for key in params:
        if key in GROUPS:
            raise ValueError(f"experiment_params.{key}: set the {key} config group instead (e.g. {key}.<key>=...)")
        if key not in accepted:
            raise ValueError(f"experiment_params.{key} is not a parameter of {name}; it takes "
                             f"{sorted(k for k in accepted if k not in GROUPS)}")
    for group in GROUPS:
        if group in accepted:
            if cfg.get(group) is None:
                raise ValueError(f"{name} needs the {group} config group")
            params[group] = dict(cfg[group])
    if cfg.get("seed") is not None and "seed" in accepted and "seed" not in params:
        params["seed"] = int(cfg["seed"])
    return params


def run_experiment(cfg: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Call ``cfg["experiment_fn"](**cfg["experiment_params"])``; write PNGs and ``metrics.json``."""
    spec = cfg.get("experiment_fn")
    if not spec:
        raise ValueError("run_experiment needs cfg['experiment_fn']")
    fn = resolve(spec)
    try:
        params = call_params(fn, cfg)
    except ValueError as e:

        raise ConfigError(str(e)) from None
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(int(cfg["threads"]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    result = fn(**params)
    wall = time.perf_counter() - start

    metrics = _finite(result.get("metrics", {}))
    metrics["time/wall_s"] = wall
    metrics["experiment/fn"] = spec
    pngs = save_figures(result.get("figures", {}), out_dir)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    _log_wandb(metrics, pngs)
    return metrics


def _log_wandb(metrics: Mapping[str, Any], pngs: list[Path]) -> None:
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is None:
        return
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    wandb.log({**numbers, **{f"figures/{p.stem}": wandb.Image(str(p)) for p in pngs}})
    for k, v in numbers.items():
        wandb.run.summary[k] = v
