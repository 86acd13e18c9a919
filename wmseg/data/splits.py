"""The train / val / test splits of synthetic and real-folder data. No Lightning.

The data modules (`wmseg.data.datamodule`) wrap these for training; evaluation and
export build them directly from a data config (`splits_from_config`), so measuring a
model or exporting it needs no LightningDataModule.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wmseg.data.dataset import FolderCrops, SyntheticWatermarks, scan_pairs
from wmseg.data.folder import FolderPairs, Item, unique_labels
from wmseg.errors import ConfigError
from wmseg.synth import BackgroundBank, BackgroundOptions, SynthConfig, WatermarkSynth

SPLITS = ("train", "val", "test")
# Each split draws from its own seed stream; val and test never change with training.
_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def split_seed(seed: int, split: str) -> int:
    """The seed of one split's sample stream, derived from the data seed."""
    return seed * 1000 + _SPLIT_SEEDS[split]


def _check_sizes(sizes: dict[str, int]) -> None:
    for split, n in sizes.items():
        if n <= 0:
            raise ValueError(f"data.{split}_size must be > 0, got {n}")


class SyntheticItems(Sequence[Item]):
    """A synthetic split as native-size uint8 items, the same form as real folders."""

    def __init__(self, dataset: SyntheticWatermarks, group: str) -> None:
        self.dataset, self.group = dataset, group

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Item:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        sample = self.dataset.synth.render(self.dataset.seed, index)
        return Item(self.group, f"{index:05d}", sample.image, sample.mask)


class SyntheticSplits:
    """Synthetic watermarks on bundled photos (or `backgrounds`, a folder of clean photos),
    split into train / val / test by seed; `val_backgrounds` (a folder, or `heldout`) gives
    val and test their own photos. The keys are `WatermarkDataModule`'s of the same names.

    Example:
        >>> splits = SyntheticSplits(SynthConfig(size=64), val_size=4)
        >>> splits.dataset("val")[0]["image"].shape
        torch.Size([3, 64, 64])
    """

    def __init__(
        self,
        synth: SynthConfig | None = None,
        backgrounds: str | Path | None = None,
        val_backgrounds: str | Path | None = None,
        procedural_fraction: float = 0.2,
        collage_fraction: float = 0.0,
        color_jitter: float = 0.0,
        min_zoom: float = 1.0,
        shading: float = 0.0,
        clutter: float = 0.0,
        photo_sources: Sequence[str] = ("skimage",),
        photo_max_side: int | None = 512,
        photo_bank: str | None = None,
        train_size: int = 20000,
        val_size: int = 256,
        test_size: int = 256,
        seed: int = 0,
        restoration_targets: bool = False,
        max_pixels: int | None = None,
    ) -> None:
        """`max_pixels`: the largest background file read (None: the default limit)."""
        self.max_pixels = max_pixels
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        _check_sizes(self.sizes)
        self.restoration_targets = restoration_targets
        self.synth_config = synth or SynthConfig()
        self.backgrounds, self.val_backgrounds, self.seed = backgrounds, val_backgrounds, seed
        # Checked on construction, so a bad value fails before any rendering.
        self.bank_options = BackgroundOptions(
            procedural_fraction,
            collage_fraction,
            color_jitter,
            min_zoom,
            shading,
            clutter,
            tuple(photo_sources),
            photo_max_side,
            photo_bank,
        )
        self._synths: dict[str, WatermarkSynth] = {}

    def synths(self) -> dict[str, WatermarkSynth]:
        """One generator per split (built once): val and test draw on `val_backgrounds`
        when it is set. A bad backgrounds folder fails here."""
        if not self._synths:
            options = {**dataclasses.asdict(self.bank_options), "max_pixels": self.max_pixels}
            train = WatermarkSynth(self.synth_config, BackgroundBank(self.backgrounds, **options))
            held = train
            if self.val_backgrounds is not None:
                held = WatermarkSynth(self.synth_config, BackgroundBank(self.val_backgrounds, **options))
            self._synths = {"train": train, "val": held, "test": held}
        return self._synths

    def dataset(self, split: str, **kwargs: Any) -> SyntheticWatermarks:
        """Split `split` as tensors; `kwargs` (a sample `store`, an `augment`) go to the dataset."""
        n, seed = self.sizes[split], split_seed(self.seed, split)
        kwargs.setdefault("with_clean", self.restoration_targets)
        return SyntheticWatermarks(self.synths()[split], n, seed=seed, **kwargs)

    def datasets(self) -> dict[str, SyntheticWatermarks]:
        return {split: self.dataset(split) for split in SPLITS}

    def eval_sets(self, split: str = "test") -> list[Sequence[Item]]:
        """One split (the test split by default) as native-size uint8 items."""
        return [SyntheticItems(self.dataset(split), f"synthetic_{split}")]


class FolderSplits:
    """Real image/mask pairs from one folder or several (`root: [a, b]`).

    Evaluation reads them at native size (`eval_sets`). Training takes `size` px crops: the
    pairs are split by a seeded shuffle into train / val / test (`val_fraction`,
    `test_fraction`, at least one pair each); `train_size` crops make an epoch and the
    val/test crops are fixed by the seed. Unusable pairs are named in the log and left out.
    """

    def __init__(
        self,
        root: str | Sequence[str],
        size: int = 256,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        train_size: int = 4000,
        val_size: int = 256,
        test_size: int = 256,
        seed: int = 0,
        max_pixels: int | None = None,
    ) -> None:
        """`max_pixels`: the largest image read (None: the default limit)."""
        self.max_pixels = max_pixels
        self.roots = [root] if isinstance(root, str | Path) else list(root)
        if not self.roots:
            raise ValueError("data.root is empty: give a folder with images/ and masks/, or a list of them")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"data.{key} must be within (0, 1), got {value}")
        self.size, self.fractions = size, (val_fraction, test_fraction)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        _check_sizes(self.sizes)
        self.seed = seed

    def eval_sets(self) -> list[Sequence[Item]]:
        labels = unique_labels(self.roots)
        return [FolderPairs(r, label, self.max_pixels) for r, label in zip(self.roots, labels, strict=True)]

    def split_pairs(self) -> dict[str, list]:
        """The usable pairs, split by a seeded shuffle; the same on every rank and run."""
        pairs = scan_pairs(self.roots, self.max_pixels)
        if len(pairs) < 3:
            raise ValueError(
                f"data.root={self.roots}: training needs at least 3 usable pairs, found {len(pairs)}"
            )
        order = np.random.default_rng(self.seed).permutation(len(pairs))
        n_val = max(1, round(len(pairs) * self.fractions[0]))
        n_test = max(1, round(len(pairs) * self.fractions[1]))
        picked = [pairs[i] for i in order]
        return {
            "val": picked[:n_val],
            "test": picked[n_val : n_val + n_test],
            "train": picked[n_val + n_test :],
        }

    def datasets(self, augment: Any = None) -> dict[str, FolderCrops]:
        """Crops of each split; `augment` applies to the train split."""
        return {
            split: FolderCrops(
                pairs,
                self.size,
                self.sizes[split],
                split_seed(self.seed, split),
                augment if split == "train" else None,
                self.max_pixels,
            )
            for split, pairs in self.split_pairs().items()
        }


# The data modules of the configs (conf/data/) and the splits they train on, by class
# path: a stored config names its data module, and reading it must not import Lightning.
SPLITS_OF = {
    "wmseg.data.datamodule.WatermarkDataModule": SyntheticSplits,
    "wmseg.data.datamodule.FolderDataModule": FolderSplits,
}


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def splits_config(data: Mapping[str, Any], key: str = "data") -> dict[str, Any]:
    """A data module's config (`conf/data/*.yaml`, or one stored in a checkpoint) as the
    config of its splits: the same `_target_` mapped to its splits class and only the
    keys that shape the samples kept (no loader, cache, augmentation or real-mix keys:
    evaluation and export read samples as rendered)."""
    target = data.get("_target_")
    kind = SPLITS_OF.get(target) if isinstance(target, str) else None
    if kind is None:
        known = ", ".join(SPLITS_OF)
        raise ConfigError(
            f"{key}._target_={target!r}: evaluation and export build their sets from wmseg's "
            f"data configs ({known}; data=watermark, data=mix or data=folder)"
        )
    keep = inspect.signature(kind).parameters
    return {"_target_": class_path(kind), **{k: v for k, v in data.items() if k in keep}}
