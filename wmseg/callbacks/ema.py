"""An exponential moving average of the weights for validation and checkpoints."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMAWeights(EMAWeightAveraging):
    """Lightning's `EMAWeightAveraging`: validation runs on the averaged weights, and every
    checkpoint holds them in `state_dict` (what evaluate, export and predict load), with
    the raw weights beside them for resuming.

    One change: a checkpoint loaded outside fitting (`trainer.test(ckpt_path=...)` right
    after `fit`, as `train.py` does) keeps the averaged weights. Lightning's callback,
    still holding its averaged model from `fit`, would load the raw weights into the
    module there, so the test figure would not be the one of the saved model.
    """

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
