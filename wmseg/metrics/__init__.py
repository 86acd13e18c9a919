"""Evaluation metrics (torchmetrics), no Lightning."""

from wmseg.metrics.segmentation import ImageScore, SegmentationMeter, f1_best_threshold

__all__ = ["ImageScore", "SegmentationMeter", "f1_best_threshold"]
