"""Fonts available offline from installed packages (open licences only)."""

from __future__ import annotations

import importlib.util
from functools import cache, lru_cache
from pathlib import Path

import matplotlib
from fontTools.ttLib import TTFont

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


@lru_cache(maxsize=1)
def latin_fonts() -> tuple[Path, ...]:
    """Paths of the Latin TrueType fonts bundled with matplotlib."""
    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = tuple(root / name for name in _LATIN_FONTS if (root / name).is_file())
    if not paths:
        raise FileNotFoundError(f"no bundled fonts found under {root}; reinstall matplotlib")
    return paths


@lru_cache(maxsize=1)
def cjk_fonts() -> tuple[Path, ...]:
    """Paths of the CJK fonts shipped by the installed font packages."""
    paths = []
    for package, name in _CJK_FONTS:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        path = Path(spec.origin).parent / "fonts" / name
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
