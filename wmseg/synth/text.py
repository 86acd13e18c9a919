"""Random watermark phrases: site names, handles, copyright lines, IDs."""

from __future__ import annotations

import numpy as np

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"
_TLDS = (".com", ".net", ".org", ".io", ".co", ".de", ".fr", ".photo", ".studio")
_STOCK = ("stock", "photo", "images", "pics", "media", "studio", "preview", "sample", "draft")


def _word(rng: np.random.Generator, lo: int = 2, hi: int = 4) -> str:
    """A pronounceable made-up word of lo..hi syllables."""
    n = int(rng.integers(lo, hi + 1))
    return "".join(
        _CONSONANTS[rng.integers(len(_CONSONANTS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(n)
    )


def _case(rng: np.random.Generator, s: str) -> str:
    k = rng.integers(3)
    return s.upper() if k == 0 else s.capitalize() if k == 1 else s


def random_phrase(rng: np.random.Generator) -> str:
    """One watermark phrase in one of the styles seen on real images."""
    kind = int(rng.integers(6))
    if kind == 0:  # site name
        return "www." * int(rng.integers(2)) + _word(rng) + _TLDS[rng.integers(len(_TLDS))]
    if kind == 1:  # social handle
        return "@" + _word(rng) + ("_" + _word(rng, 1, 2)) * int(rng.integers(2))
    if kind == 2:  # copyright line
        year = int(rng.integers(1995, 2027))
        return f"© {year} {_case(rng, _word(rng))} {_case(rng, _word(rng))}"
    if kind == 3:  # numeric ID, as on stock previews
        return f"{_STOCK[rng.integers(len(_STOCK))]} {int(rng.integers(10**5, 10**9))}"
    if kind == 4:  # brand word
        return _case(rng, _word(rng, 2, 4))
    return _case(rng, _STOCK[rng.integers(len(_STOCK))])  # the classic "SAMPLE" / "PREVIEW"
