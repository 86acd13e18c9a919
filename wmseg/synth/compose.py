"""The fast path of synthesis: samples composed from a layer bank (`wmseg.synth.layer_bank`).

A sample is drawn in two steps, each a pure function of (config, seed, index):

1. `Composer.plan` draws a `Plan`: which bank background (and which of its 8 flips and
   quarter turns), and for each mark which bank layer, where it sits, at what scale,
   angle and opacity factor, in which blend mode and colour; for a tiled mark its grid's
   spacing, phase and line grid; then the degradations (colour shift, blur, resize,
   noise, JPEG). All of it is fixed-size arrays, so plans batch.
2. `compose` carries a plan out with NumPy and OpenCV: every mark is placed by one
   inverse map (output pixel -> tile pixel; a tiled grid folds the map back into one cell
   with a modulo) sampled bilinearly, laid over the photo in its blend mode; the mask is
   the visible footprint, exactly as the renderer defines it; then the image is degraded.
   `wmseg.data.gpu_compose` carries out the same plans in torch, on a GPU.

It is its own generator, not a faster copy of `WatermarkSynth.render`: marks keep their
rendered look, but a sub-layered mark blends as one layer, and placement, scale and
colour are drawn at compose time. No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from wmseg.synth.composition import MarkTargets
from wmseg.synth.config import SynthConfig
from wmseg.synth.layer_bank import COL, STYLES, LayerBank
from wmseg.synth.layers import rand_color

_COMPOSE_STREAM = 0xC0
NOISE_LENGTH = 1 << 22  # a shared table of standard normal noise; a sample reads a window
LINES = ("on", "width", "period", "offset", "slant_on", "nx", "ny", "step", "slant_offset")
DEGRADE = (
    "shift", "gain_r", "gain_g", "gain_b", "off_r", "off_g", "off_b",
    "blur", "resize", "noise", "noise_at", "jpeg",
)  # fmt: skip


@dataclass(frozen=True)
class ComposeOptions:
    """What the compositor draws on top of the bank's own variety: a scale factor within
    1 +- `scale_jitter`, an opacity factor within `opacity_jitter` (low, high), and for a
    one-colour mark a new colour with `recolour_prob`."""

    scale_jitter: float = 0.15
    opacity_jitter: tuple[float, float] = (0.8, 1.2)
    recolour_prob: float = 0.5

    def __post_init__(self) -> None:
        lo, hi = self.opacity_jitter
        if not 0.0 <= self.scale_jitter < 1.0 or not 0.0 < lo <= hi or not 0.0 <= self.recolour_prob <= 1.0:
            raise ValueError(
                "compose options: scale_jitter within [0, 1), opacity_jitter (low, high) with "
                f"0 < low <= high, recolour_prob within [0, 1]; got {self}"
            )


class Plan(NamedTuple):
    """One sample's draws, fixed-size arrays (K mark slots)."""

    background: np.ndarray  # () int64: bank background
    dihedral: np.ndarray  # () int64: 0-7, flips and quarter turns of it
    valid: np.ndarray  # (K,) bool
    layer: np.ndarray  # (K,) int64
    tiled: np.ndarray  # (K,) bool
    inverse: np.ndarray  # (K, 2, 3) float32: output pixel (x, y, 1) -> grid or tile coords
    cell: np.ndarray  # (K, 4) float32: tiled cell width, height, tile x and y in its cell
    opacity: np.ndarray  # (K,) float32: factor on the tile's alpha
    mode: np.ndarray  # (K,) int64: BLEND_MODES index
    recolour: np.ndarray  # (K,) bool
    colour: np.ndarray  # (K, 3) float32: the colour of a recoloured mark and of its lines
    lines: np.ndarray  # (K, len(LINES)) float32: a tiled mark's line grid
    degrade: np.ndarray  # (len(DEGRADE),) float32


def noise_table(seed: int = 0) -> np.ndarray:
    """The standard normal noise every sample reads its noise from (float32)."""
    return np.random.default_rng([seed, _COMPOSE_STREAM]).standard_normal(NOISE_LENGTH, np.float32)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian of radius ceil(4 sigma), as scipy.ndimage truncates."""
    radius = max(1, math.ceil(4.0 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def dihedral(image: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips and quarter turns of an (H, W, C) array."""
    out = np.rot90(image, code % 4)
    return out[:, ::-1] if code >= 4 else out


def rotation_inverse(angle: float, scale: float, centre: tuple[float, float], origin: tuple[float, float]):
    """The 2x3 map from an output pixel to mark coordinates for a mark turned by `angle`
    degrees (counter-clockwise, as PIL turns), scaled by `scale`, its origin at `centre`;
    `origin` is added to the result (the tile pixel of the mark's origin)."""
    t = math.radians(angle)
    c, s = math.cos(t) / scale, math.sin(t) / scale
    cx, cy = centre
    ox, oy = origin
    # m = R(-angle) (p - centre) / scale + origin
    return np.array([[c, -s, ox - c * cx + s * cy], [s, c, oy - s * cx - c * cy]], np.float32)


class Composer:
    """Plans and composes samples of `config` from `bank`.

    Example:
        >>> composer = Composer(config, bank)  # doctest: +SKIP
        >>> image, mask = composer.render(seed=0, index=3)  # doctest: +SKIP
    """

    def __init__(self, config: SynthConfig, bank: LayerBank, options: ComposeOptions | None = None) -> None:
        self.config, self.bank, self.options = config, bank, options or ComposeOptions()
        self.slots = max(1, config.max_marks)
        self._index: np.ndarray | None = None
        self._textures: np.ndarray | None = None
        self._noise: np.ndarray | None = None

    @property
    def index(self) -> np.ndarray:
        if self._index is None:
            self._index = self.bank.layer_index()
        return self._index

    @property
    def noise(self) -> np.ndarray:
        if self._noise is None:
            self._noise = noise_table(self.bank.spec.seed)
        return self._noise

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_index": None, "_textures": None, "_noise": None}

    def _pick(self, rng: np.random.Generator, tiled: bool) -> int:
        """A random layer of the kind asked for (a grid unit or a single mark)."""
        index = self.index
        n = len(index)
        start = int(rng.integers(n))
        for step in range(n):  # the kinds interleave, so this ends within a few steps
            j = (start + step) % n
            if bool(index[j, COL["tiled"]]) == tiled:
                return j
        return start

    def plan(self, seed: int, index: int) -> Plan:
        cfg, opts, size, k = self.config, self.options, self.config.size, self.slots
        rng = np.random.default_rng([seed, index, _COMPOSE_STREAM])
        valid = np.zeros(k, bool)
        layer = np.zeros(k, np.int64)
        tiled = np.zeros(k, bool)
        inverse = np.zeros((k, 2, 3), np.float32)
        cell = np.zeros((k, 4), np.float32)
        opacity = np.ones(k, np.float32)
        mode = np.zeros(k, np.int64)
        recolour = np.zeros(k, bool)
        colour = np.zeros((k, 3), np.float32)
        lines = np.zeros((k, len(LINES)), np.float32)
        marked = rng.random() >= cfg.clean_fraction
        n_bg = self.bank.spec.backgrounds
        background = int(rng.integers(n_bg))
        if not marked and cfg.texture_clean_prob > 0 and rng.random() < cfg.texture_clean_prob:
            if self._textures is None:
                self._textures = self.bank.textures()
            candidates = rng.integers(n_bg, size=cfg.texture_candidates)
            background = int(candidates[np.argmax(self._textures[candidates])])
        code = int(rng.integers(8))
        if marked:
            grid = cfg.tiled_fraction > 0 and rng.random() < cfg.tiled_fraction
            count = 1 if grid else int(rng.integers(1, cfg.max_marks + 1))
            for slot in range(count):
                j = self._pick(rng, grid)
                row = self.index[j]
                valid[slot], layer[slot], tiled[slot] = True, j, grid
                h, w = row[COL["height"]], row[COL["width"]]
                ew, eh, px = row[COL["extent_w"]], row[COL["extent_h"]], row[COL["px"]]
                style = STYLES[int(row[COL["style"]])]
                level = style is not None or bool(row[COL["corner"]])
                scale = 1.0 if level else float(rng.uniform(1 - opts.scale_jitter, 1 + opts.scale_jitter))
                angle = float(row[COL["angle"]])
                if grid:
                    dx = ew + px * rng.uniform(0.8, 2.5)
                    dy = eh + px * rng.uniform(1.0, 3.0)
                    phase = rng.uniform(0, 1, 2) * (dx, dy)
                    inverse[slot] = rotation_inverse(angle, scale, (size / 2, size / 2), tuple(phase))
                    cell[slot] = (dx, dy, (dx - w) / 2, (dy - h) / 2)
                    if cfg.line_grid_prob > 0 and rng.random() < cfg.line_grid_prob:
                        width = 1.0 if rng.random() < 0.6 else 2.0
                        slant = rng.random() < 0.5
                        theta = math.radians(rng.uniform(30, 70)) * (1 if rng.random() < 0.5 else -1)
                        step = max(dy, px) * rng.uniform(1.0, 2.5)
                        lines[slot] = (
                            1.0, width, dy, rng.uniform(0, dy), float(slant),
                            math.sin(theta), math.cos(theta), step, rng.uniform(0, step),
                        )  # fmt: skip
                else:
                    cx, cy = self._centre(rng, style, bool(row[COL["corner"]]), w * scale, h * scale)
                    # The tile's pixel (w / 2, h / 2) is the mark's centre.
                    inverse[slot] = rotation_inverse(angle, scale, (cx, cy), (w / 2 - 0.5, h / 2 - 0.5))
                opacity[slot] = float(rng.uniform(*opts.opacity_jitter))
                mode[slot] = int(row[COL["mode"]])
                colour[slot] = row[[COL["red"], COL["green"], COL["blue"]]]
                if row[COL["mono"]] and rng.random() < opts.recolour_prob:
                    recolour[slot] = True
                    colour[slot] = rand_color(rng)
                    if style == "plain_logo":
                        colour[slot] = 255.0 if rng.random() < 0.6 else 0.0
        degrade = self._degradations(rng)
        return Plan(
            np.int64(background), np.int64(code), valid, layer, tiled, inverse, cell, opacity, mode,
            recolour, colour, lines, degrade,
        )  # fmt: skip

    def _centre(self, rng: np.random.Generator, style: str | None, corner: bool, w: float, h: float):
        size = self.config.size
        if style == "banner":  # along the top or the bottom edge
            y = h / 2 + size * rng.uniform(0.0, 0.12)
            x = size / 2 if w >= size else rng.uniform(w / 2, max(w / 2, size - w / 2) + 1e-3)
            return x, (y if rng.random() < 0.5 else size - y)
        if corner or style == "id":  # pulled in so that it ends near a corner
            m = size * rng.uniform(0.02, 0.06, 2)
            x = w / 2 + m[0] if rng.random() < 0.5 else size - w / 2 - m[0]
            y = h / 2 + m[1] if rng.random() < 0.5 else size - h / 2 - m[1]
            return x, y
        return tuple(size / 2 + rng.uniform(-0.45, 0.45, 2) * size)

    def _degradations(self, rng: np.random.Generator) -> np.ndarray:
        cfg, size = self.config, self.config.size
        out = np.zeros(len(DEGRADE), np.float32)
        if cfg.color_shift_prob > 0 and rng.random() < cfg.color_shift_prob:
            out[0] = 1.0
            out[1:4] = rng.uniform(0.9, 1.1, 3)
            out[4:7] = rng.uniform(-12, 12, 3)
        if cfg.blur_prob > 0 and rng.random() < cfg.blur_prob:
            out[7] = rng.uniform(*cfg.blur_sigma)
        if cfg.resize_prob > 0 and rng.random() < cfg.resize_prob:
            out[8] = rng.uniform(*cfg.resize_scale)
        out[9] = rng.uniform(*cfg.noise_std)
        out[10] = rng.integers(NOISE_LENGTH - size * size * 3)
        if rng.random() < cfg.jpeg_prob:
            out[11] = rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)
        return out

    def render(self, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image uint8 (H, W, 3), mask uint8 (H, W)) of sample `index` of stream `seed`."""
        return compose(self.plan(seed, index), self.bank, self.config, self.noise)

    def render_targets(
        self, seed: int, index: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, MarkTargets]:
        """`render`'s sample, its background through the same degradations (the clean
        photo) and the marks' opacity and colour, as `WatermarkSynth.render_targets`."""
        plan = self.plan(seed, index)
        image, mask, targets = compose(plan, self.bank, self.config, self.noise, track=True)
        clean = dihedral(self.bank.background(int(plan.background)), int(plan.dihedral))
        clean = degrade(clean.astype(np.float32), plan.degrade, self.noise, self.config.size)
        return (image, mask), clean, targets


def mark_region(plan: Plan, slot: int, row: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the output pixels a mark slot can touch (all of them for a grid)."""
    if plan.tiled[slot]:
        return 0, 0, size, size
    forward = cv2.invertAffineTransform(plan.inverse[slot])
    h, w = row[COL["height"]], row[COL["width"]]
    corners = np.array([[-1, -1, 1], [w, -1, 1], [w, h, 1], [-1, h, 1]], np.float32) @ forward.T
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    return max(0, x0), max(0, y0), min(size, x1), min(size, y1)


def mark_maps(plan: Plan, slot: int, region: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Tile pixel coordinates (2, h, w) of the output pixels of `region` for one mark slot,
    and its grid coordinates (the same for a single mark; used by a line grid)."""
    x0, y0, x1, y1 = region
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    m = plan.inverse[slot]
    u = m[0, 0] * xx + m[0, 1] * yy + m[0, 2]
    v = m[1, 0] * xx + m[1, 1] * yy + m[1, 2]
    if not plan.tiled[slot]:
        return np.stack([u, v]), np.stack([u, v])
    dx, dy, tx, ty = plan.cell[slot]
    r = np.floor(v / dy)
    shift = np.where(np.mod(r, 2) == 1, dx / 2, 0.0).astype(np.float32)
    return np.stack([np.mod(u - shift, dx) - tx, v - r * dy - ty]), np.stack([u, v])


def line_coverage(lines: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage (0-1) of a tiled mark's line grid at grid coordinates."""
    _, width, period, offset, slant_on, nx, ny, step, slant_offset = (float(v) for v in lines)
    u, v = grid

    def band(t: np.ndarray, p: float, o: float) -> np.ndarray:
        m = np.mod(t - o, p)
        d = np.minimum(m, p - m)
        return np.clip(width / 2 + 0.5 - d, 0.0, 1.0)

    cov = band(v, period, offset)
    if slant_on:
        cov = np.maximum(cov, band(u * nx + v * ny, step, slant_offset))
    return cov


def blend_target(image: np.ndarray, colour: np.ndarray, mode: int) -> np.ndarray:
    """The colour a fully opaque mark gives over `image` in blend mode `mode` (an index of
    BLEND_MODES), as `wmseg.synth.composition.blend`."""
    if mode == 0:
        return colour
    if mode == 1:
        return image * colour / 255.0
    if mode == 2:
        return 255.0 - (255.0 - image) * (255.0 - colour) / 255.0
    return np.where(
        image < 128, 2 * image * colour / 255.0, 255.0 - 2 * (255.0 - image) * (255.0 - colour) / 255.0
    )


def compose(plan: Plan, bank: LayerBank, config: SynthConfig, noise: np.ndarray, track: bool = False):
    """Carry out `plan`: (image uint8 (H, W, 3), mask uint8 (H, W)); with `track`, also
    the marks' `MarkTargets` (normal blends laid over one layer of opacity and
    premultiplied colour; pixels another blend mode touches unknown)."""
    size = config.size
    clean = dihedral(bank.background(int(plan.background)), int(plan.dihedral))
    image = clean.astype(np.float32)
    if track:
        alpha = np.zeros((size, size, 1), np.float32)
        premult = np.zeros((size, size, 3), np.float32)
        known = np.ones((size, size), bool)

    def lay(region: tuple[int, int, int, int], a: np.ndarray, colour: np.ndarray, mode: int) -> None:
        x0, y0, x1, y1 = region
        if mode != 0:
            known[y0:y1, x0:x1] &= a[..., 0] == 0
            return
        p, al = premult[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
        p *= 1.0 - a
        p += a * colour
        al *= 1.0 - a
        al += a

    touched = [size, size, 0, 0]  # the union of the marks' regions: the footprint is 0 elsewhere
    for slot in np.flatnonzero(plan.valid):
        tile, row = bank.layer(int(plan.layer[slot]))
        x0, y0, x1, y1 = region = mark_region(plan, slot, row, size)
        if x1 <= x0 or y1 <= y0:
            continue
        touched = [min(touched[0], x0), min(touched[1], y0), max(touched[2], x1), max(touched[3], y1)]
        maps, grid = mark_maps(plan, slot, region)
        # Straight colour and alpha sampled together (the bank bleeds colour past edges).
        sampled = cv2.remap(tile, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        sampled = sampled.astype(np.float32)
        a = np.minimum(sampled[..., 3:] * (plan.opacity[slot] / 255.0), 1.0)
        colour = plan.colour[slot] if plan.recolour[slot] else sampled[..., :3]
        view = image[y0:y1, x0:x1]
        step = blend_target(view, colour, int(plan.mode[slot])) - view
        step *= a
        view += step
        if track:
            lay(region, a, colour, int(plan.mode[slot]))
        if plan.lines[slot, 0]:
            op = float(row[COL["opacity"]]) * float(plan.opacity[slot])
            a = np.minimum(line_coverage(plan.lines[slot], grid) * op, 1.0)[..., None]
            view += a * (blend_target(view, plan.colour[slot], int(plan.mode[slot])) - view)
            if track:
                lay(region, a, plan.colour[slot], int(plan.mode[slot]))
    diff = np.zeros((size, size), np.float32)
    x0, y0, x1, y1 = touched
    if x1 > x0 and y1 > y0:
        diff[y0:y1, x0:x1] = channel_difference(image[y0:y1, x0:x1], clean[y0:y1, x0:x1], config)
    out, mask = degrade(image, plan.degrade, noise, size), footprint(diff, config)
    if not track:
        return out, mask
    colour = np.where(alpha > 0, premult / np.maximum(alpha, 1e-6), 0.0).astype(np.float32)
    return out, mask, MarkTargets(alpha[..., 0], colour, known)


def channel_difference(image: np.ndarray, clean: np.ndarray, config: SynthConfig) -> np.ndarray:
    """|image - clean| per pixel: its largest channel, or the channels' mean."""
    r, g, b = cv2.split(cv2.absdiff(image, clean.astype(np.float32)))
    return cv2.max(cv2.max(r, g), b) if config.footprint_channels == "max" else (r + g + b) / 3.0


def footprint(diff: np.ndarray, config: SynthConfig) -> np.ndarray:
    """The visible footprint of a composite whose per-pixel difference from the clean photo
    is `diff`: where it reaches `visibility_threshold` (after the optional
    `footprint_blur`), as the renderer's mask."""
    if config.footprint_blur > 0:
        k = gaussian_kernel(config.footprint_blur)
        diff = cv2.sepFilter2D(diff, -1, k, k, borderType=cv2.BORDER_REPLICATE)
    return (diff >= config.visibility_threshold).astype(np.uint8)


def degrade(image: np.ndarray, d: np.ndarray, noise: np.ndarray, size: int) -> np.ndarray:
    """Colour shift, blur, down-and-up resize, noise, rounding and JPEG, as drawn in `d`."""
    if d[0]:  # per-channel gain and offset, as OpenCV scalars (no broadcast temporaries)
        image = cv2.add(cv2.multiply(image, (*d[1:4].tolist(), 0.0)), (*d[4:7].tolist(), 0.0))
    if d[7] > 0:
        k = gaussian_kernel(float(d[7]))
        image = cv2.sepFilter2D(image, -1, k, k, borderType=cv2.BORDER_REPLICATE)
    if d[8] > 0:
        small = max(1, round(size * float(d[8])))
        image = cv2.resize(image, (small, small), interpolation=cv2.INTER_LINEAR)
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    at = int(d[10])
    grain = noise[at : at + size * size * 3].reshape(size, size, 3)
    # image + std * noise, rounded and saturated to uint8 in one pass
    out = cv2.addWeighted(image, 1.0, grain, float(d[9]), 0.0, dtype=cv2.CV_8U)
    if d[11] > 0:
        bgr = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
        _, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(d[11])])
        out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out
