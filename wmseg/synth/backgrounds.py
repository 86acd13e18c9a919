"""Clean background images: bundled photos, a user's folder, procedural textures."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Natural photos bundled inside scikit-image (no download). Images that contain
# text of their own ("page", "text") are left out: unlabelled scene text would
# teach the model to ignore text.
_SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
    "cell",
)


_MAX_SIDE = 512


@lru_cache(maxsize=1)
def bundled_photos() -> tuple[np.ndarray, ...]:
    """The scikit-image sample photos as uint8 RGB arrays."""
    import skimage.data

    photos = []
    for name in _SKIMAGE_PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        im = Image.fromarray(np.ascontiguousarray(img[..., :3].astype(np.uint8)))
        # Crops are resized down to training size anyway; smaller sources resize faster.
        im.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.Resampling.LANCZOS)
        photos.append(np.asarray(im))
    return tuple(photos)


def list_images(folder: str | Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted so every process sees one order."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"backgrounds folder {root} does not exist: set data.backgrounds to a folder of "
            "clean photos, or to null for the bundled default"
        )
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(
            f"backgrounds folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
            "point data.backgrounds at a folder of clean photos, or set it to null"
        )
    return files


def procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth multi-octave colour texture with a gradient, uint8 (size, size, 3)."""
    out = np.zeros((size, size, 3), np.float32)
    amp, total = 1.0, 0.0
    for cells in (2, 4, 8, 16, 32)[: int(rng.integers(2, 6))]:
        grid = rng.random((cells, cells, 3), dtype=np.float32)
        layer = Image.fromarray((grid * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        out += amp * np.asarray(layer, np.float32)
        total += amp
        amp *= float(rng.uniform(0.3, 0.7))
    out /= total
    # Stretch contrast and tint, so backgrounds range from flat to busy.
    lo, hi = np.percentile(out, (2, 98))
    out = (out - lo) / max(hi - lo, 1.0) * float(rng.uniform(60, 255)) + float(rng.uniform(0, 120))
    ramp = np.linspace(-1, 1, size, dtype=np.float32)[None, :, None] * rng.uniform(-60, 60, 3)
    out = out + (ramp if rng.random() < 0.5 else ramp.transpose(1, 0, 2))
    return np.clip(out, 0, 255).astype(np.uint8)


class BackgroundBank:
    """Random background crops, drawn from bundled photos or from a user's folder.

    Example:
        >>> bank = BackgroundBank()  # bundled photos + procedural textures
        >>> bank.sample(np.random.default_rng(0), 128).shape
        (128, 128, 3)
    """

    def __init__(self, folder: str | Path | None = None, procedural_fraction: float = 0.2) -> None:
        self.folder = None if folder is None else Path(folder).expanduser()
        self.files: Sequence[Path] = list_images(self.folder) if self.folder else ()
        self.procedural_fraction = procedural_fraction
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files) if self.folder else len(bundled_photos())

    def _load(self, rng: np.random.Generator) -> np.ndarray:
        if self.folder is None:
            photos = bundled_photos()
            return photos[int(rng.integers(len(photos)))]
        for _ in range(len(self.files)):
            path = self.files[int(rng.integers(len(self.files)))]
            if path in self.skipped:
                continue
            try:
                with Image.open(path) as im:
                    return np.asarray(im.convert("RGB"))
            except (OSError, ValueError) as err:
                self.skipped.add(path)
                log.warning(
                    "skipping unreadable background %s (%s); %d skipped so far",
                    path,
                    err,
                    len(self.skipped),
                )
        raise OSError(f"no readable image left in backgrounds folder {self.folder}")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A random (size, size, 3) uint8 crop at a random scale, maybe flipped."""
        if rng.random() < self.procedural_fraction:
            return procedural_background(rng, size)
        img = self._load(rng)
        h, w = img.shape[:2]
        # Crop side between the output size and the whole short side, then resize.
        side = int(rng.uniform(min(size, min(h, w)), min(h, w) + 1))
        y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = Image.fromarray(img[y : y + side, x : x + side])
        if side != size:
            crop = crop.resize((size, size), Image.Resampling.BILINEAR)
        out = np.asarray(crop)
        if rng.random() < 0.5:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)
