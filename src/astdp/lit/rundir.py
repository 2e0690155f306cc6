"""The ``astdp_new_dir`` resolver of Hydra's run folder (``conf/hydra/default.yaml``): registered on
import, before Hydra composes a config. Imports neither torch nor Lightning."""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def new_dir(path: str) -> str:
    """``path``, or ``path_1``, ``path_2``, ... : the first that did not exist, created here (atomically,
    so two runs started in the same second never share a folder)."""
    candidate, k = path, 0
    while True:
        try:
            os.makedirs(candidate, exist_ok=False)
            return candidate
        except FileExistsError:
            k += 1
            candidate = f"{path}_{k}"


OmegaConf.register_new_resolver("astdp_new_dir", new_dir, use_cache=True, replace=True)
