"""The LightningDataModule: synthetic train/val/test splits and their DataLoaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from wmseg.data.cache import DiskSamples, MemorySamples, build_disk_cache
from wmseg.data.dataset import SyntheticWatermarks
from wmseg.data.folder import FolderPairs, Item
from wmseg.synth import BackgroundBank, SynthConfig, WatermarkSynth

# Each split draws from its own seed stream; val and test never change with training.
_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
CACHE_MODES = ("none", "memory", "disk")


class WatermarkDataModule(L.LightningDataModule):
    """Synthetic watermarks on bundled photos (or `backgrounds`, a folder of clean photos).

    All splits come from one generator with the same settings; only the seed differs.
    `cache`: `none` renders every sample on the fly (new work each epoch), `memory`
    renders each split once at setup, `disk` renders once into `cache_dir` (in
    `prepare_data`, on one process per node) and every later run and DDP rank reuses it.
    All three give the same bytes for the same index.
    """

    def __init__(
        self,
        synth: SynthConfig | None = None,
        backgrounds: str | Path | None = None,
        procedural_fraction: float = 0.2,
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
    ) -> None:
        super().__init__()
        if cache not in CACHE_MODES:
            raise ValueError(f"data.cache={cache!r}: use one of {', '.join(CACHE_MODES)}")
        if cache == "disk" and not cache_dir:
            raise ValueError("data.cache=disk needs data.cache_dir (a folder for the rendered shards)")
        self.cache, self.cache_dir = cache, cache_dir
        for key in ("batch_size", "train_size", "val_size", "test_size"):
            if locals()[key] <= 0:
                raise ValueError(f"data.{key} must be > 0, got {locals()[key]}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.synth_config = synth or SynthConfig()
        self.backgrounds = backgrounds
        self.procedural_fraction = procedural_fraction
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed
        self.batch_size = batch_size
        self.loader_kwargs = {
            "num_workers": num_workers,
            "pin_memory": pin_memory,
            "persistent_workers": persistent_workers and num_workers > 0,
            "prefetch_factor": prefetch_factor if num_workers > 0 else None,
        }
        self.datasets: dict[str, SyntheticWatermarks] = {}

    def _synth(self) -> WatermarkSynth:
        bank = BackgroundBank(self.backgrounds, procedural_fraction=self.procedural_fraction)
        return WatermarkSynth(self.synth_config, bank)

    def _split_seed(self, split: str) -> int:
        return self.seed * 1000 + _SPLIT_SEEDS[split]

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, before setup() on every rank.
        if self.cache == "disk":
            synth = self._synth()
            for split, n in self.sizes.items():
                build_disk_cache(synth, self._split_seed(split), n, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        # Built here, in the main process, so a bad backgrounds folder fails before training.
        synth = self._synth()
        self.datasets = {}
        for split, n in self.sizes.items():
            seed = self._split_seed(split)
            store: DiskSamples | MemorySamples | None = None
            if self.cache == "disk":  # complete after prepare_data; built here when it did not run
                store = DiskSamples(build_disk_cache(synth, seed, n, self.cache_dir), n)
            elif self.cache == "memory":
                store = MemorySamples(synth, seed, n)
            self.datasets[split] = SyntheticWatermarks(synth, n, seed=seed, store=store)

    def eval_sets(self) -> list[Sequence[Item]]:
        """The test split as native-size uint8 items, for evaluate.py."""
        self.setup("test")
        return [SyntheticItems(self.datasets["test"], "synthetic_test")]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
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


class FolderDataModule(L.LightningDataModule):
    """Real image/mask pairs from one folder or several (`root: [a, b]`).

    Evaluation reads them at native size (`eval_sets`); training on folders comes
    with the data engine, which crops them to batches.
    """

    def __init__(self, root: str | Sequence[str]) -> None:
        super().__init__()
        self.roots = [root] if isinstance(root, str | Path) else list(root)
        if not self.roots:
            raise ValueError("data.root is empty: give a folder with images/ and masks/, or a list of them")

    def eval_sets(self) -> list[Sequence[Item]]:
        return [FolderPairs(r) for r in self.roots]

    def train_dataloader(self) -> DataLoader:
        raise NotImplementedError("data=folder is for evaluate.py for now; train on data=watermark")
