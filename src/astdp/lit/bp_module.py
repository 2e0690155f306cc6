"""Lightning wiring for the backprop baselines (automatic optimization), with the aSTDP metric names.

A feed-forward pass has no relaxation: ``infer/steps`` is the number of weight layers and
``infer/converged`` is 1.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning import LightningModule
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from astdp.baselines import bp
from astdp.lit import metrics as M


class BpLitModule(LightningModule):
    def __init__(self, learner: dict[str, Any], depth: dict[str, Any], n_inputs: int, n_outputs: int,
                 **unused: Any) -> None:
        super().__init__()
        self.save_hyperparameters("learner", "depth", "n_inputs", "n_outputs")
        self.kind = learner["name"]
        if self.kind not in bp.LOSSES:
            raise ValueError(f"learner.name must be one of {bp.LOSSES}, got {self.kind!r}")
        bp.make_optimizer(learner.get("optimizer", "sgd"), [torch.zeros(1, requires_grad=True)], float(learner["lr"]))
        self.mlp = bp.build(depth, n_inputs, n_outputs, learner.get("activation", "sigmoid"))  # MLP or ConvNet
        self.val_acc = MulticlassAccuracy(n_outputs, average="micro")
        self.test_acc = MulticlassAccuracy(n_outputs, average="micro")
        self.val_acc_best = MaxMetric()
        self.run_config: dict | None = None
        self.register_buffer("samples_seen", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = bp.loss(self.kind, self.mlp(x), y)
        self.samples_seen += x.shape[0]
        self.log(M.TRAIN_COST, loss, prog_bar=True, batch_size=x.shape[0])
        self.log(M.TRAIN_SAMPLES, self.samples_seen.float(), batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.val_acc.update(self.mlp(x).argmax(dim=1), y)

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        self.val_acc_best.update(acc)
        self.log_dict({M.VAL_ACC: acc, M.VAL_ACC_BEST: self.val_acc_best.compute()})
        self.val_acc.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.test_acc.update(self.mlp(x).argmax(dim=1), y)

    def on_test_epoch_end(self) -> None:
        self.log_dict({M.TEST_ACC: self.test_acc.compute(), M.INFER_STEPS: float(self.mlp.n_layers),
                       M.INFER_CONVERGED: 1.0})
        self.test_acc.reset()

    def configure_optimizers(self):
        lr = float(self.hparams.learner["lr"])
        return bp.make_optimizer(self.hparams.learner.get("optimizer", "sgd"), self.mlp.parameters(), lr)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint["astdp_config"] = self.run_config
