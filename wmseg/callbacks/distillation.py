"""Distillation from a trained teacher checkpoint: its lifecycle and the term's weight."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from wmseg.models.checkpoint import load_model
from wmseg.models.losses import BinaryDistillation
from wmseg.synth import BackgroundBank


class Distillation(L.Callback):
    """Adds `weight(step) * loss(student_logits, teacher_logits)` to the training loss.

    The teacher is loaded from checkpoint `teacher` (`weights_only`, any wmseg checkpoint,
    pruned ones included) when fitting starts, on every DDP rank, frozen, in eval mode, on
    the student's device. It lives in this callback, never in the student's module, so no
    student checkpoint holds it. The loss is `wmseg.models.losses.BinaryDistillation`
    unless `loss` names another. The weight rises linearly from 0 over `warmup_steps`,
    then holds at `weight`, or with `final_weight` moves linearly to it by the run's
    last step (e.g. leaning on the labels towards the end). Logged: `train/distill_weight`
    and the weighted term, `train/extra_loss`.

    `unlabelled` (a folder of clean photos, no masks needed) adds `unlabelled_batch`
    random crops of them to each step, the size of the training crops, with the teacher's
    logits as their only target: real photos the synthetic labels never cover, which is
    where a teacher has most to pass on. Crops are drawn from (seed, step, rank).
    """

    def __init__(
        self,
        teacher: str | None = None,
        weight: float = 1.0,
        loss: nn.Module | None = None,
        warmup_steps: int = 0,
        final_weight: float | None = None,
        unlabelled: str | None = None,
        unlabelled_batch: int = 4,
        seed: int | None = 0,
    ) -> None:
        if not teacher:
            raise ValueError(
                "callbacks.distillation.teacher is empty: give the teacher's checkpoint, e.g. "
                "callbacks.distillation.teacher=runs/teacher/checkpoints/last.ckpt"
            )
        if weight < 0 or (final_weight is not None and final_weight < 0) or warmup_steps < 0:
            raise ValueError("callbacks.distillation: weight, final_weight and warmup_steps must be >= 0")
        self.teacher_path, self.weight, self.final_weight = teacher, weight, final_weight
        self.warmup_steps = warmup_steps
        self.loss = loss if loss is not None else BinaryDistillation()
        if unlabelled_batch < 1:
            raise ValueError(f"callbacks.distillation.unlabelled_batch must be >= 1, got {unlabelled_batch}")
        self.unlabelled, self.unlabelled_batch = unlabelled, unlabelled_batch
        self.seed = 0 if seed is None else seed
        self.teacher: nn.Module | None = None
        self._trainer: L.Trainer | None = None
        self._photos: BackgroundBank | None = None

    def weight_at(self, step: int, total: int | None) -> float:
        if self.warmup_steps and step < self.warmup_steps:
            return self.weight * step / self.warmup_steps
        if self.final_weight is None or not total or total <= self.warmup_steps:
            return self.weight
        progress = min(1.0, (step - self.warmup_steps) / (total - self.warmup_steps))
        return self.weight + (self.final_weight - self.weight) * progress

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        teacher = load_model(self.teacher_path).net.to(pl_module.device).eval()
        teacher.requires_grad_(False)
        self.teacher, self._trainer = teacher, trainer
        if self.unlabelled:
            # Plain crops of the user's photos: no textures, collages or jitter mixed in.
            self._photos = BackgroundBank(self.unlabelled, procedural_fraction=0.0)
        pl_module.extra_loss = self._term

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.extra_loss = None  # testing and later fits train nothing against it

    def _term(self, images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        assert self.teacher is not None and self._trainer is not None
        trainer = self._trainer
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        weight = self.weight_at(trainer.global_step, total)
        trainer.lightning_module.log("train/distill_weight", weight, batch_size=images.shape[0])
        with torch.no_grad():
            target = self.teacher(images)
        term = self.loss(logits, target)
        if self._photos is not None:
            extra = self._unlabelled_crops(images.shape[-1], trainer).to(images.device)
            with torch.no_grad():
                extra_target = self.teacher(extra)
            term = term + self.loss(trainer.lightning_module(extra), extra_target)
        return weight * term

    def _unlabelled_crops(self, size: int, trainer: L.Trainer) -> torch.Tensor:
        assert self._photos is not None
        rng = np.random.default_rng([self.seed, trainer.global_step, trainer.global_rank])
        crops = [self._photos.sample(rng, size) for _ in range(self.unlabelled_batch)]
        return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher_path}  # its path, for the record; never its weights
