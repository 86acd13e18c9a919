"""Images in and out of prediction: read upright with what is needed to write them back
the way they came (format, EXIF orientation, JPEG tables, alpha). No Lightning, no torch."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin

from wmseg.atomic import write_bytes_atomic
from wmseg.image_files import open_checked, upright_rgb

_ORIENTATION = 0x0112


@dataclass
class SourceImage:
    path: Path
    rgb: np.ndarray  # (H, W, 3) uint8, upright (EXIF orientation applied)
    format: str  # "JPEG", "PNG", ...: the cleaned image is written the same way
    orientation: int = 1  # the EXIF orientation the file is stored with
    exif: bytes | None = None
    jpeg: dict | None = None  # quantization tables and subsampling, to keep the quality
    alpha: np.ndarray | None = None  # (H, W) uint8, upright, for RGBA and LA files


def read_source(path: str | Path, data: bytes | None = None, max_pixels: int | None = None) -> SourceImage:
    """The image at `path` (or the file's bytes `data`, e.g. an upload named `path`) for
    prediction; DataError naming it if it cannot be used or is over `max_pixels` (None:
    the default limit)."""
    path = Path(path)
    with open_checked(path, "image", data, max_pixels) as im:  # one open: pixel limit, bit depth, orientation
        rgb = upright_rgb(im)
        orientation = int(im.getexif().get(_ORIENTATION, 1) or 1)
        jpeg = None
        if im.format == "JPEG":
            jpeg = {"qtables": im.quantization, "subsampling": JpegImagePlugin.get_sampling(im)}
        alpha = None
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            alpha = np.asarray(ImageOps.exif_transpose(im.convert("RGBA")).getchannel("A"))
        return SourceImage(path, rgb, im.format or "PNG", orientation, im.info.get("exif"), jpeg, alpha)


def _stored_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Undo `ImageOps.exif_transpose`: the upright `array` as the file stores it."""
    if orientation in (2, 4):  # mirrored / flipped: their own inverses
        return array[:, ::-1] if orientation == 2 else array[::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 5:  # transpose
        return array.swapaxes(0, 1)
    if orientation == 6:  # shown turned 90 degrees clockwise: turn back
        return np.rot90(array, 1)
    if orientation == 7:  # transverse
        return np.rot90(array, 2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, -1)
    return array


def encode_like(source: SourceImage, rgb: np.ndarray) -> bytes:
    """`rgb` (upright, the source's size) encoded as the source was: same format, stored
    orientation and EXIF (viewers show it as they showed the source), JPEG tables and
    subsampling (the same quality), alpha channel."""
    stored = np.ascontiguousarray(_stored_orientation(rgb, source.orientation))
    if source.alpha is not None:
        alpha = _stored_orientation(source.alpha, source.orientation)
        stored = np.dstack([stored, alpha])
    image = Image.fromarray(stored)
    buf = io.BytesIO()
    options: dict = {}
    if source.exif:
        options["exif"] = source.exif
    fmt = source.format if source.format in ("JPEG", "PNG", "WEBP", "TIFF", "BMP") else "PNG"
    if fmt == "JPEG":
        image = image.convert("RGB")
        options |= source.jpeg or {"quality": 95}
    elif fmt == "WEBP":
        options["lossless"] = True
    elif fmt == "BMP":
        image = image.convert("RGB")
        options.pop("exif", None)
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def write_like(source: SourceImage, rgb: np.ndarray, path: Path) -> Path:
    return write_bytes_atomic(path, encode_like(source, rgb))


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
