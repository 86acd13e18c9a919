"""Log sample predictions as overlay images: image | truth | prediction, one row each."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from wmseg.atomic import save_png_atomic
from wmseg.inference.overlay import overlay_row, stack_rows


def overlay_grid(
    images: torch.Tensor, masks: torch.Tensor, probs: torch.Tensor, threshold: float
) -> np.ndarray:
    """(N, 3, H, W) images in [0, 1], (N, 1, H, W) masks and probabilities -> uint8 grid."""
    rows = [
        overlay_row(
            (img.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8),
            m[0].numpy(),
            p[0].numpy() >= threshold,
        )
        for img, m, p in zip(images, masks, probs, strict=True)
    ]
    return stack_rows(rows, gap=0)


class PredictionOverlays(L.Callback):
    """After each validation, draws the first `num_images` validation samples with the
    model's prediction; saved as PNG under `<log_dir>/overlays/` and sent to TensorBoard
    or W&B when those loggers are on."""

    def __init__(self, num_images: int = 8) -> None:
        self.num_images = num_images
        self._batch: tuple[torch.Tensor, ...] | None = None
        self._dir: Path | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        # `trainer.log_dir` is a collective under DDP: resolve it here, on every rank, never
        # from rank 0 alone mid-validation (that deadlocks against the metric sync).
        self._dir = Path(trainer.log_dir or trainer.default_root_dir) / "overlays"

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if batch_idx == 0 and trainer.is_global_zero and isinstance(outputs, torch.Tensor):
            n = self.num_images
            self._batch = (
                batch["image"][:n].cpu(),
                batch["mask"][:n].cpu(),
                outputs[:n].float().sigmoid().cpu(),
            )

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._batch is None or self._dir is None or trainer.sanity_checking:
            return
        grid = overlay_grid(*self._batch, threshold=pl_module.threshold)
        self._batch = None
        step = trainer.global_step
        save_png_atomic(grid, self._dir / f"step_{step:07d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/overlays", grid, step, dataformats="HWC")
            elif isinstance(logger, WandbLogger):
                logger.log_image("val/overlays", [grid], step=step)
