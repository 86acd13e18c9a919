"""Unstructured or Ln-structured pruning of the network's conv weights during training."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelPruning

from wmseg.models.compression import PruneSchedule, conv_sparsity, prunable_convs

log = logging.getLogger(__name__)


class ConvPruning(ModelPruning):
    """Lightning's `ModelPruning` on the conv weights of the network alone: not the norms,
    the biases or the segmentation head (whose one output channel every pixel needs).

    The pruned share follows `PruneSchedule` (from 0 to `amount` between `start` and
    `end`, in training steps or epochs, pruned every `every` of them), cubic by default
    (Zhu & Gupta 2017: most is cut early, while the network can still recover).
    `pruning_fn`: `l1_unstructured` (global over the chosen layers with
    `use_global_unstructured`) or `ln_structured` (whole output channels per layer, by
    their `pruning_norm`; zeroed, not removed: see `ChannelPruning` for speed).
    Checkpoints hold the pruned weights made permanent (plain `weight` keys), so they
    load into a plain `WatermarkUnet`, evaluate and export as any other.
    Logged at each pruning step: `prune/sparsity` over the chosen layers and
    `prune/sparsity/<layer>` per layer.
    """

    def __init__(
        self,
        amount: float = 0.5,
        pruning_fn: str = "l1_unstructured",
        schedule: PruneSchedule | None = None,
        use_global_unstructured: bool = True,
        pruning_norm: int | None = None,
        use_lottery_ticket_hypothesis: bool = False,
        verbose: int = 0,
    ) -> None:
        if not 0.0 < amount < 1.0:
            raise ValueError(f"callbacks.pruning.amount must be within (0, 1), got {amount}")
        structured = pruning_fn == "ln_structured"
        kwargs: dict[str, Any] = {"pruning_norm": pruning_norm or 2, "pruning_dim": 0} if structured else {}
        super().__init__(
            pruning_fn=pruning_fn,
            amount=self._increment,
            use_global_unstructured=use_global_unstructured and not structured,
            use_lottery_ticket_hypothesis=use_lottery_ticket_hypothesis,
            make_pruning_permanent=True,
            prune_on_train_epoch_end=True,
            verbose=verbose,
            **kwargs,
        )
        self.target, self.schedule = amount, schedule or PruneSchedule()
        # The share pruned so far. Not restored on resume: the masks are not in checkpoints
        # (their zeros are), so the next step cuts the schedule's share of all weights anew,
        # and the zeros, smallest of all, are cut first.
        self._reached = 0.0
        self._now = -1
        self._pending: dict[str, float] = {}  # sparsity to log after the step

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._parameters_to_prune = [(conv, "weight") for _, conv in prunable_convs(pl_module.net)]
        for conv, _ in self._parameters_to_prune:
            # torch's pruning flattens weights with view(), which channels_last ones refuse
            # (model.channels_last); before the optimizer exists, so it keeps these tensors.
            conv.weight.data = conv.weight.data.contiguous()
        super().setup(trainer, pl_module, stage)

    def _increment(self, _: int) -> float:
        """The share of the still unpruned weights to cut now, so that the cut share
        reaches the schedule's (PyTorch prunes a share of what is left each time)."""
        want = self.schedule.share(self._now, self.target)
        if want <= self._reached + 1e-9:
            return 0.0
        amount = (want - self._reached) / (1.0 - self._reached)
        self._reached = want
        return amount

    def _prune_at(self, trainer: L.Trainer, pl_module: L.LightningModule, t: int) -> None:
        if t == self._now or not self.schedule.due(t):  # once a step, with gradient accumulation too
            return
        self._now = t
        self._run_pruning(t)
        per_layer, overall = conv_sparsity(pl_module.net)
        metrics = {f"prune/sparsity/{name}": share for name, share in per_layer.items()}
        metrics["prune/sparsity"] = overall
        self._pending = metrics
        log.info("pruned to %.1f %% of the chosen conv weights", 100 * metrics["prune/sparsity"])

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # Before the step of `global_step`: start=0 prunes before any training.
        if self.schedule.unit == "steps":
            self._prune_at(trainer, pl_module, trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._pending:
            for name, value in self._pending.items():
                pl_module.log(name, value, on_step=True, on_epoch=False, rank_zero_only=True)
            self._pending = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.schedule.unit == "epochs":
            self._prune_at(trainer, pl_module, trainer.current_epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # pruning follows the schedule, not each epoch's end

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # nor validation
