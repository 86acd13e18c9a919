"""Fonts available offline from installed packages (open licences only)."""

from __future__ import annotations

import string
from collections.abc import Collection, Sequence
from functools import cache, lru_cache
from pathlib import Path

import matplotlib
from fontTools.ttLib import TTFont
from PIL import ImageFont

from wmseg.synth.sources import check_sources, package_dir

# DejaVu (Bitstream Vera licence) and STIX (SIL OFL) ship with matplotlib.
_LATIN_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
)

# Open fonts from the font-* packages (each one family, SIL OFL or Apache-2.0): the sans,
# serif, rounded, thin-to-black and hand-drawn faces real watermarks are set in.
_FONT_PACKAGES = (
    ("font_roboto", "files"),
    ("font_lato", "files"),
    ("ttf_opensans", "ttf"),
    ("font_source_sans_pro", "files"),
    ("font_source_serif_pro", "files"),
    ("font_manrope", "files"),
    ("font_hanken_grotesk", "files"),
    ("font_caladea", "files"),
    ("font_fredoka_one", "files"),
    ("font_amatic_sc", "files"),
    ("font_intuitive", "files"),
)
# One source a family too ("roboto", "amatic_sc"...), so that whole typefaces can be held
# out of training and a proxy set in them.
FAMILIES = {package.removeprefix("font_").removeprefix("ttf_"): package for package, _ in _FONT_PACKAGES}
FONT_SOURCES = ("matplotlib", "open_fonts", *FAMILIES)
# Every character random_phrase and scene_phrase draw: a face that lacks one is left out.
_PHRASE_CHARS = frozenset(map(ord, string.ascii_letters + string.digits + ".@_© "))

# CJK fonts: IPAexGothic (IPA Font License, OSI-approved; kana + kanji) from
# japanize-matplotlib and Nanum Gothic (SIL OFL; Hangul) in four weights from
# koreanize-matplotlib. Located without importing: importing them restyles matplotlib.
_CJK_FONTS = (
    ("japanize_matplotlib", "ipaexg.ttf"),
    ("koreanize_matplotlib", "NanumGothic.ttf"),
    ("koreanize_matplotlib", "NanumGothicBold.ttf"),
    ("koreanize_matplotlib", "NanumGothicExtraBold.ttf"),
    ("koreanize_matplotlib", "NanumGothicLight.ttf"),
)


def _open_fonts(packages: Collection[str]) -> list[Path]:
    paths = []
    for package, sub in _FONT_PACKAGES:
        root = package_dir(package) if package in packages else None
        if root is None:
            continue
        faces = {}
        # TrueType first: where a family ships a face twice, the .ttf is kept.
        for path in sorted((root / sub).glob("*.[ot]tf"), key=lambda q: (q.suffix != ".ttf", q.name)):
            if "Variable" not in path.stem:  # a variable font repeats the static weights
                faces.setdefault(path.stem, path)
        paths += [faces[k] for k in sorted(faces) if covered(faces[k]) >= _PHRASE_CHARS]
    if not paths:
        raise FileNotFoundError(
            f"data.synth.font_sources names {', '.join(sorted(packages))} but none is installed: "
            "pip install -e . (the font-* packages are project dependencies)"
        )
    return paths


@lru_cache(maxsize=8)
def latin_fonts(sources: Sequence[str] = ("matplotlib",)) -> tuple[Path, ...]:
    """Paths of the Latin fonts of `sources`: "matplotlib" (DejaVu and STIX, bundled with
    matplotlib) and "open_fonts" (the font-* packages: Roboto, Lato, Open Sans, Source Sans
    and Serif, Manrope, Hanken Grotesk, Caladea, Fredoka One, Amatic SC, Intuitive), or
    any of those families by name (`FAMILIES`)."""
    check_sources("data.synth.font_sources", sources, FONT_SOURCES)
    paths: list[Path] = []
    if "matplotlib" in sources:
        root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        found = [root / name for name in _LATIN_FONTS if (root / name).is_file()]
        if not found:
            raise FileNotFoundError(f"no bundled fonts found under {root}; reinstall matplotlib")
        paths += found
    packages = (
        set(FAMILIES.values()) if "open_fonts" in sources else {FAMILIES[s] for s in sources if s in FAMILIES}
    )
    if packages:
        paths += _open_fonts(packages)
    return tuple(paths)


@lru_cache(maxsize=1)
def cjk_fonts() -> tuple[Path, ...]:
    """Paths of the CJK fonts shipped by the installed font packages."""
    paths = []
    for package, name in _CJK_FONTS:
        root = package_dir(package)
        if root is None:
            continue
        path = root / "fonts" / name
        if path.is_file():
            paths.append(path)
    if not paths:
        raise FileNotFoundError(
            "data.synth.cjk_prob > 0 but no CJK font is installed: "
            "pip install japanize-matplotlib koreanize-matplotlib (they are project dependencies)"
        )
    return tuple(paths)


@cache
def covered(path: Path) -> frozenset[int]:
    """Code points the font has a glyph for."""
    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap())


@lru_cache(maxsize=512)
def font_at(path: Path, px: int) -> ImageFont.FreeTypeFont:
    """The font file at `path` at `px` pixels, loaded once."""
    return ImageFont.truetype(str(path), px)
