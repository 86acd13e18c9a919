"""Segmentation losses on logits (N, 1, H, W) against binary masks of the same shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BCEDiceLoss(nn.Module):
    """`bce_weight * BCE + dice_weight * soft Dice`, Dice over the whole batch by default.

    Batch-level Dice stays defined on images with empty masks, which a per-image Dice
    would punish for any false positive no matter how faint. `per_image=True` averages
    the Dice of each image that has a mark instead (images with empty masks are left to
    BCE): every marked image then weighs the same, as in the per-image mean IoU the
    real sets are scored by, so a small faint mark counts as much as a tiled grid.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        per_image: bool = False,
    ):
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError("loss weights must be >= 0 and not both 0 (model.loss.*_weight)")
        self.bce_weight, self.dice_weight, self.smooth = bce_weight, dice_weight, smooth
        self.per_image = per_image

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float(), target.float()
        loss = logits.new_zeros(())
        if self.bce_weight:
            loss = loss + self.bce_weight * F.binary_cross_entropy_with_logits(logits, target)
        if self.dice_weight:
            prob = logits.sigmoid()
            if self.per_image:
                prob, target = prob.flatten(1), target.flatten(1)
                marked = target.sum(1) > 0
                if marked.any():
                    prob, target = prob[marked], target[marked]
                    inter = (prob * target).sum(1)
                    dice = (2 * inter + self.smooth) / (prob.sum(1) + target.sum(1) + self.smooth)
                    loss = loss + self.dice_weight * (1 - dice).mean()
            else:
                inter = (prob * target).sum()
                dice = (2 * inter + self.smooth) / (prob.sum() + target.sum() + self.smooth)
                loss = loss + self.dice_weight * (1 - dice)
        return loss
