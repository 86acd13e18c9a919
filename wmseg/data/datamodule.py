"""The LightningDataModules: synthetic, real-folder and mixed train/val/test splits."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from wmseg.data.cache import DiskSamples, MemorySamples, build_disk_cache
from wmseg.data.dataset import Augment, FolderCrops, MixedPairs, SyntheticWatermarks, scan_pairs
from wmseg.data.folder import FolderPairs, Item, unique_labels
from wmseg.synth import BackgroundBank, BackgroundOptions, SynthConfig, WatermarkSynth

# torchdata 0.11 calls a torch function that torch 2.14 deprecated; nothing to act on.
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")

# Each split draws from its own seed stream; val and test never change with training.
_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
CACHE_MODES = ("none", "memory", "disk")


def split_seed(seed: int, split: str) -> int:
    """The seed of one split's sample stream, derived from the data seed."""
    return seed * 1000 + _SPLIT_SEEDS[split]


class _Loaders(L.LightningDataModule):
    """DataLoader settings shared by the data modules; `datasets` maps split -> Dataset."""

    def __init__(
        self,
        batch_size: int,
        num_workers: int,
        pin_memory: bool,
        persistent_workers: bool,
        prefetch_factor: int | None,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"data.batch_size must be > 0, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.loader_kwargs = {
            "num_workers": num_workers,
            "pin_memory": pin_memory,
            "persistent_workers": persistent_workers and num_workers > 0,
            "prefetch_factor": prefetch_factor if num_workers > 0 else None,
        }
        self.datasets: dict[str, Dataset] = {}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        # The train loader keeps its place in the epoch (its shuffle order and the batches
        # already drawn) in Lightning's checkpoints, so a resumed run goes on with the
        # batches an uninterrupted one would draw instead of starting the epoch over.
        loader_class = StatefulDataLoader if shuffle else DataLoader
        return loader_class(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            **self.loader_kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class WatermarkDataModule(_Loaders):
    """Synthetic watermarks on bundled photos (or `backgrounds`, a folder of clean photos).

    All splits come from one generator with the same settings; only the seed differs.
    `val_backgrounds` (a folder, or `heldout` for bundled photos that training never
    sees) gives val and test their own photos, so checkpoint selection and the stored
    threshold follow scenes the model has not learned by heart.
    `cache`: `none` renders every sample on the fly (new work each epoch), `memory`
    renders each split once at setup, `disk` renders once into `cache_dir` (in
    `prepare_data`, on one process per node) and every later run and DDP rank reuses it.
    All three give the same bytes for the same index.

    `augment` (an albumentations transform, see conf/data/augment/) applies to the train
    split, seeded per sample. `real_roots` + `real_ratio` mix real pairs (crops of the
    synthetic size) into the train split: each sample is real with that probability.
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
        train_size: int = 20000,
        val_size: int = 256,
        test_size: int = 256,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 1,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 4,
        cache: str = "none",
        cache_dir: str | Path | None = None,
        augment: Augment | None = None,
        real_roots: Sequence[str] | None = None,
        real_ratio: float = 0.0,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, prefetch_factor)
        if cache not in CACHE_MODES:
            raise ValueError(f"data.cache={cache!r}: use one of {', '.join(CACHE_MODES)}")
        if cache == "disk" and not cache_dir:
            raise ValueError("data.cache=disk needs data.cache_dir (a folder for the rendered shards)")
        self.cache, self.cache_dir = cache, cache_dir
        for key in ("train_size", "val_size", "test_size"):
            if locals()[key] <= 0:
                raise ValueError(f"data.{key} must be > 0, got {locals()[key]}")
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"data.real_ratio must be within [0, 1], got {real_ratio}")
        if real_ratio > 0 and not real_roots:
            raise ValueError("data.real_ratio > 0 needs data.real_roots: folders with images/ and masks/")
        self.augment = augment
        self.real_roots = [real_roots] if isinstance(real_roots, str | Path) else list(real_roots or [])
        self.real_ratio = real_ratio
        self.synth_config = synth or SynthConfig()
        self.backgrounds = backgrounds
        self.val_backgrounds = val_backgrounds
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
        )
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed

    def _synths(self) -> dict[str, WatermarkSynth]:
        """One generator per split: val and test draw on `val_backgrounds` when it is set."""
        options = dataclasses.asdict(self.bank_options)
        train = WatermarkSynth(self.synth_config, BackgroundBank(self.backgrounds, **options))
        held = train
        if self.val_backgrounds is not None:
            held = WatermarkSynth(self.synth_config, BackgroundBank(self.val_backgrounds, **options))
        return {"train": train, "val": held, "test": held}

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, before setup() on every rank.
        if self.cache == "disk":
            synths = self._synths()
            for split, n in self.sizes.items():
                build_disk_cache(synths[split], split_seed(self.seed, split), n, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        # Built here, in the main process, so a bad backgrounds folder fails before training.
        synths = self._synths()
        self.datasets = {}
        for split, n in self.sizes.items():
            seed, synth = split_seed(self.seed, split), synths[split]
            store: DiskSamples | MemorySamples | None = None
            if self.cache == "disk":  # complete after prepare_data; built here when it did not run
                store = DiskSamples(build_disk_cache(synth, seed, n, self.cache_dir), n)
            elif self.cache == "memory":
                store = MemorySamples(synth, seed, n)
            augment = self.augment if split == "train" else None
            self.datasets[split] = SyntheticWatermarks(synth, n, seed=seed, store=store, augment=augment)
        if self.real_ratio > 0:
            n, seed = self.sizes["train"], split_seed(self.seed, "train")
            real = FolderCrops(scan_pairs(self.real_roots), self.synth_config.size, n, seed, self.augment)
            self.datasets["train"] = MixedPairs(self.datasets["train"], real, self.real_ratio, seed)

    def eval_sets(self, split: str = "test") -> list[Sequence[Item]]:
        """A split (the test split by default) as native-size uint8 items, for evaluate.py."""
        self.setup("test")
        return [SyntheticItems(self.datasets[split], f"synthetic_{split}")]


class SyntheticItems(Sequence[Item]):
    """A synthetic split as uint8 items, the same form as real folders."""

    def __init__(self, dataset: SyntheticWatermarks, group: str) -> None:
        self.dataset, self.group = dataset, group

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Item:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        sample = self.dataset.synth.render(self.dataset.seed, index)
        return Item(self.group, f"{index:05d}", sample.image, sample.mask)


class FolderDataModule(_Loaders):
    """Real image/mask pairs from one folder or several (`root: [a, b]`).

    Evaluation reads them at native size (`eval_sets`). Training takes `size` px crops:
    the pairs are split by a seeded shuffle into train / val / test (`val_fraction`,
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
        batch_size: int = 16,
        num_workers: int = 1,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 4,
        augment: Augment | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, prefetch_factor)
        self.roots = [root] if isinstance(root, str | Path) else list(root)
        if not self.roots:
            raise ValueError("data.root is empty: give a folder with images/ and masks/, or a list of them")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < value < 1.0:
                raise ValueError(f"data.{key} must be within (0, 1), got {value}")
        self.size, self.fractions = size, (val_fraction, test_fraction)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed, self.augment = seed, augment

    def eval_sets(self) -> list[Sequence[Item]]:
        return [FolderPairs(r, label) for r, label in zip(self.roots, unique_labels(self.roots), strict=True)]

    def split_pairs(self) -> dict[str, list]:
        """The usable pairs, split by a seeded shuffle; the same on every rank and run."""
        pairs = scan_pairs(self.roots)
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

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split, pairs in self.split_pairs().items():
            augment = self.augment if split == "train" else None
            self.datasets[split] = FolderCrops(
                pairs, self.size, self.sizes[split], split_seed(self.seed, split), augment
            )
