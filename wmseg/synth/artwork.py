"""Coloured artwork for logo-style marks, as layers of (coverage, colour): clip art,
colour emoji and procedural vector logos with several filled parts. No torch, no Lightning.

A piece of artwork is returned as a list of coverage tiles (mode "L", 0-255, one size)
with one RGB colour each, drawn in order: the layer model of `wmseg.synth.layers`, so
artwork rotates, tiles and sits on plates like any other mark, and its mask stays the
visible footprint.

Sources (`artwork_sources`), read from installed system packages at run time (never
bundled, never downloaded):
- "tuxpaint": Tux Paint's clip-art stamps (Debian `tuxpaint-stamps-default`, GPL-2):
  about 800 coloured PNG drawings of animals, food, vehicles, plants, signs...;
- "emoji": Noto Color Emoji (Debian `fonts-noto-color-emoji`, SIL OFL 1.1): about 1,400
  colour emoji as bitmaps;
- "procedural": multi-part, multi-colour vector logos drawn here (rings, discs, bars,
  wedges, overlapping circles), needing no package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from wmseg.synth.sources import check_sources

TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
NOTO_EMOJI = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
ARTWORK_SOURCES = ("tuxpaint", "emoji", "procedural")
# Noto Color Emoji holds one bitmap strike, 109 px: FreeType renders it at that size only.
_EMOJI_PX = 109
# Most a stamp is kept at: marks are at most a few hundred pixels wide.
_MAX_SIDE = 256
# Brand-like colours of procedural logos: saturated primaries and a few neutrals.
_LOGO_PALETTE = (
    (230, 30, 40), (250, 160, 0), (255, 210, 0), (40, 170, 70), (0, 120, 200), (30, 60, 160),
    (120, 50, 170), (230, 60, 140), (0, 170, 180), (30, 30, 30), (250, 250, 250), (130, 130, 130),
)  # fmt: skip

Layers = list[tuple[Image.Image, np.ndarray]]


def _missing(key: str, package: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"data.synth.artwork_sources has {key} but {path} is not there: install the Debian package "
        f"{package} (sudo apt-get install {package}), or drop {key} from data.synth.artwork_sources"
    )


@lru_cache(maxsize=1)
def tuxpaint_stamps() -> tuple[Path, ...]:
    """Tux Paint's PNG stamps in a fixed order, without the mirrored copies some ship
    (marks are flipped anyway)."""
    if not TUXPAINT_STAMPS.is_dir():
        raise _missing("tuxpaint", "tuxpaint-stamps-default", TUXPAINT_STAMPS)
    paths = sorted(p for p in TUXPAINT_STAMPS.rglob("*.png") if not p.stem.endswith("_mirror"))
    if not paths:
        raise _missing("tuxpaint", "tuxpaint-stamps-default", TUXPAINT_STAMPS)
    return tuple(paths)


@lru_cache(maxsize=1)
def emoji_glyphs() -> tuple[str, ...]:
    """Every single-code-point emoji Noto Color Emoji draws (pictographs and symbols, not
    the digits, letters and modifiers it also maps)."""
    if not NOTO_EMOJI.is_file():
        raise _missing("emoji", "fonts-noto-color-emoji", NOTO_EMOJI)
    with TTFont(NOTO_EMOJI, lazy=True) as font:
        cmap = font.getBestCmap()
    skip = (0x1F3FB, 0x1F3FF), (0xFE00, 0xFE0F), (0x1F1E6, 0x1F1FF)  # skin tones, selectors, flag letters
    return tuple(
        chr(c) for c in sorted(cmap) if 0x2300 <= c < 0xE0000 and not any(lo <= c <= hi for lo, hi in skip)
    )


def check_artwork_sources(sources: Sequence[str]) -> tuple[str, ...]:
    """`sources` checked by name and by what is installed: a missing package fails here,
    naming it, not later inside a DataLoader worker."""
    sources = check_sources("data.synth.artwork_sources", sources, ARTWORK_SOURCES)
    if "tuxpaint" in sources:
        tuxpaint_stamps()
    if "emoji" in sources:
        emoji_glyphs()
    return sources


@lru_cache(maxsize=256)
def _stamp(path: Path) -> Image.Image:
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    rgba = rgba.crop(rgba.getchannel("A").getbbox() or (0, 0, *rgba.size))
    rgba.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.Resampling.LANCZOS)
    return rgba


@lru_cache(maxsize=256)
def _emoji(glyph: str) -> Image.Image:
    font = ImageFont.truetype(str(NOTO_EMOJI), _EMOJI_PX)
    tile = Image.new("RGBA", (2 * _EMOJI_PX, 2 * _EMOJI_PX), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text((_EMOJI_PX, _EMOJI_PX), glyph, font=font, anchor="mm", embedded_color=True)
    return tile.crop(tile.getchannel("A").getbbox() or (0, 0, 1, 1))


def rgba_layers(rgba: Image.Image, colours: int) -> Layers:
    """An RGBA drawing as at most `colours` layers of one colour each: its colours
    quantised (median cut), each layer the drawing's alpha where that colour is. The
    layers are disjoint, so drawing them in turn gives back the drawing up to the
    quantisation, anti-aliased outer edges included."""
    alpha = np.asarray(rgba.getchannel("A"))
    rgb = np.array(rgba.convert("RGB"))
    if (alpha > 0).any():  # transparent pixels take an opaque colour: no palette slot wasted
        rgb[alpha == 0] = np.median(rgb[alpha > 0], axis=0)
    quantised = Image.fromarray(rgb).quantize(colours, method=Image.Quantize.MEDIANCUT)
    index, palette = np.asarray(quantised), np.asarray(quantised.getpalette())
    layers = []
    for k in np.unique(index[alpha > 0]):
        cover = np.where(index == k, alpha, 0).astype(np.uint8)
        layers.append((Image.fromarray(cover), palette[3 * k : 3 * k + 3].astype(np.float32)))
    return layers


def procedural_logo(rng: np.random.Generator, px: int) -> Layers:
    """A vector-style logo `px` pixels wide made of 2-4 filled parts in 2-3 colours:
    overlapping or concentric circles, a disc with a bar or wedge cut across it, stacked
    bars, a square split in tiles. Drawn at 4x and downsampled: anti-aliased edges."""
    s = 4 * px
    colours = [
        np.asarray(_LOGO_PALETTE[int(i)], np.float32)
        for i in rng.choice(len(_LOGO_PALETTE), size=3, replace=False)
    ]
    kind = int(rng.integers(5))
    parts: list[Image.Image] = []

    def part() -> ImageDraw.ImageDraw:
        parts.append(Image.new("L", (s, s), 0))
        return ImageDraw.Draw(parts[-1])

    if kind == 0:  # two or three overlapping circles in a row
        n = int(rng.integers(2, 4))
        r = s / (n + 1)
        for i in range(n):
            cx = r + i * (s - 2 * r) / max(n - 1, 1)
            part().ellipse((cx - r, s / 2 - r, cx + r, s / 2 + r), fill=255)
    elif kind == 1:  # concentric rings and a disc
        n = int(rng.integers(2, 4))
        for i in range(n):
            m = i * s / (2 * n + 1)
            part().ellipse((m, m, s - m, s - m), fill=255)
    elif kind == 2:  # a disc with a wedge or a bar across it
        part().ellipse((0, 0, s - 1, s - 1), fill=255)
        if rng.random() < 0.5:
            start = float(rng.uniform(0, 360))
            part().pieslice((0, 0, s - 1, s - 1), start, start + float(rng.uniform(60, 180)), fill=255)
        else:
            h = s * rng.uniform(0.15, 0.3)
            y = s * rng.uniform(0.3, 0.7)
            part().rectangle((0, y - h / 2, s, y + h / 2), fill=255)
            parts[-1] = Image.fromarray(np.minimum(np.asarray(parts[-1]), np.asarray(parts[0])))
    elif kind == 3:  # stacked bars of falling or rising width
        n = int(rng.integers(2, 5))
        h = s / (2 * n)
        for i in range(n):
            w = s * (0.4 + 0.6 * (i + 1) / n if rng.random() < 0.5 else 1.0 - 0.5 * i / n)
            part().rounded_rectangle((0, 2 * i * h, w, 2 * i * h + 1.5 * h), radius=h / 3, fill=255)
    else:  # a square in 2x2 tiles, or a star on a disc
        if rng.random() < 0.5:
            g = s * 0.04
            for i in range(4):
                x, y = (i % 2) * s / 2, (i // 2) * s / 2
                part().rectangle((x + g, y + g, x + s / 2 - g, y + s / 2 - g), fill=255)
        else:
            part().ellipse((0, 0, s - 1, s - 1), fill=255)
            k = int(rng.integers(5, 9))
            pts = [
                (
                    s / 2 + s * (0.38 if j % 2 == 0 else 0.17) * math.sin(math.pi * j / k),
                    s / 2 - s * (0.38 if j % 2 == 0 else 0.17) * math.cos(math.pi * j / k),
                )
                for j in range(2 * k)
            ]
            part().polygon(pts, fill=255)
    return [
        (p.resize((px, px), Image.Resampling.LANCZOS), colours[i % len(colours)]) for i, p in enumerate(parts)
    ]


def artwork_layers(rng: np.random.Generator, px: int, sources: Sequence[str], colours: int = 6) -> Layers:
    """One piece of artwork from `sources`, its longer side `px`, as its colour layers."""
    sources = tuple(sources)
    source = sources[int(rng.integers(len(sources)))]
    # A few code points map to no bitmap and draw nothing: the next draw replaces them.
    for _ in range(8):
        if source == "procedural":
            return procedural_logo(rng, px)
        if source == "tuxpaint":
            stamps = tuxpaint_stamps()
            rgba = _stamp(stamps[int(rng.integers(len(stamps)))])
        else:
            glyphs = emoji_glyphs()
            rgba = _emoji(glyphs[int(rng.integers(len(glyphs)))])
        scale = px / max(rgba.size)
        size = (max(1, round(rgba.width * scale)), max(1, round(rgba.height * scale)))
        rgba = rgba.resize(size, Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            rgba = rgba.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        layers = rgba_layers(rgba, colours)
        if layers:
            return layers
    return procedural_logo(rng, px)
