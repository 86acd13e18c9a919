"""What one mark is before it is placed: its layers of coverage, colour and opacity (text,
outline, shadow, emboss, logos, artwork, plates and banners, fills), drawn from a config
and the sample's stream."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont
from scipy.ndimage import gaussian_filter

from wmseg.synth.artwork import artwork_layers
from wmseg.synth.backgrounds import BackgroundBank
from wmseg.synth.config import BLEND_MODES, PLATE_SHAPES, SynthConfig, draw_opacity
from wmseg.synth.fonts import cjk_fonts, covered, font_at
from wmseg.synth.logos import logo_tile, qr_code
from wmseg.synth.text import cjk_phrase, id_phrase, random_phrase, url_phrase


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


def rand_color(rng: np.random.Generator) -> np.ndarray:
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


class MarkLayers:
    """Draws marks (`spec`) and the line grids of tiled marks (`line_grid`) for one config;
    `fonts` the Latin fonts, `backgrounds` the photos a photo fill is cut from."""

    def __init__(self, config: SynthConfig, fonts: list, backgrounds: BackgroundBank) -> None:
        self.config, self.fonts, self.backgrounds = config, fonts, backgrounds

    def spec(self, rng: np.random.Generator, tiled: bool) -> MarkSpec:
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
        font = font_at(cjk_path or self.fonts[int(rng.integers(len(self.fonts)))], px)
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
        color = rand_color(rng)
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

    def line_grid(self, rng: np.random.Generator, side: int, dy: float, px: int) -> Image.Image:
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
        color = rand_color(rng)
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
        other = rand_color(rng)
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
