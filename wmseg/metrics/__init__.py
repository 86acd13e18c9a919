"""Evaluation metrics (torchmetrics), no Lightning."""

from wmseg.metrics.segmentation import (
    CALIBRATE_METRICS,
    ImageScore,
    MeanImageIoUCurve,
    SegmentationMeter,
    best_threshold,
    check_calibrate_metric,
    f1_best_threshold,
    image_iou_curve,
    mask_iou,
    mean_mask_iou,
)

__all__ = [
    "CALIBRATE_METRICS",
    "ImageScore",
    "MeanImageIoUCurve",
    "SegmentationMeter",
    "best_threshold",
    "check_calibrate_metric",
    "f1_best_threshold",
    "image_iou_curve",
    "mask_iou",
    "mean_mask_iou",
]
