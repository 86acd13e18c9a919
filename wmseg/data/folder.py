"""Real image/mask pairs in `<root>/images/<name>.<ext>` + `<root>/masks/<name>.png`. No Lightning."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from wmseg.errors import ConfigError, DataError
from wmseg.image_files import IMAGE_SUFFIXES, check_mask_size, image_size, read_mask
from wmseg.image_files import read_rgb as read_image

__all__ = ["DataError", "FolderPairs", "Item", "check_mask_size", "read_image", "read_mask"]

log = logging.getLogger(__name__)


class Item(NamedTuple):
    group: str  # which folder (or split) it came from
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8, 1 = watermark


POOLED = "all"  # the report's row of all sets together


def unique_labels(roots: list[str | Path]) -> list[str]:
    """A row label per folder: its name, or as many trailing path parts as tell it apart
    from the others (`a/set`, `b/set`); never the pooled row's name."""
    parts = [Path(r).expanduser().resolve().parts for r in roots]
    if len(set(parts)) < len(parts):
        raise ConfigError(f"data.root lists a folder twice: {[str(r) for r in roots]}")
    labels = []
    for own in parts:
        for k in range(1, len(own) + 1):
            label = Path(*own[-k:]).as_posix()
            others = [Path(*p[-k:]).as_posix() for p in parts if p != own]
            if label != POOLED and label not in others:
                break
        labels.append(label)
    return labels


class FolderPairs:
    """The pairs of one folder, read on demand at native size.

    Example:
        >>> pairs = FolderPairs("../shared/eval/aucourde")  # doctest: +SKIP
        >>> item = pairs[0]; item.image.shape, item.mask.shape  # doctest: +SKIP
    """

    def __init__(self, root: str | Path, group: str | None = None, max_pixels: int | None = None) -> None:
        """`max_pixels`: the largest image read (None: the default limit); larger ones are
        a DataError naming the file."""
        self.root = Path(root).expanduser()
        self.max_pixels = max_pixels
        images_dir, masks_dir = self.root / "images", self.root / "masks"
        if not images_dir.is_dir() or not masks_dir.is_dir():
            missing = "images/" if not images_dir.is_dir() else "masks/"
            raise DataError(
                self.root,
                f"has no {missing}: a data folder holds images/ and masks/<image name>.png "
                "(README, 'Folder data')",
            )
        self.images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise DataError(images_dir, f"holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.masks_dir = masks_dir
        self.group = group or self.root.name

    def __len__(self) -> int:
        return len(self.images)

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) from the file header, without decoding the pixels."""
        return image_size(self.images[index], self.max_pixels)

    def mask_path(self, index: int) -> Path:
        """The mask file of image `index`; DataError naming the image when it is missing."""
        path = self.images[index]
        mask_path = self.masks_dir / f"{path.stem}.png"
        if not mask_path.is_file():
            raise DataError(path, f"no mask {mask_path.name} in {self.masks_dir}; add it or remove the image")
        return mask_path

    def __getitem__(self, index: int) -> Item:
        path, mask_path = self.images[index], self.mask_path(index)
        image = read_image(path, self.max_pixels)
        return Item(self.group, path.name, image, read_mask(mask_path, image.shape[:2], self.max_pixels))

    def __iter__(self) -> Iterator[Item]:
        return (self[i] for i in range(len(self)))
