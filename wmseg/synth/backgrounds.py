"""Clean background images: bundled photos, a user's folder, procedural textures."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from wmseg.errors import DataError
from wmseg.image_files import IMAGE_SUFFIXES, read_rgb
from wmseg.synth.photo_bank import photo_bank
from wmseg.synth.sources import check_sources

log = logging.getLogger(__name__)


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

# `backgrounds=heldout`: bundled photos the default training bank never uses (a garage
# and a portrait: clutter, chrome, faces), for validation on scenes a model has not seen.
HELDOUT = "heldout"


def _as_rgb(img: np.ndarray, max_side: int | None = _MAX_SIDE) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    im = Image.fromarray(np.ascontiguousarray(img[..., :3].astype(np.uint8)))
    if max_side:
        # Crops are resized down to training size anyway; smaller sources resize faster.
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(im)


def _skimage_photos() -> list[np.ndarray]:
    import skimage.data

    return [np.asarray(getattr(skimage.data, name)()) for name in _SKIMAGE_PHOTOS]


def _sklearn_photos() -> list[np.ndarray]:
    # scikit-learn's two sample photos (a temple, a flower; CC BY 2.0, see its
    # datasets/images/README.txt): landscape and foliage detail the scikit-image set lacks.
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as err:
        raise ImportError(
            "data.photo_sources names sklearn, but scikit-learn is not installed: "
            "pip install scikit-learn, or drop sklearn from data.photo_sources"
        ) from err
    return list(load_sample_images().images)


# Photographs from the Machine Vision Toolbox's data package (mvtb-data, MIT licence per
# its metadata): its author's street, campus, park, garden, building and aerial shots,
# the real scene content (foliage, brick, windows, sky, crowds) the scikit-image set has
# little of. Left out: well-known third-party test images (lena, Mona Lisa, Where's
# Wally, a BSDS photo), pictures with legible text (signs, umbrellas, lettered models),
# calibration targets and renders, one of each stereo pair, and `campus/holdout`, which
# the package itself sets apart.
_MVTB_PHOTOS = (
    *(
        f"campus/P1070{n}.png"
        for n in (491, 493, 494, 495, 496, 497, 500, 501, 504, 505, 506, 507, 509, 510, 512, 514, 515)
    ),
    *(f"flowers{n}.png" for n in range(1, 10)),
    *(f"tomato_{n}.png" for n in (14, 35, 54, 124)),
    "church.png",
    "eiffel-1.png",
    "eiffel-2.png",
    "notre-dame.png",
    "parks.png",
    "road.png",
    "rocks2-l.png",
    "roof.png",
    "walls-l.png",
    "building2-1.png",
    "street.png",
    "mosaic/aerial-08.png",
)


def mvtb_photos(names: Sequence[str] = _MVTB_PHOTOS) -> list[np.ndarray]:
    """The photos `names` (paths under mvtb-data's `images/`) as RGB arrays, in that order."""
    try:
        root = files("mvtbdata") / "images"
    except ModuleNotFoundError as err:
        raise ImportError(
            "data.photo_sources names mvtb, but mvtb-data is not installed: "
            "pip install mvtb-data, or drop mvtb from data.photo_sources"
        ) from err
    photos = []
    for name in names:
        with Image.open(str(root / name)) as im:
            photos.append(np.asarray(im.convert("RGB")))
    return photos


# Packages whose bundled photos can serve as the default training backgrounds
# (`data.photo_sources`); none of them holds a held-out photo.
PHOTO_SOURCES = {"skimage": _skimage_photos, "sklearn": _sklearn_photos, "mvtb": mvtb_photos}
# `data.photo_sources` may also name the photo bank's training split (wmseg.synth.photo_bank),
# and `data.val_backgrounds` its validation split.
BANK = "bank"
BANK_VAL = "bank_val"


class _Chain(Sequence[np.ndarray]):
    """Several sequences of photos read as one, in order."""

    def __init__(self, *parts: Sequence[np.ndarray]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.ends = np.cumsum([len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        part = int(np.searchsorted(self.ends, index, side="right"))
        return self.parts[part][index - (int(self.ends[part - 1]) if part else 0)]


@lru_cache(maxsize=4)
def bundled_photos(
    sources: tuple[str, ...] = ("skimage",), max_side: int | None = _MAX_SIDE
) -> tuple[np.ndarray, ...]:
    """The sample photos of the packages in `sources` (see `PHOTO_SOURCES`) as uint8 RGB
    arrays, in a fixed order, each shrunk to at most `max_side` px (None: as shipped)."""
    names = check_sources("data.photo_sources", sources, (*PHOTO_SOURCES, BANK))
    return tuple(_as_rgb(img, max_side) for name in names if name != BANK for img in PHOTO_SOURCES[name]())


@lru_cache(maxsize=2)
def heldout_photos(max_side: int | None = _MAX_SIDE) -> dict[str, np.ndarray]:
    """Photos that ship in installed packages but never in the training bank: the
    scikit-image stereo motorcycle pair and matplotlib's Grace Hopper portrait."""
    import matplotlib
    import skimage.data

    left, right, _ = skimage.data.stereo_motorcycle()
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(hopper) as im:
        portrait = np.asarray(im.convert("RGB"))
    photos = {"motorcycle_left": left, "motorcycle_right": right, "grace_hopper": portrait}
    return {name: _as_rgb(img, max_side) for name, img in photos.items()}


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


def folder_signature(folder: Path | None) -> Any:
    """What a cache keyed on a backgrounds folder hashes: its path and every file's name,
    size and modification time (None for no folder)."""
    if folder is None:
        return None
    files = list_images(folder)
    stats = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return {"folder": str(folder.resolve()), "files": hashlib.sha256(repr(stats).encode()).hexdigest()}


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


def _jitter(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A random photometric change (channel order, grey, gamma, contrast, brightness, tint):
    16 bundled photos become many, so a model cannot learn them by heart."""
    x = img.astype(np.float32)
    if rng.random() < 0.3:
        x = x[..., rng.permutation(3)]
    if rng.random() < 0.15:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    x = 255.0 * (x / 255.0) ** float(np.exp(rng.uniform(-0.5, 0.5)))
    mean = x.mean()
    x = (x - mean) * float(rng.uniform(0.6, 1.3)) + mean + float(rng.uniform(-30, 30))
    x = x * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _leaf_shape(rng: np.random.Generator, size: int, blur: float | None = None) -> np.ndarray:
    """Coverage (0-1 float, (size, size, 1)) of a random ellipse, box or polygon."""
    shape = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(shape)
    cx, cy = rng.uniform(0, size, 2)
    r = size * rng.uniform(0.1, 0.6)
    kind = int(rng.integers(3))
    if kind == 0:
        rx, ry = r, r * rng.uniform(0.4, 1.0)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    else:
        if kind == 1:  # a box at a random angle
            angles = rng.uniform(0, 2 * np.pi) + np.arange(4) * np.pi / 2
            radii = np.full(4, r)
        else:  # a polygon of 3-8 corners
            n = int(rng.integers(3, 9))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = r * rng.uniform(0.5, 1.0, n)
        corners = [
            (float(cx + a * np.cos(t)), float(cy + a * np.sin(t))) for a, t in zip(radii, angles, strict=True)
        ]
        draw.polygon(corners, fill=255)
    if blur is not None:
        shape = shape.filter(ImageFilter.GaussianBlur(blur))
    elif rng.random() < 0.5:  # soft edges, as out-of-focus objects have
        shape = shape.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3.0))))
    return np.asarray(shape, np.float32)[..., None] / 255.0


def _shade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Soft light and shadow: a smooth brightness field, or a blurred translucent tinted
    shape. Part of the clean scene (never labelled): soft tints are not marks."""
    size = img.shape[0]
    x = img.astype(np.float32)
    if rng.random() < 0.5:
        field = procedural_background(rng, size).mean(axis=2, keepdims=True) / 255.0
        x = x * (float(rng.uniform(0.5, 0.8)) + float(rng.uniform(0.3, 0.6)) * field)
    else:
        a = _leaf_shape(rng, size, blur=float(rng.uniform(4.0, 12.0))) * float(rng.uniform(0.15, 0.5))
        x = x * (1.0 - a) + a * rng.uniform(0, 255, 3).astype(np.float32)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class BackgroundOptions:
    """What `BackgroundBank.sample` draws besides plain photo crops (see there); checked
    on construction, naming the config key."""

    procedural_fraction: float = 0.2
    collage_fraction: float = 0.0
    color_jitter: float = 0.0
    min_zoom: float = 1.0
    shading: float = 0.0
    clutter: float = 0.0
    # Packages whose sample photos are the bundled training photos (unused with a folder).
    photo_sources: tuple[str, ...] = ("skimage",)
    # The bundled training photos' longest side (None: as shipped). 512 keeps crops cheap,
    # but then a crop near the output size is a magnified thumbnail, softer than any real
    # photo at its own resolution. Held-out validation photos stay at 512 either way.
    photo_max_side: int | None = _MAX_SIDE
    # The photo bank's folder when photo_sources names `bank` or val_backgrounds is
    # `bank_val` (None: $WMSEG_PHOTO_BANK or the checkout's data/photo_bank).
    photo_bank: str | None = None

    def __post_init__(self) -> None:
        sources = check_sources("data.photo_sources", self.photo_sources, (*PHOTO_SOURCES, BANK))
        object.__setattr__(self, "photo_sources", sources)
        for key in ("procedural_fraction", "collage_fraction", "color_jitter", "shading", "clutter"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"data.{key} must be within [0, 1], got {getattr(self, key)}")
        if not 0.0 < self.min_zoom <= 1.0:
            raise ValueError(f"data.min_zoom must be within (0, 1], got {self.min_zoom}")
        if self.photo_max_side is not None and self.photo_max_side < 64:
            raise ValueError(
                f"data.photo_max_side must be >= 64 px or null (photos as shipped), got {self.photo_max_side}"
            )


class BackgroundBank:
    """Random background crops, drawn from bundled photos (and the photo bank's training
    split when `photo_sources` names `bank`), from the held-out bundled photos
    (`folder="heldout"`, see `heldout_photos`; `./heldout` names a folder), from the photo
    bank's validation split (`folder="bank_val"`) or from a user's folder.

    `procedural_fraction` of the samples are procedural textures. `collage_fraction` are
    dead-leaves collages: a photo crop with 2-8 shapes cut from other crops laid over it,
    which gives endless new scenes with real photo texture. `color_jitter` is the share of
    photo crops that get a random photometric change, and `min_zoom` < 1 lets crops be
    smaller than the output (magnified up to 1/min_zoom), like photos seen at full size.
    `shading` is the share of backgrounds that get soft light and shadow (a smooth
    brightness field or a blurred translucent tint). `clutter` is the share of collages
    that also get 10-40 small leaves of whole shrunken photo crops: dense, fine detail at
    many scales (shelves, crowds, foliage), which a model must not call text. Defaults
    (0, 0, 1, 0, 0) draw nothing extra, so older samples stay the same. `photo_sources`
    names the packages whose sample photos are the bundled photos (`PHOTO_SOURCES`).

    Example:
        >>> bank = BackgroundBank()  # bundled photos + procedural textures
        >>> bank.sample(np.random.default_rng(0), 128).shape
        (128, 128, 3)
    """

    def __init__(
        self, folder: str | Path | None = None, max_pixels: int | None = None, **options: Any
    ) -> None:
        """`max_pixels`: the largest file read from a user's folder (None: the default
        limit); a larger one is skipped and named like an unreadable one."""
        self.options = BackgroundOptions(**options)
        self.max_pixels = max_pixels
        self.heldout = folder == HELDOUT
        self.bank_val = folder == BANK_VAL
        # A missing bank fails here, naming its install command; a folder replaces the
        # bundled photos, and the bank with them.
        if (BANK in self.options.photo_sources and folder is None) or self.bank_val:
            photo_bank(self.options.photo_bank)
        named = folder is None or self.heldout or self.bank_val
        self.folder = None if named else Path(folder).expanduser()
        self.files: Sequence[Path] = list_images(self.folder) if self.folder else ()
        self.skipped: set[Path] = set()

    def _photos(self) -> Sequence[np.ndarray]:
        if self.heldout:
            return tuple(heldout_photos().values())
        if self.bank_val:
            return photo_bank(self.options.photo_bank).photos("val")
        bundled = bundled_photos(self.options.photo_sources, self.options.photo_max_side)
        if BANK not in self.options.photo_sources:
            return bundled
        return _Chain(bundled, photo_bank(self.options.photo_bank).photos("train"))

    def __len__(self) -> int:
        return len(self.files) if self.folder else len(self._photos())

    def _load(self, rng: np.random.Generator) -> np.ndarray:
        if self.folder is None:
            photos = self._photos()
            return photos[int(rng.integers(len(photos)))]
        # A random file; past an unreadable one, the next in order: every file is tried once.
        first = int(rng.integers(len(self.files)))
        for step in range(len(self.files)):
            path = self.files[(first + step) % len(self.files)]
            if path in self.skipped:
                continue
            try:
                return read_rgb(path, self.max_pixels)
            except DataError as err:
                self.skipped.add(path)
                log.warning(
                    "skipping unreadable background %s (%s); %d skipped so far",
                    path,
                    err.reason,
                    len(self.skipped),
                )
        raise OSError(f"no readable image left in backgrounds folder {self.folder}")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A random (size, size, 3) uint8 background."""
        opts = self.options
        if rng.random() < opts.procedural_fraction:
            return procedural_background(rng, size)
        if opts.collage_fraction > 0 and rng.random() < opts.collage_fraction:
            out = self._collage(rng, size)
        else:
            out = self._crop(rng, size)
        if opts.shading > 0 and rng.random() < opts.shading:
            out = _shade(rng, out)
        return out

    def _crop(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A photo crop at a random scale, maybe flipped (and jittered), resized to `size`."""
        img = self._load(rng)
        h, w = img.shape[:2]
        # Crop side between the output size (or less, with min_zoom) and the whole short side.
        side = int(rng.uniform(min(size * self.options.min_zoom, min(h, w)), min(h, w) + 1))
        side = max(side, 8)
        y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = Image.fromarray(img[y : y + side, x : x + side])
        if side != size:
            crop = crop.resize((size, size), Image.Resampling.BILINEAR)
        out = np.asarray(crop)
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if self.options.color_jitter > 0 and rng.random() < self.options.color_jitter:
            out = _jitter(rng, out)
        return np.ascontiguousarray(out)

    def _collage(self, rng: np.random.Generator, size: int) -> np.ndarray:
        out = self._crop(rng, size).astype(np.float32)
        for _ in range(int(rng.integers(2, 9))):
            leaf = procedural_background(rng, size) if rng.random() < 0.15 else self._crop(rng, size)
            a = _leaf_shape(rng, size)
            out = out * (1.0 - a) + leaf.astype(np.float32) * a
        if self.options.clutter > 0 and rng.random() < self.options.clutter:
            out = self._clutter(rng, out)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def _clutter(self, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
        """Lay 10-40 small shapes (8-40 % of the side) over `out` (float32, changed in
        place), each filled with a shrunken window of one of three photo crops."""
        size = out.shape[0]
        sources = [Image.fromarray(self._crop(rng, size)) for _ in range(3)]
        for _ in range(int(rng.integers(10, 41))):
            side = max(4, int(size * rng.uniform(0.08, 0.4)))
            window = int(rng.uniform(side, size + 1))
            y, x = (int(v) for v in rng.integers(0, size - window + 1, 2))
            src = sources[int(rng.integers(3))].crop((x, y, x + window, y + window))
            leaf = np.asarray(src.resize((side, side), Image.Resampling.BILINEAR), np.float32)
            a = _leaf_shape(rng, side)
            # keep the shape inside its box: a leaf is an object, not a cut-off slab
            a[[0, -1]] = 0.0
            a[:, [0, -1]] = 0.0
            y, x = (int(v) for v in rng.integers(0, size - side + 1, 2))
            region = out[y : y + side, x : x + side]
            out[y : y + side, x : x + side] = region * (1.0 - a) + leaf * a
        return out
