"""Evaluation metrics (torchmetrics), no Lightning."""

from wmseg.metrics.segmentation import (
    ImageScore,
    MeanImageIoUCurve,
    SegmentationMeter,
    best_threshold,
    f1_best_threshold,
    image_iou_curve,
)

__all__ = [
    "ImageScore",
    "MeanImageIoUCurve",
    "SegmentationMeter",
    "best_threshold",
    "f1_best_threshold",
    "image_iou_curve",
]
