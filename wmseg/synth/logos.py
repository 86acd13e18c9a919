"""Logo and emblem artwork as coverage tiles (mode "L", 0-255): icon glyphs from bundled
fonts, and procedural emblems. No torch, no Lightning.

Icon artwork (`icon_sources`):
- "dejavu": the Miscellaneous Symbols and Dingbats glyphs of DejaVu Sans, which ships
  with matplotlib (Bitstream Vera licence: free to use and redistribute);
- "qtawesome": the icon fonts qtawesome ships (read as files, never imported): Font
  Awesome Free 6 solid, regular and brands (icons CC BY 4.0, font SIL OFL; the brands are
  real company logos), Phosphor (MIT) and Remix Icon (Apache-2.0).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from wmseg.synth.sources import check_sources, package_dir

_SYMBOL_RANGES = ((0x2600, 0x26FF), (0x2700, 0x27BF))
_QTAWESOME_FONTS = (
    "fontawesome6-solid-webfont-6.7.2.ttf",
    "fontawesome6-regular-webfont-6.7.2.ttf",
    "fontawesome6-brands-webfont-6.7.2.ttf",
    "phosphor-1.3.0.ttf",
    "remixicon-2.5.0.ttf",
)
ICON_SOURCES = ("dejavu", "qtawesome")


@lru_cache(maxsize=1)
def _symbol_font() -> tuple[Path, tuple[str, ...]]:
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    cmap = TTFont(path, lazy=True).getBestCmap()
    glyphs = tuple(chr(c) for lo, hi in _SYMBOL_RANGES for c in range(lo, hi + 1) if c in cmap)
    return path, glyphs


@contextmanager
def _quiet_fonttools() -> Iterator[None]:
    log = logging.getLogger("fontTools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _qtawesome_fonts() -> list[tuple[Path, tuple[str, ...]]]:
    package = package_dir("qtawesome")
    root = None if package is None else package / "fonts"
    fonts = []
    for name in _QTAWESOME_FONTS:
        if root is not None and (root / name).is_file():
            # Icons sit in the private use area; the font's few letters and spaces are not art.
            # (fontTools warns about padding in one font's glyph-name table: harmless.)
            with _quiet_fonttools():
                cmap = TTFont(root / name, lazy=True).getBestCmap()
            fonts.append((root / name, tuple(chr(c) for c in sorted(cmap) if c >= 0xE000)))
    if not fonts:
        raise FileNotFoundError(
            "data.synth.icon_sources has qtawesome but its icon fonts are not installed: "
            "pip install -e . (qtawesome is a project dependency)"
        )
    return fonts


@lru_cache(maxsize=8)
def icon_glyphs(sources: Sequence[str] = ("dejavu",)) -> tuple[tuple[Path, str], ...]:
    """(font, glyph) pairs of every icon of `sources`, in a fixed order."""
    check_sources("data.synth.icon_sources", sources, ICON_SOURCES)
    fonts = [_symbol_font()] if "dejavu" in sources else []
    if "qtawesome" in sources:
        fonts += _qtawesome_fonts()
    return tuple((path, g) for path, glyphs in fonts for g in glyphs)


@lru_cache(maxsize=1024)
def _font(path: Path, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), px)


def icon_glyph(rng: np.random.Generator, px: int, sources: Sequence[str] = ("dejavu",)) -> Image.Image:
    """One icon glyph (a star, a camera, a brand's logo...) about `px` pixels tall."""
    glyphs = icon_glyphs(tuple(sources))
    path, glyph = glyphs[int(rng.integers(len(glyphs)))]
    font = _font(path, px)
    left, top, right, bottom = font.getbbox(glyph)
    tile = Image.new("L", (max(1, right - left) + 2, max(1, bottom - top) + 2), 0)
    ImageDraw.Draw(tile).text((1 - left, 1 - top), glyph, fill=255, font=font)
    return tile


def emblem(rng: np.random.Generator, px: int, letter: str | None = None) -> Image.Image:
    """A procedural emblem `px` pixels wide: ring, disc, rounded square, star or shield,
    filled or outlined, with an optional letter cut out of or drawn inside it."""
    # Drawn at 4x and downsampled: anti-aliased edges like real artwork.
    s = 4 * px
    big = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(big)
    width = max(4, int(s * rng.uniform(0.06, 0.14)))
    filled = rng.random() < 0.5
    kind = int(rng.integers(5))
    m = width
    inside = 255 if filled else None
    if kind == 0:  # ring or disc
        draw.ellipse((m, m, s - m, s - m), fill=inside, outline=255, width=width)
    elif kind == 1:  # rounded square
        draw.rounded_rectangle((m, m, s - m, s - m), radius=s // 5, fill=inside, outline=255, width=width)
    elif kind == 2:  # star
        points = int(rng.integers(5, 9))
        inner = rng.uniform(0.35, 0.6)
        pts = [
            (
                s / 2 + (s / 2 - m) * (1 if k % 2 == 0 else inner) * math.sin(math.pi * k / points),
                s / 2 - (s / 2 - m) * (1 if k % 2 == 0 else inner) * math.cos(math.pi * k / points),
            )
            for k in range(2 * points)
        ]
        draw.polygon(pts, fill=inside, outline=255, width=width)
    elif kind == 3:  # shield
        pts = [(m, m), (s - m, m), (s - m, s * 0.55), (s / 2, s - m), (m, s * 0.55)]
        draw.polygon(pts, fill=inside, outline=255, width=width)
    else:  # double ring
        draw.ellipse((m, m, s - m, s - m), outline=255, width=width)
        inset = m + 2 * width
        draw.ellipse((inset, inset, s - inset, s - inset), outline=255, width=max(2, width // 2))
    if letter:
        font = _font(_symbol_font()[0], int(s * 0.45))
        draw.text((s / 2, s / 2), letter, fill=0 if filled else 255, font=font, anchor="mm")
    return big.resize((px, px), Image.Resampling.LANCZOS)


def logo_tile(rng: np.random.Generator, px: int, icon_sources: Sequence[str] = ("dejavu",)) -> Image.Image:
    """Icon glyph or procedural emblem, chosen at random."""
    if rng.random() < 0.5:
        return icon_glyph(rng, px, icon_sources)
    letter = chr(int(rng.integers(ord("A"), ord("Z") + 1))) if rng.random() < 0.5 else None
    return emblem(rng, px, letter)


def qr_code(rng: np.random.Generator, px: int) -> Image.Image:
    """A QR-code-like square `px` pixels wide: random modules with the three finder
    squares, as printed beside an ID on stock previews (not a decodable code)."""
    n = int(rng.choice((21, 25, 29)))
    grid = rng.random((n, n)) < 0.5
    for r, c in ((0, 0), (0, n - 7), (n - 7, 0)):
        grid[max(r - 1, 0) : r + 8, max(c - 1, 0) : c + 8] = False  # quiet zone around it
        grid[r : r + 7, c : c + 7] = True
        grid[r + 1 : r + 6, c + 1 : c + 6] = False
        grid[r + 2 : r + 5, c + 2 : c + 5] = True
    tile = Image.fromarray(grid.astype(np.uint8) * 255, "L")
    return tile.resize((max(px, n), max(px, n)), Image.Resampling.NEAREST)
