"""The watermark detector: an smp Unet with input normalisation inside the network."""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn

from wmseg.models.pretrained import input_statistics, load_encoder_weights
from wmseg.models.restoration import MAX_OPACITY


class WatermarkUnet(nn.Module):
    """Maps RGB in [0, 1], (N, 3, H, W) with H, W multiples of `stride`, to logits (N, 1, H, W).

    Normalisation lives in buffers, so an exported graph takes raw [0, 1] pixels. `mean`
    and `std` default to the statistics `encoder_weights` were trained with (a named
    source's own, ImageNet's for a file); set both for weights trained otherwise.

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
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        freeze_encoder_bn: bool = False,
        restore: bool = False,
    ) -> None:
        super().__init__()
        if freeze_encoder_bn and not encoder_weights:
            raise ValueError(
                "model.net.freeze_encoder_bn=true keeps the encoder's pretrained BatchNorm "
                "statistics, but model.net.encoder_weights is null: name pretrained weights "
                "or set model.net.freeze_encoder_bn=false"
            )
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
        # Before this default, every net used ImageNet's: wmseg.models.checkpoint
        # rebuilds checkpoints of that time (no `mean` key in their config) that way.
        mean, std = input_statistics(encoder_weights, mean, std)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.stride = 2**encoder_depth
        # The restoration head: the mark's colour (3) and opacity (1) per pixel, from the
        # same decoder features as the mask (`forward_restore`); `forward` never runs it,
        # so a mask-only caller pays nothing.
        self.restore_head = None
        if restore:
            ch = list(decoder_channels)[:encoder_depth][-1]
            self.restore_head = nn.Sequential(
                nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(ch, 4, 3, padding=1)
            )
            # Start at "no mark" (opacity 0.017): the first un-blended photo is the input,
            # not one pushed out of [0, 1] by a half-opaque grey mark.
            nn.init.constant_(self.restore_head[2].bias[3:], -4.0)
        self.freeze_encoder_bn = freeze_encoder_bn
        self.train()  # applies freeze_encoder_bn: Lightning keeps modules' modes as it finds them

    @property
    def encoder(self) -> nn.Module:
        return self.unet.encoder

    def train(self, mode: bool = True) -> WatermarkUnet:
        """With `freeze_encoder_bn`, the encoder's BatchNorm layers stay in eval mode.

        They then normalise with the pretrained (ImageNet) running statistics in training
        as at inference, instead of drifting to the synthetic batches' statistics; their
        scale and shift still learn. Meant for a pretrained encoder.
        """
        super().train(mode)
        if mode and self.freeze_encoder_bn:
            for module in self.unet.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.unet((image - self.mean) / self.std)  # (N, 1, H, W) logits

    def forward_restore(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask logits (N, 1, H, W), the mark's colour (N, 3, H, W) in [0, 1] and its
        opacity (N, 1, H, W) in [0, MAX_OPACITY]: `unblend(image, colour, opacity)` is
        the photo under the mark."""
        if self.restore_head is None:
            raise ValueError("this network has no restoration head: build it with model.net.restore=true")
        features = self.unet.encoder((image - self.mean) / self.std)
        decoded = self.unet.decoder(features)
        out = self.restore_head(decoded)
        return self.unet.segmentation_head(decoded), out[:, :3].sigmoid(), MAX_OPACITY * out[:, 3:].sigmoid()
