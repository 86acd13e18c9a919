"""The LightningModule: joins the network, the loss, the optimizer and the metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryPrecisionRecallCurve,
    BinaryRecall,
)

from wmseg.metrics import MeanImageIoUCurve, best_threshold, check_calibrate_metric, f1_best_threshold
from wmseg.models.compression import ARCHITECTURE, apply_architecture, architecture, check_architecture
from wmseg.models.restoration import has_restore_head, unblend

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def _metrics(prefix: str, threshold: float) -> MetricCollection:
    return MetricCollection(
        {
            "iou": BinaryJaccardIndex(threshold=threshold),
            "f1": BinaryF1Score(threshold=threshold),
            "precision": BinaryPrecision(threshold=threshold),
            "recall": BinaryRecall(threshold=threshold),
        },
        prefix=prefix,
    )


class WatermarkSegmenter(L.LightningModule):
    """Trains a network that maps images (N, 3, H, W) in [0, 1] to mask logits (N, 1, H, W).

    `optimizer` and `scheduler` are factories (Hydra `_partial_: true`): the optimizer
    takes `params`, the scheduler `optimizer` and `total_steps`. `encoder_lr_scale` < 1
    trains the network's `encoder` (if it has one) at that share of the learning rate,
    which keeps more of what a pretrained encoder knows about real photos.

    `calibrate_threshold`: after each validation the threshold becomes the one with the
    best F1 on the validation split (0.01 steps), logged as `val/threshold`, and every
    checkpoint saved after it stores that threshold for evaluation, export and predict.
    The monitored `val/iou` stays at the constructor's threshold, comparable across runs.
    `calibrate_metric="mean_iou"` stores the threshold with the best per-image mean IoU
    of marked images instead (logged as `val/best_mean_iou` either way), the measure the
    real sets are scored by; F1 pooled over pixels favours the large marks.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        threshold: float = 0.5,
        channels_last: bool = False,
        compile: bool = False,
        encoder_lr_scale: float = 1.0,
        calibrate_threshold: bool = False,
        calibrate_metric: str = "f1",
        restoration_loss: nn.Module | None = None,
        restoration_weight: float = 1.0,
    ) -> None:
        super().__init__()
        # Only plain values go into the checkpoint, so it loads with weights_only=True;
        # the network, loss and factories are rebuilt from the run config stored beside.
        self.save_hyperparameters(
            ignore=["net", "loss", "optimizer", "scheduler", "restoration_loss"], logger=False
        )
        self.net, self.loss_fn = net, loss
        if restoration_loss is not None and not has_restore_head(net):
            raise ValueError(
                "model.restoration_loss is set but the network has no restoration head: "
                "set model.net.restore=true (or model.restoration_loss=null)"
            )
        if restoration_weight < 0:
            raise ValueError(f"model.restoration_weight must be >= 0, got {restoration_weight}")
        self.restoration_loss, self.restoration_weight = restoration_loss, restoration_weight
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.threshold = threshold
        if encoder_lr_scale < 0.0:
            raise ValueError(f"model.encoder_lr_scale must be >= 0, got {encoder_lr_scale}")
        self.encoder_lr_scale = encoder_lr_scale
        self.calibrate_metric = check_calibrate_metric(calibrate_metric, "model.calibrate_metric")
        self.channels_last = channels_last
        if channels_last:
            # oneDNN convolutions run ~1.5x faster in NHWC on CPU (measured in experiments/).
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            self.net.compile()  # in place: state-dict keys stay the same
        self.train_metrics = _metrics("train/", threshold)
        self.val_metrics = _metrics("val/", threshold)
        self.test_metrics = _metrics("test/", threshold)
        grid = torch.linspace(0.01, 0.99, 99)
        self.val_curve = BinaryPrecisionRecallCurve(thresholds=grid) if calibrate_threshold else None
        self.val_iou_curve = MeanImageIoUCurve(thresholds=grid) if calibrate_threshold else None
        self.calibration: dict[str, Any] | None = None
        # A term added to the training loss, f(images, logits) -> scalar, set by a callback
        # (distillation: its teacher lives in the callback, never in this module's state).
        self.extra_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.net(image)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = batch["image"].shape[0]
        if self.restoration_loss is None:
            logits = self(batch["image"])
            loss = self.loss_fn(logits, batch["mask"])
        else:
            logits, restoration = self._restoration_step(batch, stage)
            loss = self.loss_fn(logits, batch["mask"]) + self.restoration_weight * restoration
        if stage == "train" and self.extra_loss is not None:
            extra = self.extra_loss(batch["image"], logits)
            self.log("train/extra_loss", extra, batch_size=n)
            loss = loss + extra
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=n, sync_dist=stage != "train")
        return loss, logits

    def _restoration_step(
        self, batch: dict[str, torch.Tensor], stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits and the restoration loss of the photo un-blended from the mark."""
        if "clean" not in batch:
            raise ValueError(
                "the restoration loss needs the clean photos: set data.restoration_targets=true "
                "(synthetic data only)"
            )
        image = batch["image"]
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        logits, colour, opacity = self.net.forward_restore(image)
        # Unclamped: a pixel clamped to [0, 1] would pass no gradient (removal clamps).
        restored = unblend(image, colour.to(image.dtype), opacity.to(image.dtype), clamp=False)
        loss = self.restoration_loss(restored, batch["clean"], batch["mask"], opacity)
        if "opacity" in batch:  # the renderer's own opacity and colour of the marks
            direct = self.restoration_loss.target_terms(
                opacity, colour, batch["opacity"], batch["colour"], batch["known"]
            )
            self.log(
                f"{stage}/mark_layer_loss", direct, batch_size=image.shape[0], sync_dist=stage != "train"
            )
            loss = loss + direct
        self.log(f"{stage}/restoration_loss", loss, batch_size=image.shape[0], sync_dist=stage != "train")
        return logits, loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits = self._step(batch, "train")
        self.train_metrics.update(logits.detach().sigmoid(), batch["mask"].int())
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, logits = self._step(batch, "val")
        probs, target = logits.sigmoid(), batch["mask"].int()
        self.val_metrics.update(probs, target)
        if self.val_curve is not None:
            self.val_curve.update(probs, target)
            self.val_iou_curve.update(probs, target)
        return logits

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()
        if self.val_curve is not None:
            self._calibrate()

    def _calibrate(self) -> None:
        f1_threshold, best_f1 = f1_best_threshold(*self.val_curve.compute())
        iou_threshold, best_iou = best_threshold(*self.val_iou_curve.compute())
        self.val_curve.reset()
        self.val_iou_curve.reset()
        threshold = iou_threshold if self.calibrate_metric == "mean_iou" else f1_threshold
        self.log_dict({"val/threshold": threshold, "val/best_f1": best_f1, "val/best_mean_iou": best_iou})
        if self.trainer.sanity_checking:
            return
        # hparams go into every checkpoint saved from now on, and inference reads them.
        self.threshold = self.hparams["threshold"] = threshold
        self.calibration = {
            "source": "validation split",
            "metric": self.calibrate_metric,
            "threshold": threshold,
            "f1": best_f1,
            "mean_iou": best_iou,
            "step": int(self.global_step),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.calibration is not None:
            checkpoint["wmseg_threshold_calibration"] = dict(self.calibration)
        # The channel counts rebuild a channel-pruned network from its config (plain data).
        checkpoint[ARCHITECTURE] = architecture(self.net)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if ARCHITECTURE in checkpoint:  # before Lightning loads the weights into the net
            apply_architecture(self.net, check_architecture(checkpoint[ARCHITECTURE], "checkpoint"))
        # A resumed run keeps its calibrated threshold until its next validation.
        note = checkpoint.get("wmseg_threshold_calibration")
        if self.val_curve is not None and note and note.get("source") == "validation split":
            self.calibration = dict(note)
            self.threshold = self.hparams["threshold"] = float(note["threshold"])

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, logits = self._step(batch, "test")
        self.test_metrics.update(logits.sigmoid(), batch["mask"].int())

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        encoder = getattr(self.net, "encoder", None)
        if self.encoder_lr_scale == 1.0 or not isinstance(encoder, nn.Module):
            optimizer = self.optimizer_factory(params=self.parameters())
        else:
            own = list(encoder.parameters())
            ids = {id(p) for p in own}
            rest = [p for p in self.parameters() if id(p) not in ids]
            optimizer = self.optimizer_factory(params=[{"params": own}, {"params": rest}])
            # LR schedulers scale each group's initial_lr, so the ratio holds all along.
            optimizer.param_groups[0]["lr"] *= self.encoder_lr_scale
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
