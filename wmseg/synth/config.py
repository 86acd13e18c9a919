"""What the synthetic watermarks look like: `SynthConfig`, its checked ranges and
probabilities, and the draws made straight from it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wmseg.synth.scene import SCENE_OBJECTS


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


def draw_opacity(rng: np.random.Generator, cfg: SynthConfig) -> float:
    """One mark's opacity within `cfg.opacity`, uniform on `cfg.opacity_scale`."""
    lo, hi = cfg.opacity
    if cfg.opacity_scale == "log":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return float(rng.uniform(lo, hi))
