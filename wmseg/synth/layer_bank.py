"""Marks and backgrounds rendered once, for the fast compositor (`wmseg.synth.compose`).

A layer bank is a folder `<bank_dir>/<key>/` of `.npy` shards plus `manifest.json`,
written last, holding each shard's size and SHA-256 (as the sample cache does):

- mark layers: each mark of `WatermarkSynth.mark_spec` flattened into one RGBA tile
  (straight colour, its sub-layers - shadow, outline, fill, plate, bevel - laid over each
  other in order), with what placement needs: its font size, angle, blend mode, look-alike
  style, corner flag, whether it is a tiled grid's unit, and its main colour and opacity;
- backgrounds: `WatermarkSynth.clean_background` crops (photo crops, collages, shading,
  the scene's own signs and objects) with their texture score.

Layer j and background j are pure functions of (config, bank seed, j), so shards build in
any order and on any number of processes. The key hashes the synthesis config, the
background options and folders, the bank sizes and seed, and the code of wmseg/synth. A
shard missing, short or changed on disk is detected when the bank is opened and only
that shard is rendered again. No torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from wmseg.atomic import file_record, save_npy_atomic, write_text_atomic
from wmseg.synth.backgrounds import folder_signature
from wmseg.synth.composition import texture
from wmseg.synth.config import BLEND_MODES
from wmseg.synth.layers import MarkSpec
from wmseg.synth.render import WatermarkSynth

log = logging.getLogger(__name__)

SHARD = 512  # layers or backgrounds per shard file
STYLES = (None, "banner", "id", "plain_logo")
# Columns of a layer's row in the index.
COLUMNS = (
    "offset", "height", "width", "extent_w", "extent_h", "px", "angle", "mode", "style", "corner",
    "tiled", "mono", "red", "green", "blue", "opacity",
)  # fmt: skip
COL = {name: i for i, name in enumerate(COLUMNS)}
_LAYER_STREAM, _BACKGROUND_STREAM = 0x1A7, 0xB6


def bleed(premult: np.ndarray, alpha: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Straight colour of a premultiplied tile, with the colour of its transparent pixels
    filled in from their neighbours (alpha-weighted 3x3 means, `rounds` times): bilinear
    sampling of straight colour then never mixes a mark's edge with the black of nothing."""
    import cv2

    colour = premult / np.maximum(alpha, 1e-6)
    known = (alpha[..., 0] > 0).astype(np.float32)[..., None]
    for _ in range(rounds):
        weight = cv2.boxFilter(known, -1, (3, 3), normalize=False)
        spread = cv2.boxFilter(colour * known, -1, (3, 3), normalize=False)
        weight = weight.reshape(known.shape)
        spread = spread.reshape(colour.shape)
        fill = (known[..., 0] == 0) & (weight[..., 0] > 0)
        colour[fill] = spread[fill] / weight[fill]
        known = np.maximum(known, (weight > 0).astype(np.float32))
    return colour


def flatten(spec: MarkSpec) -> tuple[np.ndarray, dict[str, float]]:
    """One RGBA uint8 tile (straight colour) of a mark's layers laid in order, and its
    index row (without the offset)."""
    left, top, right, bottom = spec.box
    h, w = bottom - top, right - left
    alpha = np.zeros((h, w, 1), np.float32)
    premult = np.zeros((h, w, 3), np.float32)
    colours = []
    for tile, col, op in spec.layers:
        cov = np.zeros((h, w), np.float32)
        arr = np.asarray(tile, np.float32)[:h, :w] / 255.0
        cov[: arr.shape[0], : arr.shape[1]] = arr
        a = cov[..., None] * op
        if col.ndim == 3:  # a fill over the whole crop: its top-left window, wrapped
            reps = (math.ceil(h / col.shape[0]), math.ceil(w / col.shape[1]), 1)
            col = np.tile(col, reps)[:h, :w]
        premult = premult * (1.0 - a) + a * col
        alpha = alpha * (1.0 - a) + a
        colours.append(col.reshape(-1, 3).mean(axis=0) if col.ndim == 3 else col)
    colour = bleed(premult, alpha)
    rgba = np.concatenate([colour, alpha * 255.0], axis=2)
    rgba = np.clip(rgba + 0.5, 0, 255).astype(np.uint8)
    last_col, last_op = spec.layers[-1][1], spec.layers[-1][2]
    main = last_col.reshape(-1, 3).mean(axis=0) if last_col.ndim == 3 else last_col
    mono = all(c.ndim == 1 for _, c, _ in spec.layers) and all(np.array_equal(c, colours[0]) for c in colours)
    ex_l, ex_t, ex_r, ex_b = spec.extent
    row = {
        "height": h,
        "width": w,
        "extent_w": ex_r - ex_l,
        "extent_h": ex_b - ex_t,
        "px": spec.px,
        "angle": spec.angle,
        "mode": BLEND_MODES.index(spec.mode),
        "style": STYLES.index(spec.style),
        "corner": float(spec.corner),
        "mono": float(mono),
        "red": float(main[0]),
        "green": float(main[1]),
        "blue": float(main[2]),
        "opacity": float(last_op),
    }
    return rgba, row


@dataclasses.dataclass(frozen=True)
class BankSpec:
    """How many layers and backgrounds a bank holds, and the share of layers that are
    units of tiled grids (`tiled_share`, per hundred layers)."""

    layers: int = 20000
    backgrounds: int = 8000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layers < 1 or self.backgrounds < 1:
            raise ValueError(
                "data.bank_layers and data.bank_backgrounds must be >= 1, "
                f"got {self.layers}, {self.backgrounds}"
            )


def is_tiled(synth: WatermarkSynth, j: int) -> bool:
    """Whether layer j is a tiled grid's unit: the recipe's tiled share of the layers,
    spread evenly through the bank."""
    share = synth.config.tiled_fraction
    return math.floor((j + 1) * share) > math.floor(j * share)


def render_layer(synth: WatermarkSynth, seed: int, j: int) -> tuple[np.ndarray, dict[str, float]]:
    rng = np.random.default_rng([seed, j, _LAYER_STREAM])
    tiled = is_tiled(synth, j)
    rgba, row = flatten(synth.mark_spec(rng, tiled))
    row["tiled"] = float(tiled)
    return rgba, row


def render_background(synth: WatermarkSynth, seed: int, j: int) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng([seed, j, _BACKGROUND_STREAM])
    clean, _ = synth.clean_background(rng, texture_pick=False)
    out = np.clip(clean + 0.5, 0, 255).astype(np.uint8)
    return out, texture(out)


def code_digest() -> str:
    """Hash of the code that renders a bank (wmseg/synth without the compositor, which
    only reads banks)."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name != "compose.py":
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def bank_key(synth: WatermarkSynth, spec: BankSpec) -> tuple[str, dict[str, Any]]:
    """(key, what it hashes) of the bank of `spec` for `synth`."""
    bg = synth.backgrounds
    record = {
        "synth": dataclasses.asdict(synth.config),
        "backgrounds": "heldout"
        if bg.heldout
        else ("bank_val" if bg.bank_val else folder_signature(bg.folder)),
        "background_options": dataclasses.asdict(bg.options),
        "bank": dataclasses.asdict(spec),
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:20], record


def _names(kind: str, n: int) -> list[tuple[str, str, int, int]]:
    """(pixels file, index file, first item, count) of each shard of `n` items."""
    return [
        (f"{kind}_{s:04d}.npy", f"{kind}_{s:04d}_index.npy", s * SHARD, min(SHARD, n - s * SHARD))
        for s in range((n + SHARD - 1) // SHARD)
    ]


# Shard builders, run in worker processes: (synth, seed, kind, first, count, folder, names).
_SYNTH: WatermarkSynth | None = None


def _init_worker(synth: WatermarkSynth) -> None:
    global _SYNTH
    _SYNTH = synth


def _build_shard(job: tuple[str, int, int, int, str, str, str]) -> dict[str, dict[str, Any]]:
    kind, seed, first, count, folder, pixels_name, index_name = job
    synth = _SYNTH
    assert synth is not None
    if kind == "layers":
        tiles, rows, offset = [], [], 0
        for j in range(first, first + count):
            rgba, row = render_layer(synth, seed, j)
            row["offset"] = offset
            offset += rgba.shape[0] * rgba.shape[1]
            tiles.append(rgba.reshape(-1, 4))
            rows.append([row[c] for c in COLUMNS])
        pixels, index = np.concatenate(tiles), np.asarray(rows, np.float64)
    else:
        size = synth.config.size
        pixels = np.empty((count, size, size, 3), np.uint8)
        index = np.empty((count, 1), np.float64)
        for k, j in enumerate(range(first, first + count)):
            pixels[k], index[k, 0] = render_background(synth, seed, j)
    out = Path(folder)
    save_npy_atomic(out / pixels_name, pixels)
    save_npy_atomic(out / index_name, index)
    return {name: file_record(out / name) for name in (pixels_name, index_name)}


class LayerBank:
    """A complete layer bank, opened (and built or repaired first where needed).

    Example:
        >>> synth = WatermarkSynth(SynthConfig(size=64))  # doctest: +SKIP
        >>> bank = LayerBank.build(synth, BankSpec(layers=8, backgrounds=4), "/tmp/lb")  # doctest: +SKIP
    """

    def __init__(self, folder: Path, spec: BankSpec, size: int) -> None:
        self.folder, self.spec, self.size = folder, spec, size
        self._layers: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._backgrounds: list[tuple[np.ndarray, np.ndarray]] | None = None

    @classmethod
    def build(
        cls, synth: WatermarkSynth, spec: BankSpec, bank_dir: str | Path, workers: int | None = None
    ) -> LayerBank:
        """The bank of `spec` for `synth` under `bank_dir`: opened as it is when complete,
        else its missing or changed shards rendered (on `workers` processes)."""
        key, record = bank_key(synth, spec)
        folder = Path(bank_dir).expanduser() / key
        folder.mkdir(parents=True, exist_ok=True)
        manifest_path = folder / "manifest.json"
        shards: dict[str, dict[str, Any]] = {}
        if manifest_path.is_file():
            try:
                shards = json.loads(manifest_path.read_text()).get("shards", {})
            except (OSError, ValueError):
                shards = {}
        jobs = []
        for kind, n in (("layers", spec.layers), ("backgrounds", spec.backgrounds)):
            for pixels_name, index_name, first, count in _names(kind, n):
                names = (pixels_name, index_name)
                good = all(
                    name in shards
                    and (folder / name).is_file()
                    and file_record(folder / name) == shards[name]
                    for name in names
                )
                if not good:
                    if any(name in shards for name in names):
                        log.warning(
                            "layer bank shard %s differs from its manifest: rendering it again",
                            folder / pixels_name,
                        )
                    for name in names:
                        shards.pop(name, None)
                    jobs.append((kind, spec.seed, first, count, str(folder), pixels_name, index_name))
        if jobs:
            workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
            log.info(
                "Rendering %d layer bank shards into %s on %d processes (once)", len(jobs), folder, workers
            )
            if workers == 1:
                _init_worker(synth)
                results = [_build_shard(job) for job in jobs]
            else:
                with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(synth,)) as pool:
                    results = list(pool.map(_build_shard, jobs))
            for result in results:
                shards |= result
            manifest = {**record, "key": key, "shard": SHARD, "shards": shards}
            write_text_atomic(manifest_path, json.dumps(manifest, indent=2, default=str))
        return cls(folder, spec, synth.config.size)

    def _load(self, kind: str, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [
            (np.load(self.folder / p, mmap_mode="r"), np.load(self.folder / i))
            for p, i, _, _ in _names(kind, n)
        ]

    @property
    def layer_shards(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._layers is None:
            self._layers = self._load("layers", self.spec.layers)
        return self._layers

    @property
    def background_shards(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._backgrounds is None:
            self._backgrounds = self._load("backgrounds", self.spec.backgrounds)
        return self._backgrounds

    def layer(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Layer j: its RGBA tile (h, w, 4) uint8 and its index row (`COLUMNS`)."""
        pixels, index = self.layer_shards[j // SHARD]
        row = index[j % SHARD]
        h, w, off = int(row[COL["height"]]), int(row[COL["width"]]), int(row[COL["offset"]])
        return np.asarray(pixels[off : off + h * w]).reshape(h, w, 4), row

    def layer_index(self) -> np.ndarray:
        """Every layer's index row, (layers, len(COLUMNS)) float64."""
        return np.concatenate([index for _, index in self.layer_shards])

    def background(self, j: int) -> np.ndarray:
        pixels, _ = self.background_shards[j // SHARD]
        return np.asarray(pixels[j % SHARD])

    def textures(self) -> np.ndarray:
        return np.concatenate([index[:, 0] for _, index in self.background_shards])

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers open their own memory maps.
        return {**self.__dict__, "_layers": None, "_backgrounds": None}
