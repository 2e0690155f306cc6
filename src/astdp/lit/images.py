"""Image grids as uint8 (W&B saves float arrays black) and conditional generation for logging."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.utils import make_grid

from pytorch_lightning import Callback

from astdp.system import System


def grid(x: torch.Tensor, shape: int | Sequence[int], nrow: int = 8) -> np.ndarray:
    """(n, C*H*W) channel-major values in [0, 1] -> (H', W', 3) uint8 grid; grey (C = 1) or colour (C = 3).

    ``shape`` is ``(C, H, W)`` (``data.image_shape``) or the side of a square image
    (``data.image_size``), whose channels then follow from the width of ``x``.
    """
    if isinstance(shape, int):
        shape = (x.shape[1] // (shape * shape), shape, shape)
    imgs = x.detach().float().cpu().clamp(0, 1).reshape(-1, *(int(d) for d in shape))  # (n, C, H, W)
    g = make_grid(imgs, nrow=nrow, padding=2, pad_value=0.5)  # (3, H, W)
    return (g.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def reconstructions(system: System, n: int) -> torch.Tensor:
    """Input-layer states of the readout network in the evaluation state (after an inference)."""
    return system.input_pixels(system.eval_state.slots(n))


def generate(system: System, n_classes: int, per_class: int = 1) -> torch.Tensor:
    """Conditional generation (§3.1.2) from fresh random states: ``per_class`` images per label."""
    y = torch.arange(n_classes).repeat_interleave(per_class)
    return system.generate(y, steps=system.learner.steps, init_scale=system.dynamics.init_scale)


def save_png(arr: np.ndarray, path: str | Path) -> None:
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


class GenerationFigure(Callback):
    """Figure 2 after testing (the ``generation:`` key of a run): the grid of generated digits, one
    labelled row per label, as ``generated.png`` in the run folder (and to the logger), and, with
    ``judge: true``, how many of them a backprop classifier trained on the run's training set
    reads as the clamped label (:func:`astdp.experiments.generation.judge`). Runs once per trainer;
    its metrics are in :attr:`metrics`."""

    def __init__(self, params: dict, seed: int, out_dir: str | Path) -> None:
        self.params, self.seed, self.out_dir = dict(params), int(seed), Path(out_dir)
        self.metrics: dict = {}
        self.path: Path | None = None

    def on_test_end(self, trainer, pl_module) -> None:
        if self.path is not None or not trainer.is_global_zero or not hasattr(pl_module, "system"):
            return
        from astdp.experiments import generation

        system, p = pl_module.system, self.params
        n, steps, init = int(p.get("samples_per_label", 8)), int(p.get("steps", 160)), float(p.get("init_scale", 1.0))
        noise = float(p.get("noise", 0.0))
        img = generation.grid(system, n=n, steps=steps, init_scale=init, seed=self.seed, noise=noise)
        title = ""
        dm = trainer.datamodule
        if p.get("judge", True) and dm is not None and getattr(dm, "train_set", None) is not None:
            x, y = dm.train_set.tensors
            self.metrics = generation.judge(system, x, y, n, steps, init, self.seed, int(p.get("judge_epochs", 2)),
                                            noise=noise)
            title = (f"generated digits: {self.metrics['generation/classified_as_label']:.0%} read as the clamped "
                     f"label (judge: {self.metrics['generation/judge_acc']:.1%} on held-out digits), spread "
                     f"{self.metrics['generation/spread']:.3f}" + (f", hidden noise {noise:g}" if noise else ""))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / "generated.png"
        generation.figure(img, system.topology.sizes[-1], self.path, title)
        log_image = getattr(trainer.logger, "log_image", None)
        if log_image is not None:
            log_image(key="test/generated", images=[img.numpy()])
