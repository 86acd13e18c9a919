"""Pictures of predictions: image | truth | prediction, masks tinted red."""

from __future__ import annotations

import numpy as np

_RED = np.array([255, 30, 30], np.float32)


def tint(image: np.ndarray, mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """uint8 (H, W, 3) `image` with the 0/1 (H, W) `mask` tinted red."""
    a = alpha * mask.astype(np.float32)[..., None]
    return (image.astype(np.float32) * (1 - a) + _RED * a).astype(np.uint8)


def overlay_row(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image with 0/1 (H, W) truth and prediction -> uint8 (H, 3W, 3)."""
    img = image.astype(np.float32)

    def tint(mask: np.ndarray) -> np.ndarray:
        a = 0.6 * mask.astype(np.float32)[..., None]
        return img * (1 - a) + _RED * a

    return np.concatenate([img, tint(truth), tint(pred)], axis=1).astype(np.uint8)


def stack_rows(rows: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Rows of different widths, one under the other, padded black on the right."""
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
