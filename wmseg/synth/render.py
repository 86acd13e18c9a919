"""Render a watermarked image and its ground-truth mask from (config, seed, index)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont
from scipy.ndimage import gaussian_filter

from wmseg.synth.artwork import artwork_layers, check_artwork_sources
from wmseg.synth.backgrounds import BackgroundBank
from wmseg.synth.fonts import cjk_fonts, covered, latin_fonts
from wmseg.synth.logos import icon_glyphs, logo_tile, qr_code
from wmseg.synth.scene import SCENE_OBJECTS, draw_scene_object, perspective_coefficients, plane_corners
from wmseg.synth.text import cjk_phrase, id_phrase, random_phrase, scene_phrase, url_phrase


@dataclass(frozen=True)
class SynthConfig:
    """How watermarks look. Ranges are (low, high), drawn uniformly per mark."""

    size: int = 128
    clean_fraction: float = 0.1  # images with no watermark and an empty mask
    tiled_fraction: float = 0.25  # stock-photo style diagonal grids
    max_marks: int = 2  # single marks per image, 1..max_marks
    opacity: tuple[float, float] = (0.35, 1.0)
    # How opacity is drawn from that range: "linear" (uniformly) or "log" (uniformly in
    # its logarithm: as many marks between 0.15 and 0.39 as between 0.39 and 1, the faint
    # end that low-visibility logos and stock grids sit at).
    opacity_scale: str = "linear"
    # A mark's fill is, with this probability, not one colour but a smooth two-colour
    # gradient (half) or the colours of another background crop (half): multi-coloured
    # logos and image-like marks. 0 draws nothing, so older samples stay the same.
    fill_prob: float = 0.0
    # Fraction of the crop side: a 128 px crop stands for part of a larger photo, so
    # text is drawn at the stroke widths (2-8 px) it has in photos at native size.
    font_size: tuple[float, float] = (0.12, 0.45)
    max_rotation: float = 45.0  # degrees, either way
    outline_prob: float = 0.3
    shadow_prob: float = 0.15
    # Logos: a mark is an icon or emblem with this probability, and then has a site name
    # beside it with `logo_text_prob`. Corner signatures: a single mark sits small and
    # level near a corner with `corner_prob`. 0 draws nothing: older samples stay the same.
    logo_prob: float = 0.0
    logo_text_prob: float = 0.5
    corner_prob: float = 0.0
    # A text mark is Chinese, Japanese or Korean with `cjk_prob`; a logo is a QR-code-like
    # square with `qr_prob`. 0 draws nothing, so older samples stay the same.
    cjk_prob: float = 0.0
    qr_prob: float = 0.0
    # Where the artwork comes from (wmseg.synth.fonts, wmseg.synth.logos): text faces
    # "matplotlib" (10 DejaVu and STIX faces) and "open_fonts" (81 faces of 11 open
    # families from the font-* packages); icons "dejavu" (its symbols and dingbats) and
    # "qtawesome" (Font Awesome, Phosphor and Remix icons, brand logos among them). The
    # defaults draw what older samples drew.
    font_sources: tuple[str, ...] = ("matplotlib",)
    icon_sources: tuple[str, ...] = ("dejavu",)
    # A pixel is watermark where the composite differs from the clean image by at
    # least this much (0-255, largest channel): the mark's visible footprint.
    visibility_threshold: float = 10.0
    # Gaussian sigma (px) applied to that difference before the threshold: a tolerance
    # band around strokes, as hand-made and difference-derived real masks have. 0 = none.
    footprint_blur: float = 0.0
    # How the per-channel difference becomes one value before the threshold: "max" (the
    # channel that moves most) or "mean" (the mean absolute difference, as the
    # difference-derived real masks of ../shared/eval/README.md are made; stricter on
    # coloured marks).
    footprint_channels: str = "max"
    # A mark is embossed with this probability: its edges lit on one side and shaded on
    # the other, its fill faint or absent (the bevel look of many photographers' marks).
    # 0 draws nothing, so older samples stay the same.
    emboss_prob: float = 0.0
    # A background gets text that belongs to the scene (a sign, a plate, a label: opaque
    # text on a panel, in perspective, lit and focused like the photo) with this
    # probability. It is drawn before any mark, so it is part of the clean image and never
    # in the mask: a negative that teaches the model not to fire on scene text. 0 draws
    # nothing, so older samples stay the same.
    scene_text_prob: float = 0.0
    # A background gets 1..`max_scene_objects` objects of the scene that look like marks
    # (wmseg.synth.scene: chrome lettering and emblems, embossed metal, printed labels and
    # packaging, screens, licence plates) with this probability: in perspective, lit by
    # the photo, maybe occluded, drawn before any mark and so never in the mask. 0 draws
    # nothing, so older samples stay the same.
    scene_object_prob: float = 0.0
    scene_objects: tuple[str, ...] = SCENE_OBJECTS
    max_scene_objects: int = 2
    # A scene sign or object is, with this probability, seen face-on and close: 60-98 %
    # of the crop, within 5 degrees of level, barely warped (a shop sign or a label
    # filling the frame looks most like an overlay). 0 draws nothing.
    scene_large_prob: float = 0.0
    # Marks that look like scene: a single mark is, with `banner_prob`, a site address on
    # a translucent banner plate across the top or bottom of the image; with `id_text_prob`
    # an image ID ('#123456789') small in a corner; with `plain_logo_prob` a white or black
    # translucent logo with no outline or shadow. A tiled mark gets, with
    # `line_grid_prob`, the thin diagonal lines stock agencies draw between its rows. 0
    # draws nothing, so older samples stay the same.
    banner_prob: float = 0.0
    id_text_prob: float = 0.0
    plain_logo_prob: float = 0.0
    line_grid_prob: float = 0.0
    # A mark sits on a plate with this probability: a translucent filled region behind it
    # (a rectangle, a rounded badge, a pill, a circle, or a banner bar across the image),
    # solid or a gradient, at an opacity drawn from `plate_opacity`; with
    # `plate_alone_prob` the plate is drawn alone, with no text or logo on it. The mask
    # stays the visible footprint, the plate's filled area included. Tiled marks tile
    # their plates. 0 draws nothing, so older samples stay the same.
    plate_prob: float = 0.0
    plate_alone_prob: float = 0.2
    plate_opacity: tuple[float, float] = (0.15, 0.8)
    plate_fill_prob: float = 0.5  # a plate's fill is a gradient or a photo crop, not one colour
    # A mark is a piece of coloured artwork with this probability (wmseg.synth.artwork:
    # "tuxpaint" clip art, "emoji", "procedural" multi-part vector logos), in its own
    # colours or, with `artwork_mono_prob`, as a one-colour silhouette; with
    # `logo_text_prob` a site name sits beside it. 0 draws nothing, so older samples stay
    # the same.
    artwork_prob: float = 0.0
    artwork_sources: tuple[str, ...] = ("procedural",)
    artwork_mono_prob: float = 0.4
    # A single mark is, with this probability, a small corner signature drawn at the
    # pixel size it has at full resolution: its font `signature_size` (a fraction) of the
    # height of a whole photo drawn from `signature_image_height` (px), as a 1-3 % mark on
    # a 512-2048 px photo that inference sees at native size. 0 draws nothing.
    signature_prob: float = 0.0
    signature_size: tuple[float, float] = (0.01, 0.03)
    signature_image_height: tuple[int, int] = (512, 2048)
    # A clean (unmarked) image is, with this probability, the most finely textured of
    # `texture_candidates` background crops (stone, bark, foliage, fabric: what fires
    # false positives), by its mean absolute Laplacian. 0 draws nothing.
    texture_clean_prob: float = 0.0
    texture_candidates: int = 4
    # Probabilities of the blend modes in BLEND_MODES order (normal, multiply, screen,
    # overlay), drawn per mark. All-normal draws nothing, so older samples stay the same.
    blend_probs: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)
    noise_std: tuple[float, float] = (0.0, 3.0)
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 95)
    # Degradations of the image only, after the mask is taken: a colour shift (per-channel
    # gain and offset), a down-and-up resize by a factor in `resize_scale`, a Gaussian
    # blur with sigma in `blur_sigma`. 0 draws nothing, so older samples stay the same.
    color_shift_prob: float = 0.0
    resize_prob: float = 0.0
    resize_scale: tuple[float, float] = (0.5, 0.9)
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.0)

    def __post_init__(self) -> None:
        # A bad value fails here, naming its key, not later inside a DataLoader worker.
        if self.size < 32 or self.max_marks < 1:
            raise ValueError(
                f"data.synth.size must be >= 32 and max_marks >= 1, got {self.size}, {self.max_marks}"
            )
        probs = self.blend_probs
        if len(probs) != len(BLEND_MODES) or min(probs) < 0 or sum(probs) <= 0:
            raise ValueError(
                f"data.synth.blend_probs={list(probs)}: give {len(BLEND_MODES)} probabilities >= 0 "
                f"(not all 0) for {', '.join(BLEND_MODES)}"
            )
        for key, allowed in (("footprint_channels", FOOTPRINT_CHANNELS), ("opacity_scale", OPACITY_SCALES)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"data.synth.{key}={getattr(self, key)!r}: use one of {', '.join(allowed)}")
        for key in ("opacity", "plate_opacity"):
            lo, hi = getattr(self, key)
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(
                    f"data.synth.{key} must be (low, high) with 0 < low <= high <= 1, got {[lo, hi]}"
                )
        lo, hi = self.signature_size
        h_lo, h_hi = self.signature_image_height
        if not 0.0 < lo <= hi <= 0.2 or not 64 <= h_lo <= h_hi:
            raise ValueError(
                "data.synth.signature_size must be (low, high) with 0 < low <= high <= 0.2 and "
                f"signature_image_height (low, high) px, 64 <= low <= high; got {[lo, hi]}, {[h_lo, h_hi]}"
            )
        unknown = [k for k in self.scene_objects if k not in SCENE_OBJECTS]
        if unknown or not self.scene_objects or self.max_scene_objects < 1:
            raise ValueError(
                f"data.synth.scene_objects={list(self.scene_objects)} (max_scene_objects="
                f"{self.max_scene_objects}): use one or more of {', '.join(SCENE_OBJECTS)}, and at least 1"
            )
        if self.texture_candidates < 1:
            raise ValueError(f"data.synth.texture_candidates must be >= 1, got {self.texture_candidates}")
        for key in PROBABILITIES:
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"data.synth.{key} must be within [0, 1], got {getattr(self, key)}")


BLEND_MODES = ("normal", "multiply", "screen", "overlay")
FOOTPRINT_CHANNELS = ("max", "mean")
OPACITY_SCALES = ("linear", "log")
PROBABILITIES = (
    "clean_fraction", "tiled_fraction", "outline_prob", "shadow_prob", "logo_prob", "logo_text_prob",
    "corner_prob", "cjk_prob", "qr_prob", "emboss_prob", "scene_text_prob", "fill_prob", "jpeg_prob",
    "color_shift_prob", "resize_prob", "blur_prob", "plate_prob", "plate_alone_prob",
    "plate_fill_prob", "artwork_prob", "artwork_mono_prob", "signature_prob", "texture_clean_prob",
    "scene_object_prob", "scene_large_prob", "banner_prob", "id_text_prob", "plain_logo_prob",
    "line_grid_prob",
)  # fmt: skip
PLATE_SHAPES = ("rectangle", "rounded", "pill", "circle", "banner")


def blend(base: np.ndarray, color: np.ndarray, mode: str) -> np.ndarray:
    """The colour a fully opaque mark of `color` gives over `base` (float 0-255), as image
    editors define the modes; opacity then mixes it with `base`."""
    if mode == "normal":
        return np.broadcast_to(color, base.shape)
    if mode == "multiply":
        return base * color / 255.0
    if mode == "screen":
        return 255.0 - (255.0 - base) * (255.0 - color) / 255.0
    if mode == "overlay":
        return np.where(
            base < 128, 2 * base * color / 255.0, 255.0 - 2 * (255.0 - base) * (255.0 - color) / 255.0
        )
    raise ValueError(f"blend mode {mode!r}: use one of {', '.join(BLEND_MODES)}")


def draw_opacity(rng: np.random.Generator, cfg: SynthConfig) -> float:
    """One mark's opacity within `cfg.opacity`, uniform on `cfg.opacity_scale`."""
    lo, hi = cfg.opacity
    if cfg.opacity_scale == "log":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return float(rng.uniform(lo, hi))


def texture(image: np.ndarray) -> float:
    """How finely textured an image is: the mean absolute Laplacian of its grey levels."""
    grey = np.asarray(image, np.float32).mean(axis=2)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(np.abs(lap).mean())


class MarkSpec(NamedTuple):
    """One mark before placement: its layers (coverage tile (mode L), colour ((3,) or a
    (size, size, 3) fill), opacity), drawn in order over the image and sharing `box`
    (left, top, right, bottom around the mark's centre); its font size in px, angle in
    degrees, blend mode, look-alike style (None, banner, id, plain_logo) and whether it
    sits near a corner."""

    layers: list[tuple[Image.Image, np.ndarray, float]]
    box: tuple[int, ...]
    # The box that spaces and places the mark: `box` without an emboss bevel's padding.
    extent: tuple[int, ...]
    px: int
    angle: float
    mode: str
    style: str | None
    corner: bool


class Sample(NamedTuple):
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8, 1 = watermark


class MarkTargets(NamedTuple):
    """The marks of a sample as one layer over the photo: the composite is
    `(1 - opacity) clean + opacity colour` wherever `known` (before degradation).
    Normal-blend marks give it exactly; pixels a multiply, screen or overlay mark touches
    are not known (a coloured multiply or screen scales each channel by its own factor and
    an overlay's result depends on the photo: no single opacity and colour reproduce them)."""

    opacity: np.ndarray  # (H, W) float32 in [0, 1]; 0 where no mark
    colour: np.ndarray  # (H, W, 3) float32, 0-255; 0 where no mark
    known: np.ndarray  # (H, W) bool


@lru_cache(maxsize=512)
def _font(path: Path, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), px)


def _rand_color(rng: np.random.Generator) -> np.ndarray:
    # Real marks are mostly white, black or grey; the rest any colour.
    k = rng.random()
    if k < 0.35:
        return np.full(3, rng.uniform(215, 255), np.float32)
    if k < 0.6:
        return np.full(3, rng.uniform(0, 50), np.float32)
    if k < 0.75:
        return np.full(3, rng.uniform(60, 200), np.float32)
    return rng.uniform(0, 255, 3).astype(np.float32)


def _text_tile(text: str, font: ImageFont.FreeTypeFont, stroke: int, box: tuple[int, ...]) -> Image.Image:
    """Anti-aliased coverage (mode L) of `text` centred in `box` = font.getbbox(anchor="mm")."""
    left, top, right, bottom = box
    tile = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(tile).text(
        (-left, -top), text, fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    return tile


def _emboss_layers(
    rng: np.random.Generator,
    fill: Image.Image,
    box: tuple[int, ...],
    px: int,
    color: np.ndarray,
    opacity: float,
) -> tuple[list[tuple[Image.Image, np.ndarray, float]], tuple[int, ...]]:
    """Layers of an embossed mark: a faint fill (0-40 % of `opacity`), then white light and
    black shade where the blurred coverage slopes towards or away from a random light
    direction. Tiles are padded so the bevel's rim fits; returns the layers and their box."""
    pad = max(2, px // 10)
    height = gaussian_filter(np.pad(np.asarray(fill, np.float32) / 255.0, pad), max(0.6, px / 25))
    gy, gx = np.gradient(height)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    slope = gx * math.cos(theta) + gy * math.sin(theta)
    slope /= max(float(np.abs(slope).max()), 1e-6)  # the steepest edge gets the full opacity
    light = Image.fromarray((np.clip(slope, 0, 1) * 255 + 0.5).astype(np.uint8))
    shade = Image.fromarray((np.clip(-slope, 0, 1) * 255 + 0.5).astype(np.uint8))
    padded = Image.fromarray(np.pad(np.asarray(fill), pad))
    layers = [
        (padded, color, opacity * float(rng.uniform(0.0, 0.4))),
        (light, np.full(3, rng.uniform(225, 255), np.float32), opacity),
        (shade, np.full(3, rng.uniform(0, 40), np.float32), opacity * float(rng.uniform(0.6, 1.0))),
    ]
    return layers, (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad)


# Panel and text colours of common signs and labels; None: a random panel colour.
_SIGN_COLOURS = (
    ((245, 245, 240), (20, 20, 20)),
    ((245, 245, 240), (190, 25, 30)),
    ((245, 245, 240), (20, 50, 140)),
    ((0, 110, 60), (250, 250, 250)),
    ((20, 60, 150), (250, 250, 250)),
    ((200, 30, 35), (250, 250, 250)),
    ((250, 205, 20), (15, 15, 15)),
    ((25, 25, 25), (250, 250, 250)),
    ((25, 25, 25), (250, 200, 30)),
    ((110, 70, 40), (240, 230, 200)),
    (None, None),
)


class WatermarkSynth:
    """Text watermarks composited over clean backgrounds; a pure function of (seed, index).

    Example:
        >>> synth = WatermarkSynth(SynthConfig(size=64))
        >>> s = synth.render(seed=0, index=3)
        >>> s.image.shape, s.mask.shape
        ((64, 64, 3), (64, 64))
    """

    def __init__(self, config: SynthConfig | None = None, backgrounds: BackgroundBank | None = None):
        self.config = config or SynthConfig()
        self.backgrounds = backgrounds or BackgroundBank()
        self.fonts = latin_fonts(tuple(self.config.font_sources))
        icon_glyphs(tuple(self.config.icon_sources))  # a bad source fails here, not in a worker
        if self.config.artwork_prob > 0:
            check_artwork_sources(self.config.artwork_sources)

    def render(self, seed: int, index: int) -> Sample:
        """Sample `index` of stream `seed`."""
        return self._render(seed, index, with_clean=False)[0]

    def render_with_clean(self, seed: int, index: int) -> tuple[Sample, np.ndarray]:
        """Sample `index` of stream `seed` (the same as `render`'s) and its photo without
        the marks, (H, W, 3) uint8, degraded exactly as the image: the restoration target."""
        sample, clean, _ = self._render(seed, index, with_clean=True)
        assert clean is not None
        return sample, clean

    def render_targets(self, seed: int, index: int) -> tuple[Sample, np.ndarray, MarkTargets]:
        """`render_with_clean`'s sample and clean photo, and the marks' opacity and colour
        (`MarkTargets`): what a restoration head learns directly."""
        sample, clean, targets = self._render(seed, index, with_clean=True, track=True)
        assert clean is not None and targets is not None
        return sample, clean, targets

    def clean_background(
        self, rng: np.random.Generator, texture_pick: bool = True
    ) -> tuple[np.ndarray, bool | None]:
        """The photo before any mark, float32 (size, size, 3), with the scene's own signs
        and objects drawn in; and whether the image gets marks when that was drawn first
        (texture-leaning clean images choose their background by it), else None.
        `texture_pick=False` leaves that choice out (a layer bank makes it at compose time)."""
        cfg = self.config
        marked = None
        if cfg.texture_clean_prob > 0 and texture_pick:
            # Whether the image stays clean is drawn first: it chooses the background.
            marked = rng.random() >= cfg.clean_fraction
            if not marked and rng.random() < cfg.texture_clean_prob:
                crops = [self.backgrounds.sample(rng, cfg.size) for _ in range(cfg.texture_candidates)]
                clean = max(crops, key=texture).astype(np.float32)
            else:
                clean = self.backgrounds.sample(rng, cfg.size).astype(np.float32)
        else:
            clean = self.backgrounds.sample(rng, cfg.size).astype(np.float32)
        if cfg.scene_text_prob > 0 and rng.random() < cfg.scene_text_prob:
            self._scene_text(rng, clean)
        if cfg.scene_object_prob > 0 and rng.random() < cfg.scene_object_prob:
            for _ in range(int(rng.integers(1, cfg.max_scene_objects + 1))):
                other = self.backgrounds.sample(rng, cfg.size)
                large = cfg.scene_large_prob > 0 and rng.random() < cfg.scene_large_prob
                draw_scene_object(rng, clean, cfg.scene_objects, self.fonts, other, large)
        return clean, marked

    def _render(
        self, seed: int, index: int, with_clean: bool, track: bool = False
    ) -> tuple[Sample, np.ndarray | None, MarkTargets | None]:
        cfg = self.config
        rng = np.random.default_rng([seed, index])
        clean, marked = self.clean_background(rng)
        image = clean.copy()
        size = cfg.size
        # The marks as one layer: premultiplied colour and opacity laid over in order.
        layer = None
        if track:
            layer = {
                "alpha": np.zeros((size, size, 1), np.float32),
                "premult": np.zeros((size, size, 3), np.float32),
                "known": np.ones((size, size), bool),
            }
        if marked is None:
            marked = rng.random() >= cfg.clean_fraction
        if marked:
            if rng.random() < cfg.tiled_fraction:
                self._composite(rng, image, tiled=True, layer=layer)
            else:
                for _ in range(int(rng.integers(1, cfg.max_marks + 1))):
                    self._composite(rng, image, tiled=False, layer=layer)
        targets = None
        if layer is not None:
            alpha = layer["alpha"]
            colour = np.where(alpha > 0, layer["premult"] / np.maximum(alpha, 1e-6), 0.0).astype(np.float32)
            targets = MarkTargets(alpha[..., 0], colour, layer["known"])
        # Ground truth before degradation: where the mark is visible at all.
        diff = np.abs(image - clean)
        diff = diff.max(axis=2) if cfg.footprint_channels == "max" else diff.mean(axis=2)
        if cfg.footprint_blur > 0:
            diff = gaussian_filter(diff, cfg.footprint_blur, mode="nearest")
        mask = (diff >= cfg.visibility_threshold).astype(np.uint8)
        if not with_clean:
            return Sample(self._degrade(rng, image), mask), None, None
        # The clean photo through the very same degradations (colour shift, blur, resize,
        # noise, JPEG quality): a copy of the stream replays every draw.
        replay = np.random.Generator(type(rng.bit_generator)())
        replay.bit_generator.state = rng.bit_generator.state
        return Sample(self._degrade(rng, image), mask), self._degrade(replay, clean), targets

    def mark_spec(self, rng: np.random.Generator, tiled: bool) -> MarkSpec:
        """What one mark is (its layers, box, size, angle, blend mode, style), before it is
        placed; `tiled`: the unit of a tiled grid."""
        cfg = self.config
        size = cfg.size
        style = None if tiled else self._mark_style(rng)
        cjk_path = None
        if style == "banner":
            text = url_phrase(rng)
        elif style == "id":
            text = id_phrase(rng)
        elif cfg.cjk_prob > 0 and rng.random() < cfg.cjk_prob:
            fonts = cjk_fonts()
            cjk_path = fonts[int(rng.integers(len(fonts)))]
            text = cjk_phrase(rng, covered(cjk_path))
        else:
            text = random_phrase(rng)
        signature = not tiled and cfg.signature_prob > 0 and rng.random() < cfg.signature_prob
        signature = signature or style == "id"
        if style == "banner":
            px = max(6, int(size * rng.uniform(0.05, 0.14)))
        elif signature:
            h_lo, h_hi = cfg.signature_image_height
            px = max(6, round(rng.uniform(*cfg.signature_size) * rng.uniform(h_lo, h_hi)))
        else:
            lo, hi = cfg.font_size
            px = max(6, int(size * rng.uniform(lo, hi * (0.7 if tiled else 1.0))))
        font = _font(cjk_path or self.fonts[int(rng.integers(len(self.fonts)))], px)
        angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
        if tiled:
            angle = math.copysign(max(abs(angle), 15.0), angle)
        stroke = max(1, px // 12) if rng.random() < cfg.outline_prob else 0
        shadow = max(1, px // 15) if rng.random() < cfg.shadow_prob else 0
        if style is not None:  # banners, IDs and plain logos are flat: no outline, no shadow
            stroke = shadow = 0
            if style != "id":
                angle = 0.0
        # One bounding box for every layer, padded for the outline and the shadow offset.
        left, top, right, bottom = font.getbbox(text, stroke_width=stroke, anchor="mm")
        box = (left - 1, top - 1, right + 1 + shadow, bottom + 1 + shadow)
        fill = _text_tile(text, font, 0, box)
        outer = _text_tile(text, font, stroke, box) if stroke else fill
        if style == "plain_logo" or (cfg.logo_prob > 0 and rng.random() < cfg.logo_prob):
            fill, outer, box = self._logo_layers(rng, px, stroke, shadow, fill, outer, box)
            left, top, right, bottom = box
        artwork = style is None and cfg.artwork_prob > 0 and rng.random() < cfg.artwork_prob
        corner = signature or (not tiled and cfg.corner_prob > 0 and rng.random() < cfg.corner_prob)
        color = _rand_color(rng)
        opacity = draw_opacity(rng, cfg)
        if style == "plain_logo":  # white or black, faint: a logo stamped on the photo
            color = np.full(3, 255.0 if rng.random() < 0.6 else 0.0, np.float32)
            opacity = float(rng.uniform(0.15, 0.6))
        if cfg.fill_prob > 0 and rng.random() < cfg.fill_prob:
            color = self._fill(rng, color, period=4.0 * max(right - left, bottom - top, px))
        mode = "normal"
        if cfg.blend_probs[0] < 1.0:
            p = np.asarray(cfg.blend_probs, np.float64)
            mode = BLEND_MODES[int(rng.choice(len(BLEND_MODES), p=p / p.sum()))]
        if style is not None:
            mode = "normal"
        layers = []
        if artwork:
            layers, box = self._artwork_layers(rng, px, shadow, fill, color, opacity)
            left, top, right, bottom = box
        elif style is None and cfg.emboss_prob > 0 and rng.random() < cfg.emboss_prob:
            # The bevel replaces outline, shadow and blend mode: it is its own light and shade.
            layers, box = _emboss_layers(rng, fill, box, px, color, opacity)
            mode = "normal"
        else:
            if shadow:
                layers.append(
                    (ImageChops.offset(outer, shadow, shadow), np.zeros(3, np.float32), opacity * 0.6)
                )
            if stroke:
                layers.append((outer, 255.0 - color, opacity))  # contrasting outline
            layers.append((fill, color, opacity))
        if style == "banner" or (style is None and cfg.plate_prob > 0 and rng.random() < cfg.plate_prob):
            layers, box = self._plate_layers(rng, layers, box, px, tiled, banner=style == "banner")
            left, top, right, bottom = box
            if not tiled and box[2] - box[0] > size:  # a banner: level, across the image
                angle = float(rng.uniform(-3, 3))
        return MarkSpec(layers, box, (left, top, right, bottom), px, angle, mode, style, corner)

    def _composite(
        self, rng: np.random.Generator, image: np.ndarray, tiled: bool, layer: dict | None = None
    ) -> None:
        """Draw one mark (or one tiled grid of it) into `image` in place; with `layer`,
        also over its opacity and premultiplied colour (see `_render`)."""
        cfg = self.config
        size = cfg.size
        layers, box, (left, top, right, bottom), px, angle, mode, style, corner = self.mark_spec(rng, tiled)
        if tiled:
            # Stamp a grid on a canvas that covers the image at any rotation, then rotate
            # the canvas and crop its centre.
            side = int(size * 1.5)
            dx = (right - left) + px * rng.uniform(0.8, 2.5)
            dy = (bottom - top) + px * rng.uniform(1.0, 3.0)
            spots = [
                (x + (dx / 2 if r % 2 else 0), r * dy)
                for r in range(int(side / dy) + 2)
                for x in np.arange(-dx, side + dx, dx)
            ]
            o = (side - size) // 2
            lines = cfg.line_grid_prob > 0 and rng.random() < cfg.line_grid_prob
            if lines:
                layers.append((self._line_grid(rng, side, dy, px), layers[-1][1], layers[-1][2]))
        else:
            side = size
            spots = [(size / 2 + rng.uniform(-0.45, 0.45) * size, size / 2 + rng.uniform(-0.45, 0.45) * size)]
            o = 0
            if style == "banner":
                # Along the top or the bottom edge, where listing sites put theirs.
                w, h = right - left, bottom - top
                y = h / 2 + size * rng.uniform(0.0, 0.12)
                x = size / 2 if w >= size else rng.uniform(w / 2, max(w / 2, size - w / 2) + 1e-3)
                spots = [(x, y if rng.random() < 0.5 else size - y)]
            elif corner:
                # A signature: level, pulled in so that it ends near a corner.
                angle = float(rng.uniform(-4, 4))
                w, h = right - left, bottom - top
                cx = (w / 2 + size * rng.uniform(0.02, 0.06)) if rng.random() < 0.5 else None
                cy = (h / 2 + size * rng.uniform(0.02, 0.06)) if rng.random() < 0.5 else None
                spots = [
                    (
                        cx if cx is not None else size - w / 2 - size * rng.uniform(0.02, 0.06),
                        cy if cy is not None else size - h / 2 - size * rng.uniform(0.02, 0.06),
                    )
                ]
        for tile, col, op in layers:
            if tiled and tile.size == (side, side):  # the line grid: already the whole canvas
                cov = tile.rotate(angle, Image.Resampling.BILINEAR).crop((o, o, o + size, o + size))
            elif tiled:
                cov = Image.new("L", (side, side), 0)
                for x, y in spots:
                    cov.paste(255, (round(x) + box[0], round(y) + box[1]), mask=tile)
                cov = cov.rotate(angle, Image.Resampling.BILINEAR).crop((o, o, o + size, o + size))
            else:
                # Rotate only the text's own tile: much cheaper than the whole canvas.
                tile = tile.rotate(angle, Image.Resampling.BILINEAR, expand=True)
                (x, y), cov = spots[0], Image.new("L", (size, size), 0)
                cov.paste(tile, (round(x - tile.width / 2), round(y - tile.height / 2)))
            a = np.asarray(cov, np.float32)[..., None] * (op / 255.0)  # (H, W, 1)
            target = blend(image, col, mode) if mode != "normal" else col
            image *= 1.0 - a
            image += a * target
            if layer is not None:
                if mode == "normal":
                    layer["premult"] *= 1.0 - a
                    layer["premult"] += a * col
                    layer["alpha"] *= 1.0 - a
                    layer["alpha"] += a
                else:
                    layer["known"] &= a[..., 0] == 0

    def _mark_style(self, rng: np.random.Generator) -> str | None:
        """A single mark's look-alike-of-scene style (banner, id, plain_logo) or None."""
        cfg = self.config
        for style, p in (
            ("banner", cfg.banner_prob),
            ("id", cfg.id_text_prob),
            ("plain_logo", cfg.plain_logo_prob),
        ):
            if p > 0 and rng.random() < p:
                return style
        return None

    def _line_grid(self, rng: np.random.Generator, side: int, dy: float, px: int) -> Image.Image:
        """Thin lines (1-2 px) of a tiled mark's grid on the whole (side, side) canvas: one
        between every two rows, and with half the chance a crossing set at an angle."""
        out = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(out)
        width = 1 if rng.random() < 0.6 else 2
        offset = rng.uniform(0, dy)
        for y in np.arange(offset - dy / 2, side + dy, dy):
            draw.line((0, y, side, y), fill=255, width=width)
        if rng.random() < 0.5:
            slant = math.tan(math.radians(rng.uniform(30, 70))) * (1 if rng.random() < 0.5 else -1)
            step = max(dy, px) * rng.uniform(1.0, 2.5)
            for x in np.arange(-side * 2, side * 3, step):
                draw.line((x, 0, x + side / slant, side), fill=255, width=width)
        return out

    def _plate_layers(
        self,
        rng: np.random.Generator,
        layers: list[tuple[Image.Image, np.ndarray, float]],
        box: tuple[int, ...],
        px: int,
        tiled: bool,
        banner: bool = False,
    ) -> tuple[list[tuple[Image.Image, np.ndarray, float]], tuple[int, ...]]:
        """The mark's layers on a plate: the plate first (underneath), every layer re-padded
        to the plate's box, which they all share (tiled placement pastes by the box).
        `banner`: a bar across the image or a box behind a site address, never alone."""
        cfg = self.config
        shapes = PLATE_SHAPES if not tiled else PLATE_SHAPES[:-1]  # a banner does not tile
        if banner:
            shapes = ("banner", "rectangle", "rounded")
        shape = shapes[int(rng.integers(len(shapes)))]
        w, h = box[2] - box[0], box[3] - box[1]
        pad_x, pad_y = (int(px * rng.uniform(0.2, 0.8)) + 1 for _ in range(2))
        if shape == "circle":
            side = int(math.hypot(w, h)) + 2 * min(pad_x, pad_y)
            pw, ph = side, side
        elif shape == "banner":
            pw, ph = int(cfg.size * 1.6), h + 2 * pad_y
        else:
            pw, ph = w + 2 * pad_x, h + 2 * pad_y
        plate = Image.new("L", (pw, ph), 0)
        draw = ImageDraw.Draw(plate)
        if shape in ("rectangle", "banner"):
            draw.rectangle((0, 0, pw - 1, ph - 1), fill=255)
        elif shape == "rounded":
            draw.rounded_rectangle(
                (0, 0, pw - 1, ph - 1), radius=int(min(pw, ph) * rng.uniform(0.1, 0.3)), fill=255
            )
        elif shape == "pill":
            draw.rounded_rectangle((0, 0, pw - 1, ph - 1), radius=min(pw, ph) // 2, fill=255)
        else:
            draw.ellipse((0, 0, pw - 1, ph - 1), fill=255)
        color = _rand_color(rng)
        if rng.random() < cfg.plate_fill_prob:
            color = self._fill(rng, color, period=4.0 * max(pw, ph))
        opacity = float(rng.uniform(*cfg.plate_opacity))
        new_box = (-(pw // 2), -(ph // 2), pw - pw // 2, ph - ph // 2)
        out = [(plate, color, opacity)]
        if banner or rng.random() >= cfg.plate_alone_prob:
            for tile, col, op in layers:  # centred on the plate, as they were on the mark
                canvas = Image.new("L", (pw, ph), 0)
                canvas.paste(tile, (box[0] - new_box[0], box[1] - new_box[1]))
                out.append((canvas, col, op))
        return out, new_box

    def _artwork_layers(
        self,
        rng: np.random.Generator,
        px: int,
        shadow: int,
        text_fill: Image.Image,
        color: np.ndarray,
        opacity: float,
    ) -> tuple[list[tuple[Image.Image, np.ndarray, float]], tuple[int, ...]]:
        """Layers of a piece of artwork (its colours, or a silhouette in `color`), maybe
        with the text beside it in `color`, a drop shadow under both; their shared box
        centred on the origin."""
        cfg = self.config
        parts = artwork_layers(rng, max(8, int(px * rng.uniform(1.2, 3.0))), cfg.artwork_sources)
        union = Image.fromarray(np.max([np.asarray(t) for t, _ in parts], axis=0))
        if rng.random() < cfg.artwork_mono_prob:
            parts = [(union, color)]
        aw, ah = union.size
        # The text tile carries the shadow padding already; crop it back off.
        text = text_fill.crop((0, 0, text_fill.width - shadow, text_fill.height - shadow))
        with_text = rng.random() < cfg.logo_text_prob
        gap = max(2, px // 4)
        width = aw + 2 + shadow + (gap + text.width if with_text else 0)
        height = max(ah, text.height if with_text else 0) + 2 + shadow
        placed = [(union, 1, 1 + (height - 2 - shadow - ah) // 2)]
        if with_text:
            placed.append((text, 1 + aw + gap, 1 + (height - 2 - shadow - text.height) // 2))

        def canvas(tiles: list[tuple[Image.Image, int, int]], offset: int = 0) -> Image.Image:
            out = Image.new("L", (width, height), 0)
            for tile, x, y in tiles:
                out.paste(255, (x + offset, y + offset), mask=tile)
            return out

        layers = []
        if shadow:
            layers.append((canvas(placed, shadow), np.zeros(3, np.float32), opacity * 0.6))
        x, y = placed[0][1:]
        layers += [(canvas([(tile, x, y)]), col, opacity) for tile, col in parts]
        if with_text:
            layers.append((canvas(placed[1:]), color, opacity))
        return layers, (-(width // 2), -(height // 2), width - width // 2, height - height // 2)

    def _fill(self, rng: np.random.Generator, color: np.ndarray, period: float) -> np.ndarray:
        """A per-pixel fill (size, size, 3) for a mark: `color` fading into a second colour
        and back over `period` px along a random direction, or another background crop."""
        size = self.config.size
        if rng.random() < 0.5:
            return self.backgrounds.sample(rng, size).astype(np.float32)
        other = _rand_color(rng)
        theta, phase = rng.uniform(0.0, 2.0 * math.pi, 2)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        t = 0.5 + 0.5 * np.sin(2.0 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period + phase)
        return color + t[..., None] * (other - color)

    def _logo_layers(
        self,
        rng: np.random.Generator,
        px: int,
        stroke: int,
        shadow: int,
        text_fill: Image.Image,
        text_outer: Image.Image,
        text_box: tuple[int, ...],
    ) -> tuple[Image.Image, Image.Image, tuple[int, ...]]:
        """Fill and outer (outline) coverage of a logo, alone or with the text beside it,
        and their box centred on the origin, padded for the shadow like the text's."""
        side = max(8, int(px * rng.uniform(1.2, 2.5)))
        if self.config.qr_prob > 0 and rng.random() < self.config.qr_prob:
            logo = qr_code(rng, side)
        else:
            logo = logo_tile(rng, side, tuple(self.config.icon_sources))
        logo_outer = logo.filter(ImageFilter.MaxFilter(2 * stroke + 1)) if stroke else logo
        parts = [(logo, logo_outer)]
        if rng.random() < self.config.logo_text_prob:
            # The text tiles carry the shadow padding already; crop it back off.
            w, h = text_fill.width - shadow, text_fill.height - shadow
            parts.append((text_fill.crop((0, 0, w, h)), text_outer.crop((0, 0, w, h))))
        gap = max(2, px // 4)
        width = sum(f.width for f, _ in parts) + gap * (len(parts) - 1) + 2 + shadow
        height = max(f.height for f, _ in parts) + 2 + shadow
        fill, outer = Image.new("L", (width, height), 0), Image.new("L", (width, height), 0)
        x = 1
        for f, o in parts:
            y = 1 + (height - 2 - shadow - f.height) // 2
            fill.paste(f, (x, y))
            outer.paste(o, (x, y))
            x += f.width + gap
        box = (-(width // 2), -(height // 2), width - width // 2, height - height // 2)
        return fill, outer, box

    def _scene_text(self, rng: np.random.Generator, image: np.ndarray) -> None:
        """Paint a sign into `image` in place: opaque text on a panel, warped in perspective,
        shaded by a light gradient and softened like the photo's focus."""
        size = self.config.size
        large = self.config.scene_large_prob > 0 and rng.random() < self.config.scene_large_prob
        text = scene_phrase(rng)
        px = max(6, int(size * rng.uniform(*((0.15, 0.4) if large else (0.06, 0.22)))))
        font = _font(self.fonts[int(rng.integers(len(self.fonts)))], px)
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = probe.multiline_textbbox(
            (0, 0), text, font=font, anchor="mm", align="center"
        )
        pad = max(2, int(px * rng.uniform(0.25, 0.8)))
        w, h = math.ceil(right - left) + 2 * pad, math.ceil(bottom - top) + 2 * pad
        panel, ink = _SIGN_COLOURS[int(rng.integers(len(_SIGN_COLOURS)))]
        if panel is None:  # any colour, with black or white text, whichever reads better
            panel = tuple(int(c) for c in rng.integers(0, 256, 3))
            ink = (0, 0, 0) if sum(panel) > 380 else (255, 255, 255)
        tile = Image.new("RGB", (w, h), panel)
        draw = ImageDraw.Draw(tile)
        if rng.random() < 0.4:
            inset = max(1, pad // 3)
            draw.rectangle((inset, inset, w - 1 - inset, h - 1 - inset), outline=ink, width=max(1, px // 14))
        draw.multiline_text((w / 2, h / 2), text, fill=ink, font=font, anchor="mm", align="center")
        alpha = Image.new("L", (w, h), 0)
        radius = int(min(w, h) * rng.uniform(0.0, 0.3)) if rng.random() < 0.5 else 0
        ImageDraw.Draw(alpha).rounded_rectangle((0, 0, w - 1, h - 1), radius=radius, fill=255)
        tile.putalpha(alpha)
        # Where the panel's corners land: scaled to fit, turned, each corner pulled a little
        # (a plane seen at an angle), centred anywhere in the crop.
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
        dst = plane_corners(rng, w, h, size, (0.3, 0.9), 20.0, 0.15, large)
        warped = tile.transform(
            (size, size),
            Image.Transform.PERSPECTIVE,
            perspective_coefficients(dst, corners),
            Image.Resampling.BILINEAR,
        )
        rgba = np.asarray(warped, np.float32)
        sigma = float(rng.uniform(0.0, 1.0))
        if sigma > 0.2:
            rgba = gaussian_filter(rgba, (sigma, sigma, 0), mode="nearest")
        a = rgba[..., 3:] / 255.0
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        gx, gy = rng.uniform(-0.3, 0.3, 2)
        light = (float(rng.uniform(0.7, 1.05)) + gx * (xx - 0.5) + gy * (yy - 0.5))[..., None]
        image *= 1.0 - a
        image += a * np.clip(rgba[..., :3] * light, 0, 255)

    def _degrade(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
        cfg = self.config
        if cfg.color_shift_prob > 0 and rng.random() < cfg.color_shift_prob:
            gain = rng.uniform(0.9, 1.1, 3).astype(np.float32)
            image = image * gain + rng.uniform(-12, 12, 3).astype(np.float32)
        if cfg.blur_prob > 0 and rng.random() < cfg.blur_prob:
            sigma = float(rng.uniform(*cfg.blur_sigma))
            image = gaussian_filter(image, (sigma, sigma, 0), mode="nearest")
        if cfg.resize_prob > 0 and rng.random() < cfg.resize_prob:
            # As a photo shared at a lower resolution and shown at the original size.
            h, w = image.shape[:2]
            f = float(rng.uniform(*cfg.resize_scale))
            small = Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8))
            small = small.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR)
            image = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), np.float32)
        std = rng.uniform(*cfg.noise_std)
        if std > 0:
            image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(std)
        out = np.clip(image + 0.5, 0, 255).astype(np.uint8)
        if rng.random() < cfg.jpeg_prob:
            buf = io.BytesIO()
            quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            Image.fromarray(out).save(buf, format="JPEG", quality=quality)
            out = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        return out
