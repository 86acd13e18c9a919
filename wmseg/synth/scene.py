"""Objects that belong to the scene and look like marks: chrome lettering, embossed
metal, printed labels, screens, licence plates.

Each is drawn *into* a clean background before any mark, so it is part of the clean
photo and never of the mask. What sets them apart from an overlay is what a model has to
learn: they sit on a surface (perspective, a cylinder's curve), take the photo's light
(its local brightness, a highlight, a shadow), are occluded by things in front of them
and are as sharp as the photo; a watermark is flat, level or turned in the image plane,
and on top of everything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter

from wmseg.synth.fonts import font_at
from wmseg.synth.logos import emblem
from wmseg.synth.text import scene_phrase, word

SCENE_OBJECTS = ("chrome", "embossed", "label", "screen", "plate")


def perspective_coefficients(dst: np.ndarray, src: np.ndarray) -> tuple[float, ...]:
    """PIL's PERSPECTIVE coefficients that map output points `dst` to input points `src`
    (4 x 2 each)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return tuple(np.linalg.solve(np.asarray(rows, np.float64), np.asarray(rhs, np.float64)))


def plane_corners(
    rng: np.random.Generator,
    w: int,
    h: int,
    size: int,
    fill: tuple[float, float],
    turn: float,
    pull: float,
    large: bool = False,
) -> np.ndarray:
    """Where the corners of a (w, h) plane land in a (size, size) image (4 x 2): scaled so
    its long side covers `fill` of the image, turned up to `turn` degrees, each corner
    pulled up to `pull` of its size (a plane seen at an angle), centred anywhere. `large`:
    a sign or label seen face-on and close: 60-98 % of the image, within 5 degrees of
    level, barely warped, near the centre."""
    if large:
        fill, turn, pull = (0.6, 0.98), 5.0, 0.03
    scale = min(2.0 if large else 1.0, size * rng.uniform(*fill) / max(w, h))
    angle = math.radians(rng.uniform(-turn, turn))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    dst = (corners - [w / 2, h / 2]) * scale @ rot.T
    dst += rng.uniform(-pull, pull, (4, 2)) * [w * scale, h * scale]
    dst += rng.uniform(*((0.35, 0.65) if large else (0.15, 0.85)), 2) * size
    return dst


def _coverage(text: str, font: ImageFont.FreeTypeFont, pad: int) -> np.ndarray:
    """Anti-aliased coverage (float 0-1) of `text`, `pad` px of margin on each side."""
    left, top, right, bottom = font.getbbox(text, anchor="mm")
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    tile = Image.new("L", (max(1, w), max(1, h)), 0)
    ImageDraw.Draw(tile).text((pad - left, pad - top), text, fill=255, font=font, anchor="mm")
    return np.asarray(tile, np.float32) / 255.0


def _model_badge(rng: np.random.Generator) -> str:
    """A car or appliance badge: 'XC40', 'GTI', 'e-tron', 'Turbo', a made-up brand."""
    kind = int(rng.integers(4))
    letters = "".join(chr(int(c)) for c in rng.integers(ord("A"), ord("Z") + 1, int(rng.integers(1, 4))))
    if kind == 0:
        return f"{letters}{int(rng.integers(1, 100))}"
    if kind == 1:
        return letters if len(letters) > 1 else letters + "X"
    if kind == 2:
        return ("Turbo", "Hybrid", "Sport", "Diesel", "4MATIC", "quattro", "Inox", "Deluxe")[
            int(rng.integers(8))
        ]
    return word(rng, 2, 3).upper()


def _relief(cov: np.ndarray, rng: np.random.Generator, px: int) -> np.ndarray:
    """The slope of `cov` blurred into a bevel, towards a random light (-1..1)."""
    height = gaussian_filter(cov, max(0.6, px / 20))
    gy, gx = np.gradient(height)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    slope = gx * math.cos(theta) + gy * math.sin(theta)
    return slope / max(float(np.abs(slope).max()), 1e-6)


def _chrome(rng: np.random.Generator, font: ImageFont.FreeTypeFont, px: int) -> np.ndarray:
    """Chrome lettering or a chrome emblem, RGBA float (h, w, 4): a mirror of a bright sky
    over a dark ground, banded along the letters' height, with a bevel's highlights."""
    if rng.random() < 0.3:
        cov = np.pad(np.asarray(emblem(rng, max(12, int(px * 1.6))), np.float32) / 255.0, 2)
    else:
        cov = _coverage(_model_badge(rng), font, 2)
    h, w = cov.shape
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    horizon = float(rng.uniform(0.35, 0.65))
    # Sky above the horizon line, a dark band at it, a dimmer ground below.
    sky = 170 + 80 * (1 - y / max(horizon, 1e-3))
    ground = 60 + 90 * (y - horizon) / max(1 - horizon, 1e-3)
    tone = np.where(y < horizon, sky, ground) - 70 * np.exp(-(((y - horizon) / 0.06) ** 2))
    tone = np.broadcast_to(tone, (h, w)) + 90 * _relief(cov, rng, px)
    tint = np.array([1.0, 1.0, 1.0], np.float32)
    if rng.random() < 0.25:  # gold or a coloured anodised finish
        tint = rng.uniform(0.7, 1.1, 3).astype(np.float32)
    rgb = np.clip(tone[..., None] * tint, 0, 255)
    return np.concatenate([rgb, cov[..., None] * 255.0], axis=2)


def _embossed(rng: np.random.Generator, font: ImageFont.FreeTypeFont, px: int) -> np.ndarray:
    """Text pressed into a metal or plastic panel: the panel's own brushed texture, the
    letters only as light and shade (RGBA float)."""
    text = _model_badge(rng) if rng.random() < 0.5 else scene_phrase(rng).split("\n")[0]
    pad = max(3, px // 2)
    cov = _coverage(text, font, pad)
    h, w = cov.shape
    base = float(rng.uniform(90, 210))
    brushed = gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), (0.5, 6.0)) * 25
    slope = _relief(cov, rng, px)
    tone = base + brushed + 80 * slope
    rgb = np.clip(tone[..., None] * rng.uniform(0.9, 1.1, 3).astype(np.float32), 0, 255)
    return np.concatenate([rgb, np.full((h, w, 1), 255.0, np.float32)], axis=2)


def _barcode(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    bars = rng.random(max(8, w // 2)) < 0.5
    strip = np.repeat(bars, 2)[:w]
    strip = np.pad(strip, (0, max(0, w - strip.size)))
    return Image.fromarray(np.where(np.broadcast_to(strip, (h, w)), 0, 255).astype(np.uint8), "L")


def _label(rng: np.random.Generator, fonts: Sequence[Path], px: int) -> np.ndarray:
    """A printed label or packaging front: a product name, lines of small print, maybe a
    barcode, on a coloured card (RGBA float)."""
    paper = rng.uniform(150, 255, 3) if rng.random() < 0.6 else rng.uniform(0, 255, 3)
    ink = (10, 10, 10) if paper.mean() > 128 else (245, 245, 245)
    big = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), max(8, px))
    small = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), max(6, px // 3))
    title = word(rng, 2, 3).capitalize() if rng.random() < 0.5 else _model_badge(rng)
    lines = [
        " ".join(word(rng, 1, 3) for _ in range(int(rng.integers(2, 5))))
        for _ in range(int(rng.integers(1, 5)))
    ]
    tw = int(big.getlength(title)) + px
    lw = max(int(small.getlength(line)) for line in lines) + px // 2
    w = max(tw, lw, 4 * px)
    h = int(px * 1.5 + len(lines) * small.size * 1.3 + px * (1.2 if rng.random() < 0.4 else 0.3))
    card = Image.new("RGB", (w, h), tuple(int(c) for c in paper))
    draw = ImageDraw.Draw(card)
    if rng.random() < 0.5:  # a colour band behind the title
        band = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle((0, 0, w, int(px * 1.4)), fill=band)
        title_ink = (10, 10, 10) if sum(band) > 380 else (245, 245, 245)
    else:
        title_ink = ink
    draw.text((w / 2, px * 0.7), title, fill=title_ink, font=big, anchor="mm")
    y = px * 1.5
    for line in lines:
        draw.text((px // 4, y), line, fill=ink, font=small)
        y += small.size * 1.3
    if y + px < h:
        code = _barcode(rng, min(w - px // 2, 4 * px), int(px * 0.8))
        card.paste(0, (px // 4, int(y)), mask=Image.eval(code, lambda v: 255 - v))
    rgb = np.asarray(card, np.float32)
    if rng.random() < 0.5:  # wrapped round a bottle or a can: compressed and darker at the sides
        u = np.linspace(-1.0, 1.0, w, dtype=np.float32)
        src = (np.arcsin(np.clip(u * 0.95, -1, 1)) / math.asin(0.95) * 0.5 + 0.5) * (w - 1)
        rgb = rgb[:, np.round(src).astype(int)] * (0.55 + 0.45 * np.sqrt(1 - (u * 0.95) ** 2))[None, :, None]
    return np.concatenate([rgb, np.full((h, w, 1), 255.0, np.float32)], axis=2)


def _screen(rng: np.random.Generator, fonts: Sequence[Path], px: int, crop: np.ndarray) -> np.ndarray:
    """A lit screen in its bezel: a picture or a page of text, brighter than the room
    (RGBA float). `crop` is a background crop that may be the picture."""
    w = int(px * rng.uniform(5, 9))
    h = int(w * rng.uniform(0.55, 0.8))
    bezel = max(2, w // 25)
    out = np.full((h, w, 3), float(rng.uniform(5, 40)), np.float32)
    iw, ih = w - 2 * bezel, h - 2 * bezel
    if rng.random() < 0.5:
        inner = Image.fromarray(crop).resize((iw, ih), Image.Resampling.BILINEAR)
    else:
        inner = Image.new("RGB", (iw, ih), (250, 250, 250) if rng.random() < 0.6 else (30, 30, 40))
        dark = inner.getpixel((0, 0))[0] < 128
        font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), max(6, px // 2))
        draw = ImageDraw.Draw(inner)
        y = 2
        while y < ih - font.size:
            draw.text(
                (3, y),
                " ".join(word(rng, 1, 3) for _ in range(4)),
                fill=(230,) * 3 if dark else (20,) * 3,
                font=font,
            )
            y += int(font.size * 1.5)
    glow = float(rng.uniform(1.0, 1.3))
    out[bezel : bezel + ih, bezel : bezel + iw] = np.clip(np.asarray(inner, np.float32) * glow + 10, 0, 255)
    return np.concatenate([out, np.full((h, w, 1), 255.0, np.float32)], axis=2)


def _plate(rng: np.random.Generator, fonts: Sequence[Path], px: int) -> np.ndarray:
    """A licence plate: dark characters on a white or yellow plate with a border, maybe a
    blue band at its left (RGBA float)."""
    chars = "ABCDEFGHJKLMNPRSTUVWXYZ"
    digits = "0123456789"
    pick = lambda pool, n: "".join(pool[int(i)] for i in rng.integers(len(pool), size=n))  # noqa: E731
    text = (
        f"{pick(chars, 2)}{pick(digits, 2)} {pick(chars, 3)}",
        f"{pick(digits, 1)}{pick(chars, 3)}{pick(digits, 3)}",
        f"{pick(chars, 2)}-{pick(digits, 3)}-{pick(chars, 2)}",
        f"{pick(digits, 2)}{pick(chars, 1)}-{pick(digits, 3)}.{pick(digits, 2)}",
    )[int(rng.integers(4))]
    font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), max(8, px))
    w = int(font.getlength(text) + px * 1.2)
    h = int(px * 1.5)
    ground = (250, 250, 245) if rng.random() < 0.7 else (250, 210, 30)
    plate = Image.new("RGB", (w, h), ground)
    draw = ImageDraw.Draw(plate)
    x0 = 0
    if rng.random() < 0.4:
        x0 = px // 2
        draw.rectangle((0, 0, x0, h), fill=(20, 60, 160))
    draw.rectangle((0, 0, w - 1, h - 1), outline=(15, 15, 15), width=max(1, px // 12))
    draw.text(((w + x0) / 2, h / 2), text, fill=(15, 15, 15), font=font, anchor="mm")
    return np.concatenate([np.asarray(plate, np.float32), np.full((h, w, 1), 255.0, np.float32)], axis=2)


def _occluder(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Where something in front hides the object (1) as a soft-edged blob or a bar
    crossing it, (h, w) float."""
    out = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(out)
    if rng.random() < 0.5:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.15, 0.5) * max(w, h)
        draw.ellipse((cx - r, cy - r * rng.uniform(0.5, 1.0), cx + r, cy + r), fill=255)
    else:
        x = rng.uniform(0, w)
        draw.polygon(
            [
                (x, -1),
                (x + rng.uniform(0.05, 0.3) * w, -1),
                (x + rng.uniform(-0.3, 0.3) * w, h + 1),
                (x - 0.1 * w, h + 1),
            ],
            fill=255,
        )
    return gaussian_filter(np.asarray(out, np.float32) / 255.0, float(rng.uniform(0.5, 2.0)))


def draw_scene_object(
    rng: np.random.Generator,
    image: np.ndarray,
    kinds: Sequence[str],
    fonts: Sequence[Path],
    other: np.ndarray | None = None,
    large: bool = False,
) -> str:
    """Paint one object of a kind from `kinds` (`SCENE_OBJECTS`) into `image` ((S, S, 3)
    float32, in place), lit by the image's own light, in perspective, maybe occluded;
    returns its kind. `other` is a background crop a screen may show; `large`: seen
    face-on and close (see `plane_corners`)."""
    size = image.shape[0]
    kind = kinds[int(rng.integers(len(kinds)))]
    px = max(8, int(size * rng.uniform(*((0.12, 0.3) if large else (0.05, 0.16)))))
    font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), px)
    if kind == "chrome":
        rgba = _chrome(rng, font, px)
    elif kind == "embossed":
        rgba = _embossed(rng, font, px)
    elif kind == "label":
        rgba = _label(rng, fonts, px)
    elif kind == "screen":
        rgba = _screen(rng, fonts, px, other if other is not None else image.astype(np.uint8))
    elif kind == "plate":
        rgba = _plate(rng, fonts, px)
    else:
        raise ValueError(f"scene object {kind!r}: use one of {', '.join(SCENE_OBJECTS)}")
    h, w = rgba.shape[:2]
    if kind != "chrome" and rng.random() < 0.5:  # a rounded outline for cards and plates
        alpha = Image.new("L", (w, h), 0)
        ImageDraw.Draw(alpha).rounded_rectangle((0, 0, w - 1, h - 1), radius=int(min(w, h) * 0.15), fill=255)
        rgba[..., 3] *= np.asarray(alpha, np.float32) / 255.0
    if rng.random() < 0.4:
        rgba[..., 3] *= 1.0 - _occluder(rng, h, w)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    dst = plane_corners(rng, w, h, size, (0.2, 0.8), 15.0, 0.2, large)
    coeffs = perspective_coefficients(dst, corners)
    planes = [
        Image.fromarray(np.clip(rgba[..., c], 0, 255).astype(np.uint8)).transform(
            (size, size), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR
        )
        for c in range(4)
    ]
    warped = np.stack([np.asarray(p, np.float32) for p in planes], axis=2)
    sigma = float(rng.uniform(0.0, 1.0))
    if sigma > 0.3:  # the photo's focus
        warped = gaussian_filter(warped, (sigma, sigma, 0), mode="nearest")
    a = warped[..., 3:] / 255.0
    # The scene's light: the photo's own smoothed brightness around the object, and a
    # gradient across it.
    grey = gaussian_filter(image.mean(axis=2), size / 12, mode="nearest")
    local = np.clip(grey / max(float(grey.mean()), 1.0), 0.4, 1.6) ** float(rng.uniform(0.2, 0.8))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gx, gy = rng.uniform(-0.4, 0.4, 2)
    light = (float(rng.uniform(0.75, 1.1)) + gx * (xx - 0.5) + gy * (yy - 0.5)) * local
    image *= 1.0 - a
    image += a * np.clip(warped[..., :3] * light[..., None], 0, 255)
    return kind


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


def draw_sign(rng: np.random.Generator, image: np.ndarray, fonts: Sequence[Path], large_prob: float) -> None:
    """Paint a sign into `image` (float (size, size, 3)) in place: opaque text on a panel,
    warped in perspective, shaded by a light gradient and softened like the photo's focus;
    large (a close-up) with probability `large_prob`."""
    size = image.shape[0]
    large = large_prob > 0 and rng.random() < large_prob
    text = scene_phrase(rng)
    px = max(6, int(size * rng.uniform(*((0.15, 0.4) if large else (0.06, 0.22)))))
    font = font_at(fonts[int(rng.integers(len(fonts)))], px)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=font, anchor="mm", align="center")
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
