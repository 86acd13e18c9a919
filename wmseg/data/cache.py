"""Rendered samples kept for reuse: in memory, or on disk as shards keyed by config and code.

A disk cache is a folder `<cache_dir>/<key>/` of `.npy` shards plus `manifest.json`,
written last, which holds each shard's size and SHA-256: a folder without a manifest, or
with a shard missing, short or changed on disk (a killed run, a disk fault, a file zeroed
in place), is rebuilt. The hashes are checked once per process when the cache is opened
(about a second per GB). The key hashes everything a sample
depends on: the synthesis config, the backgrounds, the split's seed and length, and the
source of the rendering code, so a changed config or renderer gets a new folder. No
Lightning, no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

import wmseg
from wmseg.atomic import file_record, save_npy_atomic, write_text_atomic
from wmseg.synth import WatermarkSynth
from wmseg.synth.backgrounds import HELDOUT, folder_signature

log = logging.getLogger(__name__)

SHARD = 1024  # samples per shard file


def _code_digest() -> str:
    """Hash of the rendering code: any change to wmseg/synth invalidates old caches."""
    h = hashlib.sha256(wmseg.__version__.encode())
    for path in sorted((Path(wmseg.__file__).parent / "synth").glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def cache_key(synth: WatermarkSynth, seed: int, length: int) -> tuple[str, dict[str, Any]]:
    """(key, what it hashes) for `length` samples of `synth` from `seed`."""
    spec = {
        "synth": dataclasses.asdict(synth.config),
        "backgrounds": (HELDOUT if synth.backgrounds.heldout else folder_signature(synth.backgrounds.folder)),
        "background_options": dataclasses.asdict(synth.backgrounds.options),
        "seed": seed,
        "length": length,
        "code": _code_digest(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20], spec


def _shard_names(length: int) -> list[tuple[str, str, int]]:
    n = (length + SHARD - 1) // SHARD
    return [(f"images_{i:05d}.npy", f"masks_{i:05d}.npy", min(SHARD, length - i * SHARD)) for i in range(n)]


def _shard_record(folder: Path, name: str) -> dict[str, Any]:
    return file_record(folder / name)


# Caches whose shards were hashed in this process, with the (name, size, mtime) they had.
_verified: set[tuple[str, tuple]] = set()


def _stamp(folder: Path, names: list[str]) -> tuple[str, tuple]:
    stats = [(n, (folder / n).stat()) for n in names]
    return str(folder.resolve()), tuple((n, s.st_size, s.st_mtime_ns) for n, s in stats)


def is_complete(folder: Path, length: int) -> bool:
    """Whether `folder` holds all `length` samples, every shard as its manifest recorded it."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())
        shards = recorded.get("shards")
        names = [name for images, masks, _ in _shard_names(length) for name in (images, masks)]
        if recorded.get("length") != length or not isinstance(shards, dict) or set(shards) != set(names):
            return False  # another length, or a manifest from before checksums: rebuild
        stamp = _stamp(folder, names)
        if stamp in _verified:
            return True
        # The recorded hashes pin each shard to the bytes written, lengths included.
        for name in names:
            if _shard_record(folder, name) != shards[name]:
                log.warning("cache shard %s differs from its manifest (changed on disk)", folder / name)
                return False
    except (OSError, ValueError, json.JSONDecodeError):
        return False
    _verified.add(stamp)
    return True


def build_disk_cache(synth: WatermarkSynth, seed: int, length: int, cache_dir: str | Path) -> Path:
    """The cache folder for these samples, rendered now unless a complete one exists."""
    key, spec = cache_key(synth, seed, length)
    folder = Path(cache_dir).expanduser() / key
    if is_complete(folder, length):
        return folder
    if folder.exists():
        log.warning("Rebuilding sample cache %s (no manifest, or a shard missing, short or changed)", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    log.info("Rendering %d samples into %s (once; later runs reuse them)", length, folder)
    size = synth.config.size
    shards: dict[str, dict[str, Any]] = {}
    for s, (images_name, masks_name, n) in enumerate(_shard_names(length)):
        images = np.empty((n, size, size, 3), np.uint8)
        masks = np.empty((n, size, size), np.uint8)
        for j in range(n):
            sample = synth.render(seed, s * SHARD + j)
            images[j], masks[j] = sample.image, sample.mask
        save_npy_atomic(folder / images_name, images)
        save_npy_atomic(folder / masks_name, masks)
        shards |= {name: _shard_record(folder, name) for name in (images_name, masks_name)}
    manifest = {**spec, "key": key, "shard": SHARD, "shards": shards}
    write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=2))
    log.info("Cached %d samples in %s", length, folder)
    return folder


class DiskSamples:
    """Random access into a complete disk cache; shards are memory-mapped on first use,
    separately in each DataLoader worker."""

    def __init__(self, folder: str | Path, length: int) -> None:
        self.folder = Path(folder)
        if not is_complete(self.folder, length):
            raise FileNotFoundError(f"{self.folder} is not a complete sample cache; delete it to rebuild")
        self.length = length
        self._shards: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        s, j = divmod(index, SHARD)
        if s not in self._shards:
            images, masks, _ = _shard_names(self.length)[s]
            self._shards[s] = (
                np.load(self.folder / images, mmap_mode="r"),
                np.load(self.folder / masks, mmap_mode="r"),
            )
        images, masks = self._shards[s]
        return np.array(images[j]), np.array(masks[j])

    def __getstate__(self) -> dict[str, Any]:
        # Workers open their own maps: never pickle open memory maps.
        return {**self.__dict__, "_shards": {}}


class MemorySamples:
    """All samples rendered once, in the main process; DataLoader workers share the
    arrays (copy-on-write after fork)."""

    def __init__(self, synth: WatermarkSynth, seed: int, length: int) -> None:
        size = synth.config.size
        self.images = np.empty((length, size, size, 3), np.uint8)
        self.masks = np.empty((length, size, size), np.uint8)
        for i in range(length):
            sample = synth.render(seed, i)
            self.images[i], self.masks[i] = sample.image, sample.mask

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.masks[index]
