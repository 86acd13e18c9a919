"""The small interface a batch run and the video pipeline need from whatever cleans the
images (a `Remover`): they depend on this, not on the remover itself. No Lightning."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from wmseg.inference.predictor import Predictor
from wmseg.predict.detect import Detector


class Cleaner(Protocol):
    threshold: float  # probability from which a pixel is a mark
    max_pixels: int  # the largest image (width x height) read
    predictor: Predictor
    detector: Detector

    def maps(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """(C, H, W) float maps per uint8 (H, W, 3) image; channel 0 the mark probability."""
        ...

    def remove(self, image: np.ndarray, mask: np.ndarray, maps: np.ndarray | None = None) -> np.ndarray:
        """`image` with the mark under `mask` removed, every other pixel as it was."""
        ...
