"""Evaluation metrics for binary watermark masks, on torchmetrics. No Lightning.

Per-image mean IoU and F1 (the protocol of the visible-watermark papers) are taken
over images that hold a watermark; images with an empty mask are measured by their
false-positive pixel rate instead, where IoU is undefined.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torchmetrics.classification import BinaryPrecisionRecallCurve, BinaryStatScores
from torchmetrics.functional.classification import binary_f1_score, binary_jaccard_index


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

    def update(self, group: str, name: str, prob: np.ndarray, truth: np.ndarray) -> ImageScore:
        """`prob` (H, W) sigmoid output, `truth` (H, W) 0/1."""
        p, t = (
            torch.from_numpy(np.ascontiguousarray(prob, np.float32)),
            torch.from_numpy(truth.astype(np.int64)),
        )
        self.stats.update(p, t)
        self.pr.update(p, t)
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
        best_threshold, best_f1 = f1_best_threshold(*self.pr.compute())
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
            "best_f1_threshold": best_threshold,
            "best_f1": best_f1,
        }

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        precision, recall, thresholds = self.pr.compute()
        return precision.numpy(), recall.numpy(), thresholds.numpy()
