"""Segmentation losses on logits (N, 1, H, W) against binary masks of the same shape,
the distillation loss, and the restoration loss on restored photos."""

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


class BinaryDistillation(nn.Module):
    """Knowledge distillation on per-pixel logits (N, 1, H, W): the student's soft mask
    against the teacher's, both softened by `temperature`.

    The pixel term is binary KD, the KL divergence of Bernoulli(sigmoid(teacher / T)) to
    Bernoulli(sigmoid(student / T)) per pixel, averaged, times T^2 (so its gradients keep
    their scale as T changes). `cwd_weight` adds channel-wise distillation (CWD, Shu et
    al. 2021): each channel's logits become a distribution over pixels (a softmax over
    H x W at `cwd_temperature`) and the student's is pulled to the teacher's by KL; it
    teaches where in the image the mass lies, not each pixel's level. Both terms are 0
    when the student's logits equal the teacher's and positive otherwise.
    """

    def __init__(self, temperature: float = 2.0, cwd_weight: float = 0.0, cwd_temperature: float = 4.0):
        super().__init__()
        if temperature <= 0 or cwd_temperature <= 0:
            raise ValueError("distillation temperatures must be > 0 (temperature, cwd_temperature)")
        if cwd_weight < 0:
            raise ValueError(f"cwd_weight must be >= 0, got {cwd_weight}")
        self.temperature, self.cwd_weight, self.cwd_temperature = temperature, cwd_weight, cwd_temperature

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = student.float(), teacher.float().detach()
        t = self.temperature
        s_logit, t_logit = student / t, teacher / t
        # KL(Bern(p) || Bern(q)) from logits, stable: with log-sigmoids of both signs.
        p = t_logit.sigmoid()
        log_p, log_1p = F.logsigmoid(t_logit), F.logsigmoid(-t_logit)
        log_q, log_1q = F.logsigmoid(s_logit), F.logsigmoid(-s_logit)
        kd = (p * (log_p - log_q) + (1 - p) * (log_1p - log_1q)).mean() * t * t
        if not self.cwd_weight:
            return kd
        c = self.cwd_temperature
        s_flat, t_flat = (student / c).flatten(2), (teacher / c).flatten(2)  # (N, C, H*W)
        t_log = F.log_softmax(t_flat, dim=2)
        cwd = (t_log.exp() * (t_log - F.log_softmax(s_flat, dim=2))).sum(2).mean() * c * c
        return kd + self.cwd_weight * cwd


class RestorationLoss(nn.Module):
    """L1 between the restored and the clean photo (N, 3, H, W) inside the true mark (the
    rest of the image is the input, bit for bit, at removal), plus `gradient_weight` times
    the L1 of their horizontal and vertical differences there (edges and texture under
    the mark), plus `composite_weight` times the L1 between the input and the clean photo
    re-blended with the predicted mark there: its gradient in the opacity is the mark's
    contrast, not 0 where the head predicts no mark. For an unclamped un-blend
    `restored = (i - a c) / (1 - a)` that difference is `(1 - a) (clean - restored)`, so
    the term needs only the predicted `opacity` besides. Zero when the restoration is the
    clean photo; zero on unmarked images.

    With the renderer's targets (`data.restoration_targets=true` gives `opacity`,
    `colour` and `known`), `opacity_weight` times the L1 of the predicted opacity against
    the true one on every known pixel (0 where there is no mark: unmarked images teach it
    too, and a head predicting no mark gets the full gradient), and `colour_weight` times
    the L1 of the predicted colour where the mark shows, weighted by its true opacity;
    `opacity_balance` takes the opacity term as half the mean on the marks and half off
    them (else one mean over every known pixel, most of them off the marks)."""

    def __init__(
        self,
        l1_weight: float = 1.0,
        gradient_weight: float = 0.0,
        composite_weight: float = 0.0,
        opacity_weight: float = 0.0,
        colour_weight: float = 0.0,
        opacity_balance: bool = False,
    ) -> None:
        super().__init__()
        weights = (l1_weight, gradient_weight, composite_weight, opacity_weight, colour_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise ValueError(
                "model.restoration_loss.l1_weight, gradient_weight, composite_weight, opacity_weight "
                "and colour_weight must be >= 0 and not all 0"
            )
        self.l1_weight, self.gradient_weight, self.composite_weight = weights[:3]
        self.opacity_weight, self.colour_weight = weights[3:]
        self.opacity_balance = opacity_balance

    def target_terms(
        self,
        opacity: torch.Tensor,
        colour: torch.Tensor,
        true_opacity: torch.Tensor,
        true_colour: torch.Tensor,
        known: torch.Tensor,
    ) -> torch.Tensor:
        """The direct terms: predicted opacity (N, 1, H, W) and colour (N, 3, H, W), both in
        [0, 1], against the renderer's, on its `known` pixels."""
        known = known.float()
        loss = opacity.new_zeros((), dtype=torch.float32)
        if self.opacity_weight:
            err = (opacity.float() - true_opacity.float()).abs() * known
            if self.opacity_balance:
                # Half on the marks, half off them: most pixels are off them, where 0 is
                # right, and an even mean lets a head that under-predicts the marks off lightly.
                on = (true_opacity.float() > 0).float() * known
                off = known - on
                term = 0.5 * (err * on).sum() / on.sum().clamp(min=1) + 0.5 * (
                    err * off
                ).sum() / off.sum().clamp(min=1)
            else:
                term = err.sum() / known.sum().clamp(min=1)
            loss = loss + self.opacity_weight * term
        if self.colour_weight:
            weight = true_opacity.float() * known
            err = (colour.float() - true_colour.float()).abs() * weight
            loss = loss + self.colour_weight * err.sum() / (3 * weight.sum()).clamp(min=1e-6)
        return loss

    def forward(
        self,
        restored: torch.Tensor,
        clean: torch.Tensor,
        mask: torch.Tensor,
        opacity: torch.Tensor | None = None,
    ) -> torch.Tensor:
        restored, clean, mask = restored.float(), clean.float(), mask.float()
        n = mask.sum()
        if n == 0:
            return restored.sum() * 0.0  # keeps the graph (DDP) with nothing to learn
        loss = self.l1_weight * ((restored - clean).abs() * mask).sum() / (3 * n)
        if self.composite_weight:
            if opacity is None:
                raise ValueError("composite_weight > 0 needs the predicted opacity")
            # |re-blended clean - input| = (1 - a) |clean - restored| (see the docstring)
            residual = (1.0 - opacity.float()) * (clean - restored).abs()
            loss = loss + self.composite_weight * (residual * mask).sum() / (3 * n)
        if self.gradient_weight:
            for dim in (2, 3):
                d_r, d_c = restored.diff(dim=dim), clean.diff(dim=dim)
                m = mask.narrow(dim, 1, mask.shape[dim] - 1) * mask.narrow(dim, 0, mask.shape[dim] - 1)
                loss = loss + self.gradient_weight * ((d_r - d_c).abs() * m).sum() / (
                    3 * m.sum().clamp(min=1)
                )
        return loss
