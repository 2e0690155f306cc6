"""W&B for runs and sweeps: where a run logs, reading an offline run back, the report's own run.

Every run of a multirun logs into one W&B directory, ``<sweep folder>/wandb/`` (a single run into
its own folder's ``wandb/``), in one group named after the sweep folder. ``wandb leet <sweep
folder>/wandb`` then browses the whole sweep offline, and ``wandb sync <sweep folder>/wandb``
uploads it. Imports neither Lightning nor (until it logs) W&B.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def sweep_group(task_name: str, sweep_dir: str | Path) -> str:
    """The W&B group of every run of one multirun (and of the report on it)."""
    return f"{task_name}-{Path(sweep_dir).name}"


def log_dir(run_dir: str) -> str:
    """Where a run's W&B directory goes: the sweep folder in a multirun, else the run's own folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return os.path.abspath(HydraConfig.get().sweep.dir)
    return run_dir


OmegaConf.register_new_resolver("astdp_log_dir", log_dir, replace=True)


def run_files(folder: Path) -> list[Path]:
    """The W&B runs (``run-<id>.wandb`` transaction logs, offline or synced) below ``folder``."""
    return sorted(folder.rglob("run-*.wandb"))


def read_run(path: Path) -> dict[str, Any] | None:
    """A W&B run's transaction log read back with W&B's own reader (``wandb leet inspect --json``):
    ``{"id", "group", "job_type", "config" (merged updates), "history" (one dict per logged step)}``;
    None where it cannot be read."""
    try:
        proc = subprocess.run(["wandb", "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    out: dict[str, Any] = {"config": {}, "history": []}
    for line in proc.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = record.get("type")
        if kind == "run":
            run = record["run"]
            out.update(id=run.get("run_id"), group=run.get("run_group"), job_type=run.get("job_type"))
        elif kind == "config":
            update = record["config"].get("update")
            out["config"].update(update if isinstance(update, dict) else {})
        elif kind == "history":
            out["history"].append(record["history"].get("item", {}))
    return out if out.get("id") else None


def log_report(folder: Path, group: str, project: str, tables: dict[str, tuple[list[str], list[list]]],
               figures: list[Path], config: dict[str, Any]) -> Path:
    """A W&B run of its own (``job_type=report``) in ``<folder>/wandb``, beside the sweep's runs,
    carrying ``tables`` ({name: (columns, rows)}) as ``wandb.Table`` s and the figures as images.
    Offline unless ``WANDB_MODE`` says otherwise. Returns the run's directory."""
    import wandb

    run = wandb.init(project=project, dir=str(folder), group=group, job_type="report", name=f"report-{group}",
                     config=config, mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new")
    try:
        run.log({**{f"report/{name}": wandb.Table(columns=columns, data=rows) for name, (columns, rows) in tables.items()},
                 **{f"report/figures/{p.stem}": wandb.Image(str(p)) for p in figures}})  # PNG files: uint8
        return Path(run.dir).parent
    finally:
        run.finish()
