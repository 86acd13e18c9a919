"""Random watermark phrases: site names, handles, copyright lines, IDs."""

from __future__ import annotations

import numpy as np

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"
_TLDS = (".com", ".net", ".org", ".io", ".co", ".de", ".fr", ".photo", ".studio")
_STOCK = ("stock", "photo", "images", "pics", "media", "studio", "preview", "sample", "draft")


def word(rng: np.random.Generator, lo: int = 2, hi: int = 4) -> str:
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
        return "www." * int(rng.integers(2)) + word(rng) + _TLDS[rng.integers(len(_TLDS))]
    if kind == 1:  # social handle
        return "@" + word(rng) + ("_" + word(rng, 1, 2)) * int(rng.integers(2))
    if kind == 2:  # copyright line
        year = int(rng.integers(1995, 2027))
        return f"© {year} {_case(rng, word(rng))} {_case(rng, word(rng))}"
    if kind == 3:  # numeric ID, as on stock previews
        return f"{_STOCK[rng.integers(len(_STOCK))]} {int(rng.integers(10**5, 10**9))}"
    if kind == 4:  # brand word
        return _case(rng, word(rng, 2, 4))
    return _case(rng, _STOCK[rng.integers(len(_STOCK))])  # the classic "SAMPLE" / "PREVIEW"


# Common watermark words in Chinese (simplified and traditional), Japanese and Korean:
# "sample", "preview", "copyright", "all rights reserved", "no reposting", "photo",
# "original", "watermark", "image source", "for reference only".
CJK_WORDS = (
    "样图",
    "预览",
    "版权所有",
    "禁止转载",
    "摄影",
    "原创",
    "水印",
    "图片来源",
    "仅供参考",
    "网",
    "版權所有",
    "禁止轉載",
    "攝影",
    "原創",
    "圖片",
    "サンプル",
    "見本",
    "著作権",
    "無断転載禁止",
    "写真",
    "撮影",
    "プレビュー",
    "素材",
    "샘플",
    "미리보기",
    "저작권",
    "무단전재 금지",
    "사진",
    "촬영",
    "원본",
    "워터마크",
)


def cjk_phrase(rng: np.random.Generator, covers: frozenset[int]) -> str:
    """A CJK watermark phrase whose characters the font (code points `covers`) can draw:
    a word, alone or with a site name, a handle or an ID beside it."""
    words = [w for w in CJK_WORDS if all(ord(ch) in covers for ch in w)]
    cjk = words[int(rng.integers(len(words)))] if words else "SAMPLE"
    kind = int(rng.integers(4))
    if kind == 0:
        return cjk
    if kind == 1:
        return f"{cjk} {word(rng)}{_TLDS[rng.integers(len(_TLDS))]}"
    if kind == 2:
        return f"{cjk} @{word(rng)}"
    return f"{cjk} {int(rng.integers(10**4, 10**8))}"


_SIGN_WORDS = ("EXIT", "OPEN", "STOP", "PARKING", "CAFE", "HOTEL", "BANK", "SALE", "NO ENTRY", "PUSH", "PULL")


def scene_phrase(rng: np.random.Generator) -> str:
    """Text as it is part of a scene (signs, shop fronts, labels, plates), not a mark:
    one or two short lines."""
    kind = int(rng.integers(5))
    if kind == 0:
        return _SIGN_WORDS[rng.integers(len(_SIGN_WORDS))]
    if kind == 1:  # street or shop name
        return f"{_case(rng, word(rng))} {('St', 'Rd', 'Ave', 'Street', 'Market', 'Shop')[rng.integers(6)]}"
    if kind == 2:  # house number, price, speed limit, plate
        return (
            str(int(rng.integers(1, 300))),
            f"{int(rng.integers(1, 100))}.{int(rng.integers(0, 100)):02d}",
            f"{word(rng, 1, 2).upper()} {int(rng.integers(100, 10000))}",
        )[rng.integers(3)]
    if kind == 3:  # two lines
        return f"{_case(rng, word(rng))}\n{_case(rng, word(rng, 1, 3))}"
    return _case(rng, word(rng, 1, 3))


def url_phrase(rng: np.random.Generator) -> str:
    """A site address as listing sites and agencies print on a banner."""
    host = word(rng) + ("-" + word(rng, 1, 2)) * int(rng.integers(2))
    return "www." * int(rng.integers(2)) + host + _TLDS[rng.integers(len(_TLDS))]


def id_phrase(rng: np.random.Generator) -> str:
    """An image ID as stock agencies print small in a corner: '#123456789', 'ID 4512389'."""
    number = int(rng.integers(10**5, 10**10))
    prefix = ("#", "ID ", "ID: ", "No. ", "Image ID ", "#")[int(rng.integers(6))]
    return f"{prefix}{number}"
