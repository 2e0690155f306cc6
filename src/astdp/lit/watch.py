"""Weight health while training: the symmetry index of the whole net and of each pair of layers, and
each block's norm, every N training batches; a warning when a pair of layers turns antisymmetric.

An antisymmetric loop (pair index near -1) rotates the states instead of settling them: that is what
a collapsed deep net looks like (docs/FINDINGS.md sections 17 and 19). Healthy nets keep every pair
above about -0.25; in a collapse the pairs fall from there to below -0.9 within a few batches, as the
training cost jumps. The warning tells the user at once, not only at the end of the epoch.
"""

from __future__ import annotations

import logging

from pytorch_lightning import Callback

from astdp.lit import metrics as M
from astdp.lit.config import ConfigError
from astdp.lit.ddp import is_rank_zero


log = logging.getLogger(__name__)


def collapse_warning(pairs: dict[str, float], batch: int, warn_below: float) -> str | None:
    """The warning for the most antisymmetric pair of layers, if it is below ``warn_below``."""
    if not pairs:
        return None
    name, worst = min(pairs.items(), key=lambda kv: kv[1])
    if worst >= warn_below:
        return None
    a, b = name.split("_")
    return (f"train/symmetry/{name} = {worst:.2f} at batch {batch}: the weights between layers {a} and {b} have "
            f"turned antisymmetric, so the net has collapsed (its loops rotate the states instead of settling "
            f"them); give both directions one rate (learner.layer_alpha_pairs=true) or lower learner.alpha")


class WeightWatch(Callback):
    """Logs ``train/symmetry``, ``train/symmetry/<a>_<b>`` and ``train/w_norm/<block>`` every
    ``every_n_batches`` training batches and at the last batch of each epoch; warns once per run
    when a pair's index falls below ``warn_below``. Backprop baselines (no aSTDP system) are skipped."""

    def __init__(self, every_n_batches: int = 50, warn_below: float = -0.5) -> None:
        if isinstance(every_n_batches, bool) or not isinstance(every_n_batches, int) or every_n_batches < 1:
            raise ConfigError(f"callbacks.weights.every_n_batches must be an integer >= 1, got {every_n_batches!r}")
        if not -1.0 <= float(warn_below) <= 1.0:
            raise ConfigError(f"callbacks.weights.warn_below must be in [-1, 1] (a cosine), got {warn_below!r}")
        self.every_n_batches, self.warn_below = every_n_batches, float(warn_below)
        self.warned = False

    def measure(self, net) -> dict[str, float]:
        pairs = net.pair_symmetry()
        out = {M.TRAIN_SYMMETRY: net.symmetry_index()}
        out.update({f"{M.TRAIN_SYMMETRY}/{k}": v for k, v in pairs.items()})
        out.update({f"{M.TRAIN_W_NORM}/{net.topology.block_name(k)}": float(w.norm()) for k, w in enumerate(net.weights)})
        return out

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        system = getattr(pl_module, "system", None)
        step = trainer.global_step
        if system is None or not (step % self.every_n_batches == 0 or trainer.is_last_batch):
            return
        values = self.measure(system.net)
        # straight to the loggers: a value given to self.log would be logged again at every later batch
        for logger in trainer.loggers:  # in the row of this batch's other train metrics (0-based batch)
            logger.log_metrics(values, step=step - 1)
        pairs = {k.rsplit("/", 1)[1]: v for k, v in values.items() if k.startswith(M.TRAIN_SYMMETRY + "/")}
        warning = collapse_warning(pairs, step, self.warn_below)
        if warning and not self.warned and is_rank_zero():
            log.warning(warning)
            self.warned = True
