"""Networks, losses and schedules (no Lightning); `segmenter` holds the LightningModule."""

from wmseg.models.losses import BCEDiceLoss
from wmseg.models.unet import WatermarkUnet

__all__ = ["BCEDiceLoss", "WatermarkUnet"]
