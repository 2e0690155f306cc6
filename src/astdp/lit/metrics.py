"""Metric names (``<stage>/<quantity>``), defined once, and small reductions shared by the modules."""

from __future__ import annotations

import math

import torch


TRAIN_DZ = "train/dz_abs"  # mean |dz| over the batch's relaxation steps
TRAIN_FAKE = "train/fake_rate"  # fraction of hidden neurons with an active fake target
TRAIN_COST = "train/cost"  # eq (6) visible cost of net_s at the end of the batch (backprop: the loss)
TRAIN_SYMMETRY = "train/symmetry"  # cosine of W[i, j] and W[j, i]; train/symmetry/<a>_<b> per pair of layers
TRAIN_W_NORM = "train/w_norm"  # one per block: train/w_norm/<post>_from_<pre> (layer indices); both: lit/watch.py
TRAIN_W_CHANGE = "train/w_change"  # one per block: |W - W_0| / |W_0|, W_0 the block when training began
TRAIN_SAMPLES = "train/samples_seen"
RUN_STATUS = "run/status"  # a search trial that did not finish: diverged | failed
RUN_ERROR = "run/error"
TRAIN_ALPHA = "train/alpha"  # the aSTDP rate in use (learner.alpha x the schedule's factor)
VAL_ACC = "val/acc"
VAL_ACC_BEST = "val/acc_best"
VAL_STEPS = "val/infer_steps"
VAL_CONVERGED = "val/infer_converged"
VAL_INPAINT = "val/inpaint_mse"  # self-supervised: mean squared pixel error under the covered square
TEST_ACC = "test/acc"
TEST_INPAINT = "test/inpaint_mse"
TEST_INPAINT_BLANK = "test/inpaint_mse_blank"  # the same error if the square were left black (pixel 0)
INFER_STEPS = "infer/steps"  # mean first step with max|ds| < tol, over converged test samples
INFER_CONVERGED = "infer/converged"  # fraction of test samples converged within the step budget
DATA_SOURCE = "data/source"
WALL = "time/wall_s"
DIST_WORLD_SIZE = "dist/world_size"  # processes training together (trainer=ddp), 1 otherwise
DIST_SPREAD = "dist/weight_spread"  # after training, max |W - W of rank 0| over the processes (0: in step)
DIST_SYNC = "dist/sync"  # how their aSTDP updates were synchronised: step | none (one process)
SUMMARY_KEYS = (TEST_ACC, TEST_INPAINT, INFER_STEPS, INFER_CONVERGED, VAL_ACC_BEST, DATA_SOURCE, TRAIN_SAMPLES, WALL)


class InferTally:
    """Accumulates per-sample convergence steps (-1 = never) over an epoch."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.step_sum, self.n_conv, self.n = 0.0, 0, 0

    def add(self, converge_step: torch.Tensor) -> None:
        ok = converge_step >= 0
        self.step_sum += float(converge_step[ok].sum())
        self.n_conv += int(ok.sum())
        self.n += converge_step.numel()

    def compute(self) -> tuple[float, float]:
        """(mean steps over converged samples or nan, fraction converged), over all processes when
        several train together (each saw its share of the samples)."""
        step_sum, n_conv, n = self.step_sum, self.n_conv, self.n
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            total = torch.tensor([step_sum, n_conv, n], dtype=torch.float64, device=device)
            dist.all_reduce(total)
            step_sum, n_conv, n = total[0].item(), int(total[1]), int(total[2])
        steps = step_sum / n_conv if n_conv else math.nan
        return steps, (n_conv / n if n else math.nan)


def flat(metrics: dict) -> dict:
    """Plain JSON-able values: tensors to numbers, nan to None."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor):
            v = v.item()
        if isinstance(v, float) and math.isnan(v):
            v = None
        out[k] = v
    return out


def summary_line(metrics: dict, path: str | None = None) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    if TEST_ACC in metrics:
        keys = [k for k in SUMMARY_KEYS if k in metrics]
    elif VAL_ACC in metrics:
        keys = [k for k in (VAL_ACC, VAL_STEPS, VAL_CONVERGED, VAL_INPAINT, WALL) if k in metrics]
    else:
        keys = sorted(metrics)[:10]
    parts = [f"{k}={fmt(metrics[k])}" for k in keys]
    return "summary: " + " ".join(parts) + (f" ({path})" if path else "")
