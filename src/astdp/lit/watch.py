"""Training health, watched while a run goes on, so that a broken run says so at once.

- **Weights.** The symmetry index of the whole net and of each pair of layers, each block's
  norm, and how far each block has moved from where training began (``|W - W_0| / |W_0|``: which
  layers learn at all), every N training batches. An antisymmetric loop (pair index near -1)
  rotates the states instead of settling them: that is what a collapsed deep net looks like
  (docs/FINDINGS.md sections 17 and 19). Healthy nets keep every pair above about -0.25; in a
  collapse the pairs fall from there to below -0.9 within a few batches, as the training cost jumps.
- **Silence.** When the two networks stop differing (the mean ``|dz|`` of a batch falls to a tiny
  fraction of its largest value so far, batch after batch), nothing learns any more: the outputs
  sit at a bound in both networks, where the target's pull cannot move them (section 21).

Each warns once per run, in one line that says what to change.
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


class Silence:
    """Counts consecutive batches whose mean ``|dz|`` is below ``ratio`` x the largest seen so far."""

    def __init__(self, ratio: float, batches: int) -> None:
        self.ratio, self.batches = ratio, batches
        self.peak, self.quiet = 0.0, 0

    def update(self, dz: float, batch: int) -> str | None:
        """The warning once ``batches`` batches in a row were silent, else None."""
        self.peak = max(self.peak, dz)
        self.quiet = self.quiet + 1 if dz < self.ratio * self.peak else 0
        if self.quiet != self.batches:
            return None
        return (f"train/dz_abs = {dz:.1e} at batch {batch}, below {self.ratio:g} of its peak {self.peak:.1e} for "
                f"{self.batches} batches: the two networks no longer differ, so nothing learns (as when the outputs "
                f"are stuck at a bound in both); warm the rate up (learner.warmup_batches=50) or lower learner.alpha")


class TrainingWatch(Callback):
    """Logs ``train/symmetry``, ``train/symmetry/<a>_<b>``, ``train/w_norm/<block>`` and
    ``train/w_change/<block>`` every ``every_n_batches`` training batches and at the last batch of
    each epoch, and warns once when a pair's index falls below ``warn_below``; warns once when
    ``train/dz_abs`` stays below ``silent_ratio`` x its peak for ``silent_batches`` batches.
    Backprop baselines are skipped."""

    def __init__(self, every_n_batches: int = 50, warn_below: float = -0.5, silent_ratio: float = 1e-4,
                 silent_batches: int = 5) -> None:
        for name, v in (("every_n_batches", every_n_batches), ("silent_batches", silent_batches)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"callbacks.watch.{name} must be an integer >= 1, got {v!r}")
        if not -1.0 <= float(warn_below) <= 1.0:
            raise ConfigError(f"callbacks.watch.warn_below must be in [-1, 1] (a cosine), got {warn_below!r}")
        if not 0.0 <= float(silent_ratio) < 1.0:
            raise ConfigError(f"callbacks.watch.silent_ratio must be in [0, 1) (0: never warn), got {silent_ratio!r}")
        self.every_n_batches, self.warn_below = every_n_batches, float(warn_below)
        self.silence = Silence(float(silent_ratio), silent_batches)
        self.warned: set[str] = set()
        self.start: list | None = None  # the weights when training began; kept in checkpoints

    def state_dict(self) -> dict:
        return {"start": self.start} if self.start is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self.start = state_dict.get("start")

    def on_train_start(self, trainer, pl_module) -> None:
        system = getattr(pl_module, "system", None)
        if system is not None and self.start is None:  # a resumed run keeps the first start
            self.start = [w.detach().clone() for w in system.net.weights]

    def _warn(self, kind: str, message: str | None) -> None:
        if message and kind not in self.warned and is_rank_zero():
            log.warning(message)
            self.warned.add(kind)

    @staticmethod
    def measure(net, start: list | None = None) -> dict[str, float]:
        out = {M.TRAIN_SYMMETRY: net.symmetry_index()}
        out.update({f"{M.TRAIN_SYMMETRY}/{k}": v for k, v in net.pair_symmetry().items()})
        names = [net.topology.block_name(k) for k in range(len(net.weights))]
        out.update({f"{M.TRAIN_W_NORM}/{name}": float(w.norm()) for name, w in zip(names, net.weights)})
        if start is not None:
            out.update({f"{M.TRAIN_W_CHANGE}/{name}": float((w - w0.to(w.device)).norm() / w0.norm().clamp_min(1e-12))
                        for name, w, w0 in zip(names, net.weights, start)})
        return out

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        system = getattr(pl_module, "system", None)
        if system is None:
            return
        step = trainer.global_step
        dz = trainer.callback_metrics.get(M.TRAIN_DZ)
        if dz is not None:
            self._warn("silence", self.silence.update(float(dz), step))
        if not (step % self.every_n_batches == 0 or trainer.is_last_batch):
            return
        values = self.measure(system.net, self.start)
        # straight to the loggers: a value given to self.log would be logged again at every later batch
        for logger in trainer.loggers:  # in the row of this batch's other train metrics (0-based batch)
            logger.log_metrics(values, step=step - 1)
        pairs = {k.rsplit("/", 1)[1]: v for k, v in values.items() if k.startswith(M.TRAIN_SYMMETRY + "/")}
        self._warn("collapse", collapse_warning(pairs, step, self.warn_below))
