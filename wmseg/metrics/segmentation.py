"""Evaluation metrics for binary watermark masks, on torchmetrics. No Lightning.

Per-image mean IoU and F1 (the protocol of the visible-watermark papers) are taken
over images that hold a watermark; images with an empty mask are measured by their
false-positive pixel rate instead, where IoU is undefined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.classification import BinaryPrecisionRecallCurve, BinaryStatScores
from torchmetrics.functional.classification import binary_f1_score, binary_jaccard_index

from wmseg.errors import ConfigError


def f1_best_threshold(
    precision: torch.Tensor, recall: torch.Tensor, thresholds: torch.Tensor
) -> tuple[float, float]:
    """(threshold, F1) where a precision-recall curve's F1 is highest.

    Thresholds above every probability have no predicted pixels: torchmetrics gives NaN
    precision there, and argmax would pick the NaN. They score F1 0.
    """
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    f1 = torch.nan_to_num(f1, nan=0.0)[: len(thresholds)]  # the last PR point has no threshold
    best = int(f1.argmax())
    return float(thresholds[best]), float(f1[best])


# What a stored threshold can maximise: F1 pooled over pixels, or per-image mean IoU.
CALIBRATE_METRICS = ("f1", "mean_iou")


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of one shape (a stack pools its pixels); 1 when both are empty."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def mean_mask_iou(masks: np.ndarray, reference: np.ndarray) -> float:
    """Mean over images (the first axis) of each mask's IoU with its reference mask."""
    return float(np.mean([mask_iou(m, r) for m, r in zip(masks, reference, strict=True)]))


def check_calibrate_metric(metric: object, key: str) -> str:
    """`metric` if it is one of CALIBRATE_METRICS, else a ConfigError naming `key`."""
    if metric not in CALIBRATE_METRICS:
        raise ConfigError(
            f"{key}={metric}: use f1 or mean_iou (pooled F1, or per-image mean IoU: "
            "the metric the stored threshold maximises)"
        )
    return metric


def image_iou_curve(prob: torch.Tensor, truth: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """IoU of one image's mask `prob >= t` against `truth` at each of `thresholds` (sorted), (T,).

    One pass over the pixels: each is counted in the bucket of the largest threshold it
    reaches, and a reversed cumulative sum gives the counts at or above every threshold.
    """
    prob = prob.detach().float()  # under AMP it may come in half precision
    thresholds = thresholds.to(prob.device, torch.float32)
    bucket = torch.bucketize(prob.flatten(), thresholds, right=True)  # 0: below every threshold
    pos = truth.flatten().bool()
    n = len(thresholds) + 1
    tp = torch.bincount(bucket[pos], minlength=n).flip(0).cumsum(0).flip(0)[1:]
    fp = torch.bincount(bucket[~pos], minlength=n).flip(0).cumsum(0).flip(0)[1:]
    # union = tp + fp + fn = marked pixels + fp
    return tp.double() / (pos.sum() + fp).clamp_min(1).double()


class MeanImageIoUCurve(Metric):
    """Per-image mean IoU over images with a mark, at each threshold: the measure the real
    sets are scored by, so its best threshold is the one to store for them (images with an
    empty mask have no IoU; their false positives are measured apart)."""

    full_state_update = False

    def __init__(self, thresholds: torch.Tensor | int = 99, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(thresholds, int):
            thresholds = torch.linspace(0.0, 1.0, thresholds)
        self.register_buffer("thresholds", thresholds.float())
        self.add_state(
            "iou_sum", default=torch.zeros(len(thresholds), dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("images", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, prob: torch.Tensor, truth: torch.Tensor) -> None:
        """`prob` and `truth` (N, ...) hold N images."""
        for p, t in zip(prob, truth, strict=True):
            if t.any():
                self.iou_sum += image_iou_curve(p, t, self.thresholds)
                self.images += 1

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean IoU at each threshold, thresholds); zeros where no image had a mark."""
        return self.iou_sum / self.images.clamp_min(1), self.thresholds


def best_threshold(values: torch.Tensor, thresholds: torch.Tensor) -> tuple[float, float]:
    """(threshold, value) where `values` (one per threshold) is highest."""
    best = int(values.argmax())
    return float(thresholds[best]), float(values[best])


@dataclass
class ImageScore:
    group: str
    name: str
    iou: float | None  # None where the mask is empty
    f1: float | None
    fp_rate: float | None  # only where the mask is empty


@dataclass
class SegmentationMeter:
    """Accumulates one model's predictions against truth, image by image.

    Example:
        >>> m = SegmentationMeter(threshold=0.5)
        >>> truth = np.zeros((4, 4), np.uint8); truth[:2] = 1
        >>> m.update("set", "a", truth.astype(np.float32), truth)
        >>> round(m.compute()["mean_iou"], 3)
        1.0
    """

    threshold: float
    pr_bins: int = 101
    images: list[ImageScore] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stats = BinaryStatScores(threshold=self.threshold)
        self.pr = BinaryPrecisionRecallCurve(thresholds=self.pr_bins)
        self.iou_curve = MeanImageIoUCurve(thresholds=self.pr_bins)

    def update(self, group: str, name: str, prob: np.ndarray, truth: np.ndarray) -> ImageScore:
        """`prob` (H, W) sigmoid output, `truth` (H, W) 0/1."""
        p, t = (
            torch.from_numpy(np.ascontiguousarray(prob, np.float32)),
            torch.from_numpy(truth.astype(np.int64)),
        )
        self.stats.update(p, t)
        self.pr.update(p, t)
        self.iou_curve.update(p[None], t[None])
        if t.any():
            iou = float(binary_jaccard_index(p, t, threshold=self.threshold))
            f1 = float(binary_f1_score(p, t, threshold=self.threshold))
            score = ImageScore(group, name, iou, f1, None)
        else:
            score = ImageScore(group, name, None, None, float((p >= self.threshold).float().mean()))
        self.images.append(score)
        return score

    def compute(self) -> dict[str, float | int | None]:
        tp, fp, _tn, fn, _ = (int(x) for x in self.stats.compute())
        f1_threshold, best_f1 = f1_best_threshold(*self.pr.compute())
        iou_threshold, best_iou = best_threshold(*self.iou_curve.compute())
        marked = [s for s in self.images if s.iou is not None]
        empty = [s for s in self.images if s.iou is None]
        return {
            "images": len(self.images),
            "images_with_watermark": len(marked),
            "threshold": self.threshold,
            "mean_iou": float(np.mean([s.iou for s in marked])) if marked else None,
            "mean_f1": float(np.mean([s.f1 for s in marked])) if marked else None,
            "global_iou": tp / max(tp + fp + fn, 1),
            "precision": tp / max(tp + fp, 1),
            "recall": tp / max(tp + fn, 1),
            "empty_fp_rate": float(np.mean([s.fp_rate for s in empty])) if empty else None,
            "best_f1_threshold": f1_threshold,
            "best_f1": best_f1,
            # the threshold where mean_iou would be highest (null without marked images)
            "best_mean_iou_threshold": iou_threshold if marked else None,
            "best_mean_iou": best_iou if marked else None,
        }

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        precision, recall, thresholds = self.pr.compute()
        return precision.numpy(), recall.numpy(), thresholds.numpy()
