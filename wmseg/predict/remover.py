"""Detect -> mask -> remove, for one image in memory, or (`run`) for whole folders, lists
and videos through `wmseg.predict.batch_run`.

Example:
    >>> from wmseg.predict import Remover
    >>> remover = Remover("model.int8.onnx")  # doctest: +SKIP
    >>> clean, mask = remover.clean(image)  # uint8 (H, W, 3) -> same, bool (H, W)  # doctest: +SKIP
    >>> summary = remover.run("photos/", "cleaned/", remove=True)  # doctest: +SKIP

No Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wmseg.errors import UserError
from wmseg.image_files import pixel_limit
from wmseg.inference.loading import load_predictor
from wmseg.inference.predictor import Predictor, restores
from wmseg.predict.batch_run import BatchRun, RunOptions
from wmseg.predict.detect import DetectOptions, Detector
from wmseg.predict.inpaint import Inpainter, OpenCVInpainter, dilate, fill


class Remover:
    """A detector (and an inpainter) loaded once, for any number of images and runs.

    `model`: a .onnx or .ckpt path, a Predictor, or None for the bundled model.
    `threshold`: None takes the model's own. `margin`: px the mask grows by before
    inpainting. `inpainter`: None is OpenCV's Telea. `remover`: `inpaint` paints over the
    mask; `restore` (a model with a restoration head) un-blends the mark from the photo
    under the mask and inpaints only where the mark's opacity is at least `opaque`
    (nothing left there to recover), handing over from one to the other across the
    opacity band `opaque - 0.1 .. opaque`; `auto` restores with a model that has the head
    and inpaints with one that has not. `max_pixels`: the largest image `run` reads
    (width x height; None: the default limit), a guard against decompression bombs."""

    def __init__(
        self,
        model: str | Path | Predictor | None = None,
        *,
        threshold: float | None = None,
        margin: int = 5,
        inpainter: Inpainter | None = None,
        detect: DetectOptions | None = None,
        device: str | None = None,
        threads: int = 0,
        precision: str = "int8",
        remover: str = "auto",
        opaque: float = 0.9,
        max_pixels: int | None = None,
    ) -> None:
        if remover not in REMOVERS:
            raise UserError(f"remover={remover}: use one of {', '.join(REMOVERS)}")
        if not 0.0 < opaque <= 1.0:
            raise UserError(f"opaque={opaque}: give the mark opacity (0, 1] above which to inpaint")
        try:
            self.max_pixels = pixel_limit(max_pixels)
        except ValueError as err:
            raise UserError(str(err)) from None
        if model is None or isinstance(model, str | Path):
            self.predictor = load_predictor(model, device=device, threads=threads, precision=precision)
        else:
            self.predictor = model
        self.threshold = float(self.predictor.threshold if threshold is None else threshold)
        self.margin, self.opaque = margin, opaque
        self.restore = remover == "restore" or (remover == "auto" and restores(self.predictor))
        self.detector = Detector(self.predictor, detect, restore=self.restore)
        self._inpainter = inpainter

    @property
    def inpainter(self) -> Inpainter:
        if self._inpainter is None:
            self._inpainter = OpenCVInpainter()
        return self._inpainter

    def probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.detector.probabilities(images)

    def maps(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """(C, H, W) per image: the probabilities, then (remover=restore) the restored
        photo and the mark's opacity (Detector.maps)."""
        return self.detector.maps(images)

    def mask(self, image: np.ndarray) -> np.ndarray:
        """bool (H, W): where `image` (uint8 (H, W, 3) RGB) holds a watermark."""
        return self.probabilities([image])[0] >= self.threshold

    def remove(self, image: np.ndarray, mask: np.ndarray, maps: np.ndarray | None = None) -> np.ndarray:
        """`image` with the watermark under `mask` (grown by `margin`) removed; every other
        pixel exactly as it was. remover=restore takes the restored photo from `maps` (this
        image's `maps`; computed when None) and inpaints only its opaque part."""
        region = dilate(mask, self.margin)
        if not self.restore:
            return fill(self.inpainter, image, region)
        if maps is None:
            maps = self.maps([image])[0]
        return restore(image, region, maps, self.opaque, self.inpainter)

    def clean(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cleaned image, detected mask) for one uint8 (H, W, 3) RGB image."""
        maps = self.maps([image])[0]
        mask = maps[0] >= self.threshold
        return self.remove(image, mask, maps), mask

    def run(self, input: str | Path, output: str | Path, **options: Any) -> dict[str, Any]:
        """Process `input` (image, video, folder, or .txt list) into `output`; see RunOptions.
        Returns the summary also written to `<output>/summary.json`."""
        return BatchRun(self, input, output, RunOptions(**options)).execute()


REMOVERS = ("auto", "inpaint", "restore")
# The opacity band below `opaque` across which removal hands over from un-blending to
# inpainting (a hard switch leaves a seam where the predicted opacity crosses it).
HANDOVER = 0.1


def restore(
    image: np.ndarray, region: np.ndarray, maps: np.ndarray, opaque: float, inpainter: Inpainter
) -> np.ndarray:
    """`image` (uint8 (H, W, 3)) with the restored photo of `maps` ((5, H, W): probability,
    RGB in [0, 1], opacity) inside `region` (bool (H, W)), the inpainter's fill where the
    opacity there is at least `opaque`, and the input bit for bit outside `region`."""
    if maps.shape[0] < 4 or maps.shape[1:] != image.shape[:2]:
        raise ValueError(f"restoration maps {maps.shape} do not fit the image {image.shape}")
    if not region.any():
        return image.copy()
    restored = np.clip(maps[1:4].transpose(1, 2, 0), 0.0, 1.0) * 255.0
    out = np.where(region[..., None], np.rint(restored).astype(np.uint8), image)
    if opaque >= 1.0:  # never inpaint
        return out
    # 0 below the band (un-blend), 1 from `opaque` up (inpaint), linear between.
    low = max(0.0, opaque - HANDOVER)
    share = np.clip((maps[4] - low) / max(opaque - low, 1e-6), 0.0, 1.0) * region
    if not share.any():
        return out
    painted = fill(inpainter, out, share > 0).astype(np.float32)
    mixed = (1.0 - share[..., None]) * restored + share[..., None] * painted
    return np.where(region[..., None], np.rint(mixed).astype(np.uint8), image)
