"""The ``astdp_new_dir`` resolver of Hydra's run folder (``conf/hydra/default.yaml``): registered on
import, before Hydra composes a config. Imports neither torch nor Lightning."""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def launcher_run_id() -> str | None:
    """A name every process of one launch shares, and that a restart of the launch keeps: torchrun's
    run id (``TORCHELASTIC_RUN_ID``, kept by its restarts) or, for ``srun`` tasks, SLURM's job and step."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun_{os.environ['TORCHELASTIC_RUN_ID']}"
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_PROCID") and int(os.environ.get("SLURM_NTASKS", 1)) > 1:
        return f"slurm_{os.environ['SLURM_JOB_ID']}_{os.environ.get('SLURM_STEP_ID', '0')}"
    return None


def new_dir(path: str) -> str:
    """``path``, or ``path_1``, ``path_2``, ... : the first that did not exist, created here (atomically,
    so two runs started in the same second never share a folder).

    Processes started together by torchrun or srun share one folder named after the launch
    (:func:`launcher_run_id`) beside the timed ones, and a restart of the launch finds it again, so
    that ``ckpt_path=last`` resumes from what the previous attempt saved."""
    shared = launcher_run_id()
    if shared is not None:
        folder = os.path.join(os.path.dirname(path), shared)
        os.makedirs(folder, exist_ok=True)
        return folder
    candidate, k = path, 0
    while True:
        try:
            os.makedirs(candidate, exist_ok=False)
            return candidate
        except FileExistsError:
            k += 1
            candidate = f"{path}_{k}"


OmegaConf.register_new_resolver("astdp_new_dir", new_dir, use_cache=True, replace=True)
