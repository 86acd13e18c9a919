"""Undoing a semi-transparent mark: a mark of colour `c` at opacity `a` over a photo `p`
shows `i = (1 - a) p + a c`, so `p = (i - a c) / (1 - a)` wherever `a < 1`. The network's
restoration head predicts `c` and `a` per pixel; this module holds the formula. No
Lightning."""

from __future__ import annotations

import torch
from torch import nn

# Most opacity the head predicts: above it the photo is (nearly) gone and the division
# would only amplify noise; removal inpaints there instead (`opaque` in predict).
MAX_OPACITY = 0.95


def unblend(
    image: torch.Tensor, colour: torch.Tensor, opacity: torch.Tensor, clamp: bool = True
) -> torch.Tensor:
    """The photo under a mark: `image` (N, 3, H, W) in [0, 1] with the mark's `colour`
    (N, 3, H, W) and `opacity` (N, 1, H, W) taken out, clamped to [0, 1] unless `clamp`
    is false (training: a clamped pixel passes no gradient)."""
    opacity = opacity.clamp(0.0, MAX_OPACITY)
    photo = (image - opacity * colour) / (1.0 - opacity)
    return photo.clamp(0.0, 1.0) if clamp else photo


def blend_mark(photo: torch.Tensor, colour: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """The inverse of `unblend`: the photo with a mark of `colour` at `opacity` over it."""
    return (1.0 - opacity) * photo + opacity * colour


def has_restore_head(net: nn.Module) -> bool:
    """Whether `net` was built with a restoration head (`model.net.restore=true`)."""
    return getattr(net, "restore_head", None) is not None


def restoration_outputs(
    net: nn.Module, image: torch.Tensor, clamp: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The outputs of a restoration network as exported and predicted with: mask logits
    (N, 1, H, W), the restored photo (N, 3, H, W) in [0, 1] (unclamped with `clamp`
    false, as training measures it) and the mark's opacity (N, 1, H, W)."""
    logits, colour, opacity = net.forward_restore(image)
    return logits, unblend(image, colour.to(image.dtype), opacity.to(image.dtype), clamp), opacity
