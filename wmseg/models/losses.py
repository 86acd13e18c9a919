"""Segmentation losses on logits (N, 1, H, W) against binary masks of the same shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import LovaszLoss
from torch import nn


class BCEDiceLoss(nn.Module):
    """`bce_weight * BCE + dice_weight * soft Dice`, Dice over the whole batch by default.

    Batch-level Dice stays defined on images with empty masks, which a per-image Dice
    would punish for any false positive no matter how faint. `per_image=True` averages
    the Dice of each image that has a mark instead (images with empty masks are left to
    BCE): every marked image then weighs the same, as in the per-image mean IoU the
    real sets are scored by, so a small faint mark counts as much as a tiled grid.

    `lovasz_weight` adds the Lovasz hinge (smp's `LovaszLoss`), a convex surrogate of
    IoU itself rather than of Dice; with `per_image=True` it too is the mean over marked
    images (on an empty mask it would only push down the single highest logit).
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        per_image: bool = False,
        lovasz_weight: float = 0.0,
    ):
        super().__init__()
        weights = (bce_weight, dice_weight, lovasz_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise ValueError(
                "loss weights must be >= 0 and not all 0 (model.loss.bce_weight, dice_weight, lovasz_weight)"
            )
        self.bce_weight, self.dice_weight, self.smooth = bce_weight, dice_weight, smooth
        self.per_image, self.lovasz_weight = per_image, lovasz_weight
        self.lovasz = LovaszLoss("binary", per_image=per_image)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float(), target.float()
        loss = logits.new_zeros(())
        # per_image: the per-image terms average over the images that hold a mark
        marked = target.flatten(1).sum(1) > 0 if self.per_image else None
        if self.bce_weight:
            loss = loss + self.bce_weight * F.binary_cross_entropy_with_logits(logits, target)
        if self.dice_weight:
            prob = logits.sigmoid()
            if self.per_image:
                if marked.any():
                    prob, flat = prob.flatten(1)[marked], target.flatten(1)[marked]
                    inter = (prob * flat).sum(1)
                    dice = (2 * inter + self.smooth) / (prob.sum(1) + flat.sum(1) + self.smooth)
                    loss = loss + self.dice_weight * (1 - dice).mean()
            else:
                inter = (prob * target).sum()
                dice = (2 * inter + self.smooth) / (prob.sum() + target.sum() + self.smooth)
                loss = loss + self.dice_weight * (1 - dice)
        if self.lovasz_weight:
            if self.per_image:
                if marked.any():
                    loss = loss + self.lovasz_weight * self.lovasz(logits[marked], target[marked])
            else:
                loss = loss + self.lovasz_weight * self.lovasz(logits, target)
        return loss
