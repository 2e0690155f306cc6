"""Image grids as uint8 (W&B saves float arrays black) and conditional generation for logging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid

from astdp.system import System


def grid(x: torch.Tensor, image_size: int, nrow: int = 8) -> np.ndarray:
    """(n, image_size**2) values in [0, 1] -> (H, W, 3) uint8 grid."""
    imgs = x.detach().float().cpu().clamp(0, 1).view(-1, 1, image_size, image_size)
    g = make_grid(imgs, nrow=nrow, padding=2, pad_value=0.5)  # (3, H, W)
    return (g.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def to_pixels(s: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """States of input neurons back to pixel units (the inverse of the learner's target map)."""
    return (s - low) / (high - low) if high != low else s


def reconstructions(system: System, n: int) -> torch.Tensor:
    """Input-layer states of the readout network in the evaluation state (after an inference)."""
    t = system.topology
    s = system.eval_state.s[system.readout, :n, t.slice(t.input_layer)]  # (n, n_in)
    return to_pixels(s, *system.learner.input_range)


def generate(system: System, n_classes: int, per_class: int = 1) -> torch.Tensor:
    """Conditional generation (§3.1.2) from fresh random states: ``per_class`` images per label."""
    y = torch.arange(n_classes).repeat_interleave(per_class)
    return system.generate(y, steps=system.learner.steps, init_scale=system.dynamics.init_scale)


def save_png(arr: np.ndarray, path: str | Path) -> None:
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def generation_figure(system: System, params: dict, seed: int, out_dir: str | Path, logger=None) -> Path:
    """Figure 2 after training (the ``generation:`` key of an experiment): a uint8 grid, labels x samples."""
    from astdp.experiments.generation import grid as generation_grid

    arr = generation_grid(system, n=int(params.get("samples_per_label", 8)), steps=int(params.get("steps", 160)),
                          init_scale=float(params.get("init_scale", 1.0)), seed=seed)
    arr = arr.numpy() if hasattr(arr, "numpy") else np.asarray(arr)
    path = Path(out_dir) / "generated.png"
    save_png(arr, path)
    if logger is not None and hasattr(logger, "log_image"):
        logger.log_image(key="test/generated", images=[arr])
    return path
