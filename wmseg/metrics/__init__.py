"""Evaluation metrics (torchmetrics), no Lightning."""

from wmseg.metrics.segmentation import ImageScore, SegmentationMeter

__all__ = ["ImageScore", "SegmentationMeter"]
