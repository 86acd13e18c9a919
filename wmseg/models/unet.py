"""The watermark detector: an smp Unet with input normalisation inside the network."""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn

from wmseg.models.pretrained import load_encoder_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WatermarkUnet(nn.Module):
    """Maps RGB in [0, 1], (N, 3, H, W) with H, W multiples of `stride`, to logits (N, 1, H, W).

    Normalisation lives in buffers, so an exported graph takes raw [0, 1] pixels.

    Example:
        >>> net = WatermarkUnet("resnet18", decoder_channels=(32, 16, 8, 8, 8))
        >>> net(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """

    def __init__(
        self,
        encoder_name: str = "timm-tf_efficientnet_lite0",
        encoder_weights: str | None = None,
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        # smp fetches named weights from the internet; we load our own offline instead.
        self.unet = smp.Unet(
            encoder_name=encoder_name,
            encoder_weights=None,
            encoder_depth=encoder_depth,
            decoder_channels=list(decoder_channels)[:encoder_depth],
            classes=1,
        )
        if encoder_weights:
            load_encoder_weights(self.unet.encoder, encoder_weights)
        # EfficientNet encoders keep the classifier's 1x1 head, which the Unet never
        # uses: unused parameters break DDP and waste optimizer state.
        for name in ("conv_head", "bn2"):
            if isinstance(getattr(self.unet.encoder, name, None), nn.Module):
                delattr(self.unet.encoder, name)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.stride = 2**encoder_depth

    @property
    def encoder(self) -> nn.Module:
        return self.unet.encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.unet((image - self.mean) / self.std)  # (N, 1, H, W) logits
