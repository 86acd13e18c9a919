"""Laying marks over a photo: blend modes, placement (one mark, a tiled grid, a banner, a
corner signature), the marks' own layer of opacity and colour, and the ground-truth mask."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from wmseg.synth.config import BLEND_MODES, SynthConfig
from wmseg.synth.layers import MarkLayers


def blend(base: np.ndarray, color: np.ndarray, mode: str) -> np.ndarray:
    """The colour a fully opaque mark of `color` gives over `base` (float 0-255), as image
    editors define the modes; opacity then mixes it with `base`."""
    if mode == "normal":
        return np.broadcast_to(color, base.shape)
    if mode == "multiply":
        return base * color / 255.0
    if mode == "screen":
        return 255.0 - (255.0 - base) * (255.0 - color) / 255.0
    if mode == "overlay":
        return np.where(
            base < 128, 2 * base * color / 255.0, 255.0 - 2 * (255.0 - base) * (255.0 - color) / 255.0
        )
    raise ValueError(f"blend mode {mode!r}: use one of {', '.join(BLEND_MODES)}")


def texture(image: np.ndarray) -> float:
    """How finely textured an image is: the mean absolute Laplacian of its grey levels."""
    grey = np.asarray(image, np.float32).mean(axis=2)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(np.abs(lap).mean())


class Sample(NamedTuple):
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8, 1 = watermark


class MarkTargets(NamedTuple):
    """The marks of a sample as one layer over the photo: the composite is
    `(1 - opacity) clean + opacity colour` wherever `known` (before degradation).
    Normal-blend marks give it exactly; pixels a multiply, screen or overlay mark touches
    are not known (a coloured multiply or screen scales each channel by its own factor and
    an overlay's result depends on the photo: no single opacity and colour reproduce them)."""

    opacity: np.ndarray  # (H, W) float32 in [0, 1]; 0 where no mark
    colour: np.ndarray  # (H, W, 3) float32, 0-255; 0 where no mark
    known: np.ndarray  # (H, W) bool


def new_layer(size: int) -> dict[str, np.ndarray]:
    """The marks of one sample as one layer, empty: premultiplied colour and opacity laid
    over in order by `composite`, and where they are known (normal blend only)."""
    return {
        "alpha": np.zeros((size, size, 1), np.float32),
        "premult": np.zeros((size, size, 3), np.float32),
        "known": np.ones((size, size), bool),
    }


def layer_targets(layer: dict[str, np.ndarray]) -> MarkTargets:
    """The `MarkTargets` of a layer `composite` has drawn into."""
    alpha = layer["alpha"]
    colour = np.where(alpha > 0, layer["premult"] / np.maximum(alpha, 1e-6), 0.0).astype(np.float32)
    return MarkTargets(alpha[..., 0], colour, layer["known"])


def footprint(image: np.ndarray, clean: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """The ground-truth mask, uint8 (H, W): where the marks change the photo visibly,
    before degradation."""
    diff = np.abs(image - clean)
    diff = diff.max(axis=2) if cfg.footprint_channels == "max" else diff.mean(axis=2)
    if cfg.footprint_blur > 0:
        diff = gaussian_filter(diff, cfg.footprint_blur, mode="nearest")
    return (diff >= cfg.visibility_threshold).astype(np.uint8)


def composite(
    rng: np.random.Generator, image: np.ndarray, marks: MarkLayers, tiled: bool, layer: dict | None = None
) -> None:
    """Draw one mark of `marks` (or one tiled grid of it) into `image` in place; with
    `layer` (`new_layer`), also over its opacity and premultiplied colour."""
    cfg = marks.config
    size = cfg.size
    layers, box, (left, top, right, bottom), px, angle, mode, style, corner = marks.spec(rng, tiled)
    if tiled:
        # Stamp a grid on a canvas that covers the image at any rotation, then rotate
        # the canvas and crop its centre.
        side = int(size * 1.5)
        dx = (right - left) + px * rng.uniform(0.8, 2.5)
        dy = (bottom - top) + px * rng.uniform(1.0, 3.0)
        spots = [
            (x + (dx / 2 if r % 2 else 0), r * dy)
            for r in range(int(side / dy) + 2)
            for x in np.arange(-dx, side + dx, dx)
        ]
        o = (side - size) // 2
        lines = cfg.line_grid_prob > 0 and rng.random() < cfg.line_grid_prob
        if lines:
            layers.append((marks.line_grid(rng, side, dy, px), layers[-1][1], layers[-1][2]))
    else:
        side = size
        spots = [(size / 2 + rng.uniform(-0.45, 0.45) * size, size / 2 + rng.uniform(-0.45, 0.45) * size)]
        o = 0
        if style == "banner":
            # Along the top or the bottom edge, where listing sites put theirs.
            w, h = right - left, bottom - top
            y = h / 2 + size * rng.uniform(0.0, 0.12)
            x = size / 2 if w >= size else rng.uniform(w / 2, max(w / 2, size - w / 2) + 1e-3)
            spots = [(x, y if rng.random() < 0.5 else size - y)]
        elif corner:
            # A signature: level, pulled in so that it ends near a corner.
            angle = float(rng.uniform(-4, 4))
            w, h = right - left, bottom - top
            cx = (w / 2 + size * rng.uniform(0.02, 0.06)) if rng.random() < 0.5 else None
            cy = (h / 2 + size * rng.uniform(0.02, 0.06)) if rng.random() < 0.5 else None
            spots = [
                (
                    cx if cx is not None else size - w / 2 - size * rng.uniform(0.02, 0.06),
                    cy if cy is not None else size - h / 2 - size * rng.uniform(0.02, 0.06),
                )
            ]
    for tile, col, op in layers:
        if tiled and tile.size == (side, side):  # the line grid: already the whole canvas
            cov = tile.rotate(angle, Image.Resampling.BILINEAR).crop((o, o, o + size, o + size))
        elif tiled:
            cov = Image.new("L", (side, side), 0)
            for x, y in spots:
                cov.paste(255, (round(x) + box[0], round(y) + box[1]), mask=tile)
            cov = cov.rotate(angle, Image.Resampling.BILINEAR).crop((o, o, o + size, o + size))
        else:
            # Rotate only the text's own tile: much cheaper than the whole canvas.
            tile = tile.rotate(angle, Image.Resampling.BILINEAR, expand=True)
            (x, y), cov = spots[0], Image.new("L", (size, size), 0)
            cov.paste(tile, (round(x - tile.width / 2), round(y - tile.height / 2)))
        a = np.asarray(cov, np.float32)[..., None] * (op / 255.0)  # (H, W, 1)
        target = blend(image, col, mode) if mode != "normal" else col
        image *= 1.0 - a
        image += a * target
        if layer is not None:
            if mode == "normal":
                layer["premult"] *= 1.0 - a
                layer["premult"] += a * col
                layer["alpha"] *= 1.0 - a
                layer["alpha"] += a
            else:
                layer["known"] &= a[..., 0] == 0
