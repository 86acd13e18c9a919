"""Torch datasets over the synthesis engine and real image/mask folders. No Lightning."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from wmseg.data.cache import DiskSamples, MemorySamples
from wmseg.data.folder import DataError, FolderPairs, check_mask_size, read_image, read_mask
from wmseg.image_files import image_size
from wmseg.synth import WatermarkSynth
from wmseg.synth.compose import Composer

log = logging.getLogger(__name__)

# An albumentations transform (e.g. A.Compose) called as augment(image=..., mask=...).
Augment = Callable[..., dict]
# Separate random streams per use, so that adding one never shifts another.
_AUGMENT_STREAM, _CROP_STREAM, _MIX_STREAM, _LIVE_STREAM = 0xA6, 0xC7, 0x31, 0x11


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) image -> float tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)


def to_tensors(image: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
    """uint8 (H, W, 3) image and (H, W) 0/1 mask -> float tensors (3, H, W) and (1, H, W)."""
    return {"image": image_tensor(image), "mask": torch.from_numpy(np.ascontiguousarray(mask))[None].float()}


def augment_arrays(augment: Augment, seed: int, index: int, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    """Apply an albumentations transform to all of `arrays` alike (its targets), seeded by
    (seed, index): a sample is augmented the same way in any worker, whatever the worker
    count."""
    state = int(np.random.SeedSequence([seed, index, _AUGMENT_STREAM]).generate_state(1)[0])
    augment.set_random_seed(state)
    return augment(**arrays)


def augment_pair(
    augment: Augment, image: np.ndarray, mask: np.ndarray, seed: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """`augment_arrays` of an image and its mask."""
    out = augment_arrays(augment, seed, index, image=image, mask=mask)
    return out["image"], out["mask"]


# The clean photo moves with the image (flips, crops), as a second image; the marks'
# opacity and colour as masks (moved, never recoloured).
RESTORATION_TARGETS = {"clean": "image", "opacity": "mask", "colour": "mask", "known": "mask"}


class SyntheticWatermarks(Dataset):
    """`length` samples of `synth`; sample i is a pure function of (seed, i).

    Example:
        >>> ds = SyntheticWatermarks(WatermarkSynth(), length=10, seed=1)
        >>> ds[0]["image"].shape
        torch.Size([3, 128, 128])
    """

    def __init__(
        self,
        synth: WatermarkSynth,
        length: int,
        seed: int,
        store: DiskSamples | MemorySamples | None = None,
        augment: Augment | None = None,
        with_clean: bool = False,
    ) -> None:
        if length <= 0:
            raise ValueError(f"dataset length must be > 0, got {length}")
        if store is not None and len(store) != length:
            raise ValueError(f"sample cache holds {len(store)} samples, the split needs {length}")
        if with_clean and store is not None:
            raise ValueError(
                "data.restoration_targets=true renders the clean photos beside the samples, which "
                "the sample caches do not hold: set data.cache=none"
            )
        self.synth, self.length, self.seed, self.store = synth, length, seed, store
        self.augment, self.with_clean = augment, with_clean
        if with_clean and augment is not None:
            augment.add_targets(RESTORATION_TARGETS)

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample `index` as uint8 arrays, augmented when the dataset has an augment."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self.store is not None:  # the same bytes render() gives, rendered earlier
            image, mask = self.store[index]
        else:
            image, mask = self.synth.render(self.seed, index)
        if self.augment is not None:
            image, mask = augment_pair(self.augment, image, mask, self.seed, index)
        return image, mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not self.with_clean:
            return to_tensors(*self.pair(index))
        if not 0 <= index < self.length:
            raise IndexError(index)
        return restoration_item(self.synth.render_targets(self.seed, index), self.augment, self.seed, index)


# Opacity the restoration head can reach (wmseg.models.restoration.MAX_OPACITY), and the
# least at which the colour is read back from the degraded pair.
MAX_TARGET_OPACITY = 0.95
MIN_READ_OPACITY = 0.05


def layer_of_pair(
    image: np.ndarray, clean: np.ndarray, opacity: np.ndarray, colour: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The marks' layer as the degraded pair shows it: the colour that makes
    `(1 - a) clean + a c` the image where the opacity is at least MIN_READ_OPACITY (exact
    for a colour shift, which moves the mark's colour with the photo's; blur, resize and
    JPEG leave a little noise), the renderer's colour elsewhere; the opacity capped at what
    the head can predict."""
    a = np.asarray(opacity, np.float32)
    seen = a >= MIN_READ_OPACITY
    if seen.any():
        image32, clean32 = image.astype(np.float32), clean.astype(np.float32)
        read = (image32 - (1.0 - a[..., None]) * clean32) / np.maximum(a, MIN_READ_OPACITY)[..., None]
        colour = np.where(seen[..., None], np.clip(read, 0.0, 255.0), colour).astype(np.float32)
    return np.minimum(a, MAX_TARGET_OPACITY), colour


def restoration_item(
    rendered: tuple, augment: Augment | None, seed: int, index: int
) -> dict[str, torch.Tensor]:
    """A sample with its restoration targets (`render_targets` of the renderer or the
    compositor), augmented together, as tensors: image, mask, clean, and the marks as one
    layer over the photo (opacity, colour, known: wmseg.synth.composition.MarkTargets)."""
    (image, mask), clean, (opacity, colour, known) = rendered
    known = known.astype(np.float32)
    if augment is not None:
        arrays = {"image": image, "mask": mask, "clean": clean, "opacity": opacity, "colour": colour}
        out = augment_arrays(augment, seed, index, **arrays, known=known)
        image, mask, clean, opacity, colour, known = (
            out[k] for k in ("image", "mask", "clean", "opacity", "colour", "known")
        )
    opacity, colour = layer_of_pair(image, clean, opacity, colour)
    return {
        **to_tensors(image, mask),
        "clean": image_tensor(clean),
        "opacity": torch.from_numpy(np.ascontiguousarray(opacity, np.float32))[None],
        "colour": torch.from_numpy(np.ascontiguousarray(colour, np.float32)).permute(2, 0, 1) / 255.0,
        "known": torch.from_numpy(np.ascontiguousarray(known, np.float32))[None],
    }


class ComposedWatermarks(Dataset):
    """`length` samples composed from a layer bank (`wmseg.synth.compose`), the fast path;
    a share `live_fraction` (drawn from (seed, i)) is rendered live by `synth` instead, so
    marks never seen in the bank keep coming. Sample i is a pure function of (seed, i).

    `plans=True` (data.compose_on=gpu) returns the sample's plan as tensors instead, for
    `wmseg.data.gpu_compose` to carry out on the device; a live sample then comes finished
    beside it (`live`, `live_image`, `live_mask`).
    """

    def __init__(
        self,
        composer: Composer,
        synth: WatermarkSynth,
        length: int,
        seed: int,
        live_fraction: float = 0.0,
        augment: Augment | None = None,
        plans: bool = False,
        with_clean: bool = False,
    ) -> None:
        if length <= 0:
            raise ValueError(f"dataset length must be > 0, got {length}")
        if not 0.0 <= live_fraction <= 1.0:
            raise ValueError(f"data.live_fraction must be within [0, 1], got {live_fraction}")
        if plans and augment is not None:
            raise ValueError(
                "data.compose_on=gpu composes on the device, after any CPU augmentation could run: "
                "set data.augment=null (the compositor draws flips and quarter turns itself)"
            )
        if plans and with_clean:
            raise ValueError(
                "data.restoration_targets=true with data.compose_on=gpu: the clean photos and mark "
                "targets are composed on CPU workers only; set data.compose_on=cpu"
            )
        self.composer, self.synth, self.length, self.seed = composer, synth, length, seed
        self.live_fraction, self.augment, self.plans = live_fraction, augment, plans
        self.with_clean = with_clean
        if with_clean and augment is not None:
            augment.add_targets(RESTORATION_TARGETS)

    def __len__(self) -> int:
        return self.length

    def is_live(self, index: int) -> bool:
        if self.live_fraction <= 0:
            return False
        return bool(np.random.default_rng([self.seed, index, _LIVE_STREAM]).random() < self.live_fraction)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self.is_live(index):
            image, mask = self.synth.render(self.seed, index)
        else:
            image, mask = self.composer.render(self.seed, index)
        if self.augment is not None:
            image, mask = augment_pair(self.augment, image, mask, self.seed, index)
        return image, mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.with_clean:
            if not 0 <= index < self.length:
                raise IndexError(index)
            source = self.synth if self.is_live(index) else self.composer
            return restoration_item(source.render_targets(self.seed, index), self.augment, self.seed, index)
        if not self.plans:
            return to_tensors(*self.pair(index))
        if not 0 <= index < self.length:
            raise IndexError(index)
        size = self.composer.config.size
        out = {
            f"plan_{k}": torch.from_numpy(np.asarray(v))
            for k, v in self.composer.plan(self.seed, index)._asdict().items()
        }
        if self.live_fraction <= 0:  # no finished samples to carry beside the plans
            return out
        live = self.is_live(index)
        if live:
            image, mask = self.synth.render(self.seed, index)
        else:
            image, mask = np.zeros((size, size, 3), np.uint8), np.zeros((size, size), np.uint8)
        out["live"] = torch.tensor(live)
        out["live_image"] = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        out["live_mask"] = torch.from_numpy(np.ascontiguousarray(mask))[None]
        return out


def scan_pairs(roots: Sequence[str | Path], max_pixels: int | None = None) -> list[tuple[Path, Path]]:
    """(image, mask) paths of every usable pair under `roots`. A pair whose image header is
    unreadable or over `max_pixels`, whose mask is missing or unreadable, or whose mask size
    differs from the image is left out and named in the log; no usable pair at all is an error."""
    pairs, bad = [], []
    for root in roots:
        folder = FolderPairs(root, max_pixels=max_pixels)
        for i, path in enumerate(folder.images):
            try:
                mask_path = folder.mask_path(i)
                size = folder.image_size(i)
                check_mask_size(mask_path, image_size(mask_path, max_pixels), size)
            except DataError as err:
                bad.append(str(err))
                continue
            pairs.append((path, mask_path))
    for message in bad:
        log.warning("skipped %s", message)
    if bad:
        total = len(bad) + len(pairs)
        log.warning("skipped %d of %d pairs under %s (named above)", len(bad), total, list(roots))
    if not pairs:
        raise FileNotFoundError(f"no usable image/mask pairs under {list(roots)}: {'; '.join(bad[:3])}")
    return pairs


class FolderCrops(Dataset):
    """`length` square crops of `size` px from real (image, mask) pairs; crop i is a pure
    function of (seed, i). Images smaller than `size` are scaled up first. A file that
    turns out unreadable when decoded is named in the log and the next pair is used."""

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        size: int,
        length: int,
        seed: int,
        augment: Augment | None = None,
        max_pixels: int | None = None,
    ) -> None:
        if not pairs:
            raise ValueError("FolderCrops needs at least one (image, mask) pair")
        if size <= 0 or length <= 0:
            raise ValueError(f"crop size and length must be > 0, got {size} and {length}")
        self.pairs, self.size, self.length, self.seed, self.augment = list(pairs), size, length, seed, augment
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return self.length

    def _read(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[k]
        image = read_image(image_path, self.max_pixels)
        return image, read_mask(mask_path, image.shape[:2], self.max_pixels)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index, _CROP_STREAM])
        first = int(rng.integers(len(self.pairs)))
        for step in range(len(self.pairs)):
            k = (first + step) % len(self.pairs)
            try:
                image, mask = self._read(k)
                break
            except DataError as err:
                log.warning("skipped %s", err)
        else:
            raise DataError(self.pairs[first][0], "no pair in this dataset can be read")
        h, w = mask.shape
        if min(h, w) < self.size:  # scale up so a full crop fits
            scale = self.size / min(h, w)
            new = (max(self.size, round(w * scale)), max(self.size, round(h * scale)))
            image = np.asarray(Image.fromarray(image).resize(new, Image.Resampling.BILINEAR))
            mask = np.asarray(Image.fromarray(mask).resize(new, Image.Resampling.NEAREST))
            h, w = mask.shape
        y = int(rng.integers(h - self.size + 1))
        x = int(rng.integers(w - self.size + 1))
        image, mask = image[y : y + self.size, x : x + self.size], mask[y : y + self.size, x : x + self.size]
        if self.augment is not None:
            image, mask = augment_pair(self.augment, image, mask, self.seed, index)
        return image, mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return to_tensors(*self.pair(index))


class MixedPairs(Dataset):
    """Sample i comes from `real` with probability `ratio` (drawn from (seed, i)), else
    from `synthetic`, at the same index: the mix is the same in any worker."""

    def __init__(self, synthetic: SyntheticWatermarks, real: FolderCrops, ratio: float, seed: int) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"data.real_ratio must be within [0, 1], got {ratio}")
        if len(real) != len(synthetic):
            raise ValueError("MixedPairs needs a real and a synthetic dataset of the same length")
        self.synthetic, self.real, self.ratio, self.seed = synthetic, real, ratio, seed

    def __len__(self) -> int:
        return len(self.synthetic)

    def is_real(self, index: int) -> bool:
        return bool(np.random.default_rng([self.seed, index, _MIX_STREAM]).random() < self.ratio)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        source = self.real if self.is_real(index) else self.synthetic
        return to_tensors(*source.pair(index))
