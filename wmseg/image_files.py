"""Read user image files as wmseg sees them: upright, 8-bit RGB, within a pixel limit.

Every image or mask wmseg reads from a user's folder goes through here, so that:
- EXIF orientation is applied (a phone photo is read the way it is shown, and its
  size is reported rotated too);
- 16-bit and 32-bit greyscale (`I;16`, `I`) are scaled to 8 bits, not clipped to white,
  and float images (`F`) are read as [0, 1];
- an image over the pixel limit (the readers' `max_pixels` argument; None: Pillow's
  decompression-bomb limit) is a `DataError` naming the file, like any other unreadable
  file, never a crash;
- a mask marks a watermark wherever it is non-zero (0/255 and 0/1 masks alike);
- only the decoders of the formats wmseg documents are used (`FORMATS`).
No Lightning, no torch.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from wmseg.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# The only decoders a file or an upload is opened with, whatever its name says: Pillow
# would otherwise try every format it knows (an EPS named .jpg runs Ghostscript). Pillow's
# JPEG decoder also opens the multi-picture JPEGs (MPO) of phones.
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")

# Pillow's own error limit (twice its warning limit): about 179 megapixels.
DEFAULT_MAX_PIXELS = 178_956_970
_ORIENTATION = 0x0112  # the EXIF tag
_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height


def pixel_limit(max_pixels: int | None) -> int:
    """The checked pixel limit `max_pixels` stands for (None: the default)."""
    if max_pixels is None:
        return DEFAULT_MAX_PIXELS
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ValueError(f"max_image_pixels must be a whole number > 0 or null, got {max_pixels!r}")
    return max_pixels


def allow_pixels_in_process(max_pixels: int | None) -> None:
    """Raise Pillow's own decompression-bomb guard to `max_pixels` when that is larger.

    Only for a process a wmseg command owns (wmseg-predict, wmseg-serve, train.py,
    evaluate.py): Pillow's guard is a process global, and a limit above it could not be
    honoured otherwise. Libraries built in Python pass `max_pixels` to the readers instead.
    """
    limit = pixel_limit(max_pixels)
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit


def _check_size(path: Path, im: Image.Image, limit: int) -> None:
    if im.width * im.height > limit:
        raise DataError(
            path,
            f"image is {im.width}x{im.height} = {im.width * im.height:,} pixels, over the limit of "
            f"{limit:,} (a guard against decompression bombs); raise max_image_pixels if you trust it",
        )


@contextmanager
def open_checked(
    path: Path, what: str = "image", data: bytes | None = None, max_pixels: int | None = None
) -> Iterator[Image.Image]:
    """The opened (not yet decoded) image at `path` (or in `data`, named `path` in errors),
    within `max_pixels` (None: the default limit); any failure to read it, inside the
    block too, is a DataError naming the file."""
    limit = pixel_limit(max_pixels)
    try:
        with Image.open(path if data is None else io.BytesIO(data), formats=FORMATS) as im:
            _check_size(path, im, limit)
            yield im
    except UnidentifiedImageError as err:
        raise DataError(
            path,
            f"empty, damaged or not a JPEG, PNG, WebP, BMP or TIFF {what} (the formats wmseg reads); "
            "replace, convert or remove it",
        ) from err
    except Image.DecompressionBombError as err:
        # Pillow's own guard (at twice its limit) quotes its doubled figure: say ours.
        pillow = 2 * (Image.MAX_IMAGE_PIXELS or limit)
        raise DataError(
            path,
            f"image is over the limit of {min(limit, pillow):,} pixels "
            "(a guard against decompression bombs); raise max_image_pixels if you trust it",
        ) from err
    except (OSError, ValueError, SyntaxError) as err:
        if isinstance(err, DataError):
            raise
        # An upload is read from memory: name it, not the buffer object Pillow quotes.
        reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", path.name, str(err))
        raise DataError(path, f"unreadable {what} ({reason}); replace or remove the file") from err


def image_size(path: str | Path, max_pixels: int | None = None) -> tuple[int, int]:
    """(H, W) as shown (EXIF orientation applied), from the header without decoding pixels."""
    path = Path(path)
    with open_checked(path, "image", max_pixels=max_pixels) as im:
        h, w = im.height, im.width
        try:
            turned = im.getexif().get(_ORIENTATION) in _TRANSPOSED
        except Exception:  # a broken EXIF block: the pixels may still decode
            turned = False
    return (w, h) if turned else (h, w)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8; high-bit-depth greyscale scaled to 8 bits."""
    if im.mode.startswith("I;16") or im.mode == "I":
        high = np.asarray(im, dtype=np.int64)  # I;16 holds 0..65535; I the same, in int32
        grey = ((np.clip(high, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        grey = (np.clip(np.nan_to_num(np.asarray(im, np.float32)), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(im.convert("RGB"))


def upright_rgb(im: Image.Image) -> np.ndarray:
    """The pixels of an image from `open_checked` as shown: (H, W, 3) uint8 RGB."""
    return _to_rgb8(ImageOps.exif_transpose(im))


def read_rgb(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """The image at `path` as shown: (H, W, 3) uint8 RGB; DataError naming it if unusable
    or over `max_pixels` (None: the default limit)."""
    path = Path(path)
    with open_checked(path, "image", max_pixels=max_pixels) as im:
        return upright_rgb(im)


def read_mask(
    path: str | Path, size: tuple[int, int] | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """The mask at `path` as (H, W) uint8, 1 = watermark wherever the file is non-zero;
    with `size`, DataError naming the mask unless its (H, W) (as shown) equals `size`."""
    path = Path(path)
    with open_checked(path, "mask", max_pixels=max_pixels) as im:
        mask = np.asarray(ImageOps.exif_transpose(im).convert("L"))  # clips 16-bit values, never zeroes one
    if size is not None:
        check_mask_size(path, mask.shape, size)
    return (mask != 0).astype(np.uint8)


def check_mask_size(path: Path, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """Raise DataError naming the mask when its (H, W) differs from its image's."""
    if tuple(mask_size) != tuple(image_size):
        (mh, mw), (ih, iw) = mask_size, image_size
        raise DataError(path, f"mask is {mw}x{mh} but its image is {iw}x{ih}; masks must match")
