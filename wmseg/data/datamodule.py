"""The LightningDataModules: loaders over the synthetic, real-folder and mixed splits of
`wmseg.data.splits` (which evaluation and export use without Lightning), plus caching."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from wmseg.data.cache import DiskSamples, MemorySamples, build_disk_cache
from wmseg.data.dataset import Augment, ComposedWatermarks, FolderCrops, MixedPairs, scan_pairs
from wmseg.data.folder import Item
from wmseg.data.splits import SPLITS, FolderSplits, SyntheticSplits, split_seed
from wmseg.synth.compose import Composer
from wmseg.synth.layer_bank import BankSpec, LayerBank

# torchdata 0.11 calls a torch function that torch 2.14 deprecated; nothing to act on.
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")

CACHE_MODES = ("none", "memory", "disk")
ENGINES = ("render", "compose")
COMPOSE_ON = ("cpu", "gpu")


def _known(splits: type, keys: dict[str, Any]) -> dict[str, Any]:
    """`keys` when `splits` takes them all; else an error naming the unknown data key."""
    known = set(inspect.signature(splits).parameters)
    unknown = sorted(set(keys) - known)
    if unknown:
        raise TypeError(
            f"unknown data key(s) {', '.join(unknown)}: this data module takes its loader keys "
            f"and those of {splits.__name__} ({', '.join(sorted(known))})"
        )
    return keys


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
    threshold follow scenes the model has not learned by heart (see `SyntheticSplits`).
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
        engine: str = "render",
        compose_on: str = "cpu",
        bank_layers: int = 20000,
        bank_backgrounds: int = 8000,
        live_fraction: float = 0.05,
        bank_dir: str | Path | None = None,
        **splits: Any,
    ) -> None:
        """`splits`: the keys of `SyntheticSplits` (synth, backgrounds, photo sources,
        split sizes, seed ...), with its defaults. `engine=compose` draws the train split
        from a layer bank (`bank_layers` marks and `bank_backgrounds` backgrounds rendered
        once into `bank_dir`, `live_fraction` of the samples still rendered live), composed
        on the loader's CPU workers or, with `compose_on=gpu`, on the training device."""
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, prefetch_factor)
        if engine not in ENGINES or compose_on not in COMPOSE_ON:
            raise ValueError(
                f"data.engine={engine!r}, data.compose_on={compose_on!r}: use one of "
                f"{', '.join(ENGINES)} and one of {', '.join(COMPOSE_ON)}"
            )
        if engine == "compose" and not bank_dir:
            raise ValueError("data.engine=compose needs data.bank_dir (a folder for the layer bank)")
        if engine == "compose" and cache != "none":
            raise ValueError(
                f"data.engine=compose composes every sample anew: set data.cache=none, not {cache!r}"
            )
        if compose_on == "gpu" and engine != "compose":
            raise ValueError("data.compose_on=gpu composes from the layer bank: set data.engine=compose")
        self.engine, self.compose_on, self.bank_dir = engine, compose_on, bank_dir
        self.bank_spec = BankSpec(bank_layers, bank_backgrounds)
        self.live_fraction = live_fraction
        self._gpu_composer: Any = None
        if cache not in CACHE_MODES:
            raise ValueError(f"data.cache={cache!r}: use one of {', '.join(CACHE_MODES)}")
        if cache == "disk" and not cache_dir:
            raise ValueError("data.cache=disk needs data.cache_dir (a folder for the rendered shards)")
        self.cache, self.cache_dir = cache, cache_dir
        if not 0.0 <= real_ratio <= 1.0:
            raise ValueError(f"data.real_ratio must be within [0, 1], got {real_ratio}")
        if real_ratio > 0 and not real_roots:
            raise ValueError("data.real_ratio > 0 needs data.real_roots: folders with images/ and masks/")
        self.augment = augment
        self.real_roots = [real_roots] if isinstance(real_roots, str | Path) else list(real_roots or [])
        self.real_ratio = real_ratio
        self.splits = SyntheticSplits(**_known(SyntheticSplits, splits))
        if real_ratio > 0 and self.splits.restoration_targets:
            raise ValueError(
                "data.restoration_targets=true needs the clean photo of every sample, which real pairs "
                "lack: set data.real_ratio=0 (or restoration_targets=false)"
            )

    def _layer_bank(self) -> LayerBank:
        train = self.splits.synths()["train"]
        spec = BankSpec(
            self.bank_spec.layers, self.bank_spec.backgrounds, split_seed(self.splits.seed, "train")
        )
        return LayerBank.build(train, spec, self.bank_dir)

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, before setup() on every rank.
        if self.engine == "compose":
            self._layer_bank()
        if self.cache == "disk":
            synths, sizes = self.splits.synths(), self.splits.sizes
            for split in SPLITS:
                build_disk_cache(
                    synths[split], split_seed(self.splits.seed, split), sizes[split], self.cache_dir
                )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        # Built here, in the main process, so a bad backgrounds folder fails before training.
        synths, sizes = self.splits.synths(), self.splits.sizes
        self.datasets = {}
        for split in SPLITS:
            seed, synth, n = split_seed(self.splits.seed, split), synths[split], sizes[split]
            store: DiskSamples | MemorySamples | None = None
            if self.cache == "disk":  # complete after prepare_data; built here when it did not run
                store = DiskSamples(build_disk_cache(synth, seed, n, self.cache_dir), n)
            elif self.cache == "memory":
                store = MemorySamples(synth, seed, n)
            augment = self.augment if split == "train" else None
            if split == "train" and self.engine == "compose":
                composer = Composer(synth.config, self._layer_bank())
                self.datasets[split] = ComposedWatermarks(
                    composer,
                    synth,
                    n,
                    seed,
                    self.live_fraction,
                    augment,
                    plans=self.compose_on == "gpu",
                    with_clean=self.splits.restoration_targets,
                )
                continue
            self.datasets[split] = self.splits.dataset(split, store=store, augment=augment)
        if self.real_ratio > 0:
            n, seed = sizes["train"], split_seed(self.splits.seed, "train")
            size = self.splits.synth_config.size
            pairs = scan_pairs(self.real_roots, self.splits.max_pixels)
            real = FolderCrops(pairs, size, n, seed, self.augment, self.splits.max_pixels)
            self.datasets["train"] = MixedPairs(self.datasets["train"], real, self.real_ratio, seed)

    def eval_sets(self, split: str = "test") -> list[Sequence[Item]]:
        """A split (the test split by default) as native-size uint8 items."""
        return self.splits.eval_sets(split)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # data.compose_on=gpu: the train batch arrives as plans; compose it on its device.
        if isinstance(batch, dict) and "plan_layer" in batch:
            if self._gpu_composer is None:
                from wmseg.data.gpu_compose import TorchComposer

                composer = self.datasets["train"].composer
                self._gpu_composer = TorchComposer(composer.config, composer.bank)
            batch = self._gpu_composer(batch)
        return batch


class FolderDataModule(_Loaders):
    """Real image/mask pairs from one folder or several (`root: [a, b]`), split as
    `FolderSplits` does; `augment` applies to the train crops."""

    def __init__(
        self,
        root: str | Sequence[str],
        batch_size: int = 16,
        num_workers: int = 1,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 4,
        augment: Augment | None = None,
        **splits: Any,
    ) -> None:
        """`splits`: the other keys of `FolderSplits` (crop size, fractions, split sizes,
        seed), with its defaults."""
        super().__init__(batch_size, num_workers, pin_memory, persistent_workers, prefetch_factor)
        self.splits = FolderSplits(root, **_known(FolderSplits, splits))
        self.augment = augment

    def eval_sets(self) -> list[Sequence[Item]]:
        return self.splits.eval_sets()

    def split_pairs(self) -> dict[str, list]:
        return self.splits.split_pairs()

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = dict(self.splits.datasets(self.augment))
