"""Fonts available offline from installed packages (open licences only)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import matplotlib

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


@lru_cache(maxsize=1)
def latin_fonts() -> tuple[Path, ...]:
    """Paths of the Latin TrueType fonts bundled with matplotlib."""
    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = tuple(root / name for name in _LATIN_FONTS if (root / name).is_file())
    if not paths:
        raise FileNotFoundError(f"no bundled fonts found under {root}; reinstall matplotlib")
    return paths
