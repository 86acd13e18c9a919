"""Real image/mask pairs in `<root>/images/<name>.<ext>` + `<root>/masks/<name>.png`. No Lightning."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from wmseg.synth.backgrounds import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A file that cannot be used; `path` names it."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class Item(NamedTuple):
    group: str  # which folder (or split) it came from
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8, 1 = watermark


def read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(path, f"unreadable image ({err}); replace or remove the file") from err


def check_mask_size(path: Path, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """Raise DataError naming the mask when its (H, W) differs from its image's."""
    if mask_size != image_size:
        (mh, mw), (ih, iw) = mask_size, image_size
        raise DataError(path, f"mask is {mw}x{mh} but its image is {iw}x{ih}; masks must match")


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A binary mask (255 or any value > 127 = watermark) of exactly `size` (H, W)."""
    try:
        with Image.open(path) as im:
            mask = np.array(im.convert("L"))
    except (OSError, ValueError) as err:
        raise DataError(path, f"unreadable mask ({err}); replace or remove the file") from err
    check_mask_size(path, mask.shape, size)
    return (mask > 127).astype(np.uint8)


class FolderPairs:
    """The pairs of one folder, read on demand at native size.

    Example:
        >>> pairs = FolderPairs("../shared/eval/aucourde")  # doctest: +SKIP
        >>> item = pairs[0]; item.image.shape, item.mask.shape  # doctest: +SKIP
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        images_dir, masks_dir = self.root / "images", self.root / "masks"
        if not images_dir.is_dir() or not masks_dir.is_dir():
            raise FileNotFoundError(
                f"{self.root} must hold images/ and masks/<image name>.png (README, 'Folder data')"
            )
        self.images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise FileNotFoundError(f"{images_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.masks_dir = masks_dir
        self.group = self.root.name

    def __len__(self) -> int:
        return len(self.images)

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) from the file header, without decoding the pixels."""
        path = self.images[index]
        try:
            with Image.open(path) as im:
                return im.height, im.width
        except (OSError, ValueError) as err:
            raise DataError(path, f"unreadable image ({err})") from err

    def mask_path(self, index: int) -> Path:
        """The mask file of image `index`; DataError naming the image when it is missing."""
        path = self.images[index]
        mask_path = self.masks_dir / f"{path.stem}.png"
        if not mask_path.is_file():
            raise DataError(path, f"no mask {mask_path.name} in {self.masks_dir}; add it or remove the image")
        return mask_path

    def __getitem__(self, index: int) -> Item:
        path, mask_path = self.images[index], self.mask_path(index)
        image = read_image(path)
        return Item(self.group, path.name, image, read_mask(mask_path, image.shape[:2]))

    def __iter__(self) -> Iterator[Item]:
        return (self[i] for i in range(len(self)))
