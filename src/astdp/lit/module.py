"""Lightning wiring around a :class:`~astdp.system.System`: buffers, metrics, logging; no equations.

Learning happens inside the System's relaxation (aSTDP at every step, under ``no_grad``), so
``automatic_optimization`` is off and nothing calls ``backward``. A :class:`NoOpOptimizer` is
stepped once per batch only so that Lightning's ``global_step`` counts training batches
(``max_steps``, ``val_check_interval``, checkpoint cadence and the W&B x-axis rely on it).

The :class:`~astdp.system.System` is a submodule: its weights and biases (parameters that need no
gradient) and its persistent per-slot states (buffers, train and eval: ``s``, ``v``, ``dzm``) follow
``.to()``, appear in the model summary and travel in checkpoints as ``system.*``.

Checkpoints also carry what decides the rest of the run beyond the buffers: the System's generator
(fake-target draws, initial states; and the device one off CPU), the learner's stage and counters,
and the best validation accuracy so far. The data order and the position inside the epoch are the
DataModule's; the rate schedule reads ``global_step`` and the epoch, which Lightning restores.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from pytorch_lightning import LightningModule
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from astdp.errors import DivergenceError
from astdp.factory import build_system
from astdp.lit import images
from astdp.lit.checkpoints import load_safely, rank_file, upgrade_state_dict
from astdp.lit.ddp import AllReduceSum, PeriodicSum, is_rank_zero, weight_spread, world_size
from astdp.lit import metrics as M


log = logging.getLogger(__name__)


class NoOpOptimizer(torch.optim.Optimizer):
    """Changes nothing; stepping it makes Lightning count one training batch."""

    def __init__(self, params) -> None:
        super().__init__(params, defaults={})

    def step(self, closure=None):
        return closure() if closure is not None else None


class AstdpLitModule(LightningModule):
    def __init__(
        self,
        model: dict[str, Any],
        learner: dict[str, Any],
        depth: dict[str, Any],
        n_inputs: int,
        n_outputs: int,
        batch_size: int,
        seed: int = 0,
        image_size: int | None = None,
        precision: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["precision"])  # a run may resume at another precision
        self.automatic_optimization = False
        self.system = build_system(model, learner, depth, n_inputs, n_outputs, batch_size, seed=seed,
                                   image_size=image_size)
        self.system.relaxer.set_precision(precision)  # trainer.precision: the engine casts (Lightning: 32-true)
        self.test_steps = int(learner.get("test_steps") or learner["steps"])
        self.tol = float(learner.get("tol", 1e-3))
        self.infer_stop = bool(learner.get("infer_stop", False))  # end a test batch once all samples converged
        self.image_size, self.n_outputs, self.seed = image_size, n_outputs, seed
        self.register_buffer("samples_seen", torch.zeros((), dtype=torch.long))
        self.val_acc = MulticlassAccuracy(n_outputs, average="micro")
        self.test_acc = MulticlassAccuracy(n_outputs, average="micro")
        self.val_acc_best = MaxMetric()
        self.val_tally, self.test_tally = M.InferTally(), M.InferTally()
        self.val_inpaint, self.test_inpaint, self.test_inpaint_blank = MeanMetric(), MeanMetric(), MeanMetric()
        self.run_config: dict | None = None  # the resolved run config, stored in checkpoints
        self.saved_world_size: int | None = None  # processes of the run that wrote the checkpoint resumed from
        self._rank_resume: dict | None = None  # this process's own state from the checkpoint, for on_train_start
        self.periodic: PeriodicSum | None = None  # sync=periodic: the weights at the last synchronisation
        self.weight_spread: float | None = None  # several processes: max |W - W on rank 0| after training
        self.engine_chosen = False  # model.engine=auto is settled once per run, from its length

    def forward(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Inference: outputs (B, n_out) after ``steps`` clamped-input relaxation steps."""
        out, _ = self.system.infer(x, steps=steps or self.test_steps, tol=self.tol)
        return out

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.system.relaxer.plast.batch = self.global_step  # the rate schedule's clock
        stats = self.system.train_batch(x, y)
        why = self.system.diverged()
        if why is not None:
            plast = self.system.relaxer.plast
            smoothing = f" and model.smoothing={plast.smoothing:.3g}" if plast.smoothing > 0 else ""
            fix = "lower model.smoothing or learner.alpha" if plast.smoothing > 0 else "lower learner.alpha"
            raise DivergenceError(
                f"training diverged at batch {self.global_step} ({why}) with learner.alpha="
                f"{plast.current_alpha:.3g}{smoothing} in use: {fix} or use a decaying learner.schedule")
        self.optimizers().step()  # counts this batch in global_step; weights changed in train_batch
        self._periodic_sync()
        self.samples_seen += x.shape[0] * self.trainer.world_size  # the combined batch of all processes
        self.log(M.TRAIN_COST, self.system.visible_cost(x, y), prog_bar=True, batch_size=x.shape[0])
        self.log_dict({M.TRAIN_DZ: stats.dz_abs, M.TRAIN_FAKE: stats.fake_rate,
                       M.TRAIN_ALPHA: self.system.relaxer.plast.current_alpha,
                       M.TRAIN_SAMPLES: self.samples_seen.float()}, batch_size=x.shape[0])

    def on_train_start(self) -> None:
        world = self.trainer.world_size
        if self.saved_world_size is not None and self.saved_world_size != world and is_rank_zero():
            log.info("resume: the checkpoint was written by %d process(es), training goes on with %d; every "
                     "process starts from the persistent states of the writing run's rank 0",
                     self.saved_world_size, world)
        if world_size() > 1 and getattr(self.trainer.strategy, "sync", "step") == "periodic":
            self.periodic = PeriodicSum(list(self.system.parameters()))  # on the device, after a resume
        if self._rank_resume is not None:  # this process's own state, saved with the checkpoint: exact
            self._load_rank_state(self._rank_resume)
            self._rank_resume = None
        elif self.global_rank > 0:  # every process draws its own fake targets (rank 0's are restored on resume)
            self.system.relaxer.generator.manual_seed(hash((self.seed, self.global_rank, self.global_step)) % 2**62)
            self.system.relaxer.seed_draws(hash((self.seed, self.global_rank, self.global_step)) % 2**62)
        self._choose_engine(self.trainer.estimated_stepping_batches, self.system.learner.steps)
        plast = self.system.relaxer.plast
        if plast.schedule == "cosine" and plast.total_batches is None:
            total = self.trainer.estimated_stepping_batches
            plast.total_batches = int(total) if total != float("inf") else None

    def _choose_engine(self, batches: float, steps: int) -> None:
        """``model.engine=auto``: fused for a run long enough to repay compiling it (System.choose_engine)."""
        work = batches * steps * self.system.batch_size * self.system.topology.n
        engine = self.system.choose_engine(work if work != float("inf") else None)
        self.engine_chosen = True
        if is_rank_zero():
            log.info("engine: %s (model.engine=%s)", engine, self.system.engine)

    def on_test_start(self) -> None:
        if not self.engine_chosen:  # evaluate.py: testing is the whole run
            self._choose_engine(sum(self.trainer.num_test_batches), self.test_steps)

    def _periodic_sync(self) -> None:
        """``sync=periodic``: at the end of the training step, so that a checkpoint saved after the
        batch (callbacks run before the module's own batch-end hook) holds the sum this batch sent."""
        if self.periodic is not None and (self.global_step % self.trainer.strategy.sync_every == 0
                                          or self.trainer.is_last_batch):
            # the epoch's last sum completes at once: validation and the checkpoint see the same weights everywhere
            self.periodic.sync(overlap=self.trainer.strategy.overlap and not self.trainer.is_last_batch)

    def on_train_end(self) -> None:
        if self.periodic is not None:
            self.periodic.sync()
        if world_size() > 1:
            self.weight_spread = weight_spread(list(self.system.parameters()))

    def on_train_epoch_start(self) -> None:
        self.system.relaxer.plast.epoch = self.current_epoch  # learner.schedule=decay

    # -- validation and test: learning rate zero, inputs clamped ---------------------------------
    def _infer(self, batch, acc: MulticlassAccuracy, tally: M.InferTally) -> torch.Tensor:
        x, y = batch
        out, stats = self.system.infer(x, steps=self.test_steps, tol=self.tol, stop_when_converged=self.infer_stop)
        acc.update(out.argmax(dim=1), y)
        tally.add(stats.converge_step)
        return x

    def _inpaint(self, x: torch.Tensor, batch_idx: int, error: MeanMetric, blank: MeanMetric | None = None) -> None:
        """Self-supervised learners: the squared pixel error of the inpainted square (§3.1.1), with
        the same squares and initial states at every evaluation (a generator seeded by the batch)."""
        learner = self.system.learner
        if not hasattr(learner, "inpaint_phases"):
            return
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + batch_idx)
        covered = learner.cover_mask(x.shape[0], x.device, gen).to(x.dtype)
        pixels = self.system.inpaint(x, covered, self.test_steps, self.tol, generator=gen)
        n = covered.sum()
        error.update(((pixels - x).pow(2) * covered).sum() / n, n)
        if blank is not None:
            blank.update((x.pow(2) * covered).sum() / n, n)

    def validation_step(self, batch, batch_idx: int) -> None:
        x = self._infer(batch, self.val_acc, self.val_tally)
        self._inpaint(x, batch_idx, self.val_inpaint)
        if batch_idx == 0 and self.image_size:
            n = min(32, x.shape[0])
            self._log_image("val/inputs", images.grid(x[:n], self.image_size))
            self._log_image("val/reconstructions", images.grid(images.reconstructions(self.system, n), self.image_size))

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        self.val_acc_best.update(acc)
        steps, conv = self.val_tally.compute()
        self.log_dict({M.VAL_ACC: acc, M.VAL_ACC_BEST: self.val_acc_best.compute(),
                       M.VAL_STEPS: steps, M.VAL_CONVERGED: conv}, prog_bar=False)
        if self.val_inpaint.update_count:
            self.log(M.VAL_INPAINT, self.val_inpaint.compute())
            self.val_inpaint.reset()
        self.val_acc.reset()
        self.val_tally.reset()
        if self.image_size and self.system.learner.name == "generation":
            gen = images.generate(self.system, self.n_outputs, per_class=4)
            self._log_image("val/generated", images.grid(gen, self.image_size, nrow=4 * 2))

    def test_step(self, batch, batch_idx: int) -> None:
        x = self._infer(batch, self.test_acc, self.test_tally)
        self._inpaint(x, batch_idx, self.test_inpaint, self.test_inpaint_blank)

    def on_test_epoch_end(self) -> None:
        steps, conv = self.test_tally.compute()
        self.log_dict({M.TEST_ACC: self.test_acc.compute(), M.INFER_STEPS: steps, M.INFER_CONVERGED: conv})
        if self.test_inpaint.update_count:
            self.log_dict({M.TEST_INPAINT: self.test_inpaint.compute(),
                           M.TEST_INPAINT_BLANK: self.test_inpaint_blank.compute()})
            self.test_inpaint.reset()
            self.test_inpaint_blank.reset()
        self.test_acc.reset()
        self.test_tally.reset()

    # -- optimizers -----------------------------------------------------------------------------
    def configure_optimizers(self):
        return NoOpOptimizer(list(self.system.parameters()))

    # -- hooks ----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Data parallel (several processes): the aSTDP updates are summed over the processes, at
        every relaxation step (``sync=step``) or every ``sync_every`` batches (``sync=periodic``)."""
        if stage == "fit" and world_size() > 1:
            if getattr(self.trainer.strategy, "sync", "step") != "periodic":
                exchange = getattr(self.trainer.strategy, "exchange", "auto")
                self.system.relaxer.reduce_hook = AllReduceSum(exchange=exchange)

    def _log_image(self, key: str, arr) -> None:
        if not is_rank_zero():
            return
        log_image = getattr(self.logger, "log_image", None)
        if log_image is not None:
            log_image(key=key, images=[arr], step=self.global_step)
        if self.trainer.default_root_dir:
            images.save_png(arr, f"{self.trainer.default_root_dir}/images/{key.replace('/', '_')}_step{self.global_step}.png")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["astdp_rng"] = self.system.generator.get_state()
        device_rng = self.system.device_rng_state()
        if device_rng is not None:
            checkpoint["astdp_rng_device"] = device_rng
        checkpoint["astdp_learner"] = self.system.learner.state_dict()
        checkpoint["astdp_draws"] = int(self.system.relaxer.draw_counter)
        checkpoint["astdp_world_size"] = self.trainer.world_size if self._trainer is not None else 1
        if self.val_acc_best.update_count:
            checkpoint["astdp_val_acc_best"] = self.val_acc_best.compute()
        if self.run_config is not None:
            checkpoint["astdp_config"] = self.run_config
        if self._trainer is not None and self.trainer.world_size > 1 and self.global_rank == 0:
            checkpoint["astdp_rank_state"] = self.rank_state()  # the others save theirs beside it (RunCheckpoint)

    def rank_state(self) -> dict:
        """What is this process's own in a data-parallel run, and a checkpoint written by rank 0 lacks
        for the others: its generators and draw counter, learner counters, persistent states (every
        buffer of the System) and, with ``sync=periodic``, its own weights and the sum in flight. Ranks
        >= 1 save it beside the checkpoint (:meth:`RunCheckpoint.save`), so that a resume is exact."""
        relaxer = self.system.relaxer
        return {"rng": self.system.generator.get_state(), "rng_device": self.system.device_rng_state(),
                "learner": self.system.learner.state_dict(), "draw_counter": relaxer.draw_counter.clone(),
                "draw_key": relaxer.draw_key.clone(),
                "buffers": {k: v.detach().clone() for k, v in self.system.named_buffers()},
                "params": ({k: v.detach().clone() for k, v in self.system.named_parameters()}
                           if self.periodic is not None else None),
                "periodic": self.periodic.state_dict() if self.periodic is not None else None}

    def _load_rank_state(self, state: dict) -> None:
        relaxer = self.system.relaxer
        self.system.generator.set_state(state["rng"])
        if state.get("rng_device") is not None:
            self.system.set_device_rng_state(state["rng_device"])
        self.system.learner.load_state_dict(state["learner"] or {})
        relaxer.draw_counter.copy_(state["draw_counter"])
        relaxer.draw_key = state["draw_key"].to(relaxer.draw_key.device)
        buffers = dict(self.system.named_buffers())
        for k, v in state["buffers"].items():
            buffers[k].copy_(v)
        if state.get("params") is not None:
            params = dict(self.system.named_parameters())
            for k, v in state["params"].items():
                params[k].copy_(v)
        if state.get("periodic") is not None and self.periodic is not None:
            self.periodic.load_state_dict(state["periodic"])

    def _find_rank_state(self, checkpoint: dict) -> dict | None:
        """This process's own state for a resume with as many processes as the checkpoint's run: rank 0's
        inside it, the others' in ``<checkpoint>.rank<r>`` of the same batch (else None: rank 0's is used)."""
        if self._trainer is None or self.trainer.world_size <= 1 or self.saved_world_size != self.trainer.world_size:
            return None
        if self.global_rank == 0:
            return checkpoint.get("astdp_rank_state")
        path = rank_file(self.trainer.ckpt_path, self.global_rank) if self.trainer.ckpt_path else None
        if path is None or not path.exists():
            return None
        saved = load_safely(path, key=f"rank {self.global_rank}'s state")
        if not isinstance(saved, dict) or saved.get("global_step") != checkpoint.get("global_step"):
            log.warning("rank %d: %s is not of the checkpoint's batch: this process goes on from rank 0's "
                        "persistent states", self.global_rank, path)
            return None
        return saved["state"]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "astdp_rng" in checkpoint:
            self.system.generator.set_state(checkpoint["astdp_rng"])
        if "astdp_rng_device" in checkpoint:
            self.system.set_device_rng_state(checkpoint["astdp_rng_device"])
        upgrade_state_dict(checkpoint.get("state_dict", {}))
        self.system.learner.load_state_dict(checkpoint.get("astdp_learner") or {})
        self.system.relaxer.draw_counter.fill_(int(checkpoint.get("astdp_draws", 0)))
        self.saved_world_size = int(checkpoint.get("astdp_world_size", 1))
        self._rank_resume = self._find_rank_state(checkpoint)
        if "astdp_val_acc_best" in checkpoint:
            self.val_acc_best.reset()
            self.val_acc_best.update(checkpoint["astdp_val_acc_best"])
