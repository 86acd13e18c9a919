"""Sample caches: the same bytes in every mode and worker count; reuse, invalidation, repair."""

import json
import os

import numpy as np
import pytest
import torch

from wmseg.data.cache import DiskSamples, build_disk_cache, cache_key
from wmseg.data.datamodule import WatermarkDataModule
from wmseg.synth import SynthConfig, WatermarkSynth


def _dm(
    tmp_path, cache: str, workers: int = 0, size: int = 32, val_backgrounds=None, **kw
) -> WatermarkDataModule:
    dm = WatermarkDataModule(
        synth=SynthConfig(size=size, **kw),
        val_backgrounds=val_backgrounds,
        train_size=10,
        val_size=6,
        test_size=6,
        batch_size=4,
        num_workers=workers,
        cache=cache,
        cache_dir=tmp_path / "cache",
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _val_batches(dm: WatermarkDataModule) -> list[dict[str, torch.Tensor]]:
    return list(dm.val_dataloader())


def test_same_bytes_in_every_cache_mode_and_worker_count(tmp_path):
    ref = _val_batches(_dm(tmp_path, "none"))
    for cache, workers in (("memory", 0), ("disk", 0), ("disk", 2)):
        got = _val_batches(_dm(tmp_path, cache, workers))
        assert len(got) == len(ref)
        for a, b in zip(ref, got, strict=True):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]), (cache, workers)
    # The train split too, indexed directly (its loader shuffles).
    none, disk = _dm(tmp_path, "none"), _dm(tmp_path, "disk")
    for i in (0, 9):
        assert torch.equal(none.datasets["train"][i]["image"], disk.datasets["train"][i]["image"])


def test_disk_cache_is_reused_and_keyed_by_config(tmp_path):
    _dm(tmp_path, "disk")
    folders = sorted(p for p in (tmp_path / "cache").iterdir())
    assert len(folders) == 3  # one per split
    mtimes = {p: (p / "images_00000.npy").stat().st_mtime_ns for p in folders}
    _dm(tmp_path, "disk")  # same config: nothing rendered again
    assert {p: (p / "images_00000.npy").stat().st_mtime_ns for p in folders} == mtimes
    _dm(tmp_path, "disk", opacity=(0.5, 1.0))  # a changed config gets new folders
    assert len(list((tmp_path / "cache").iterdir())) == 6
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    assert manifest["synth"]["size"] == 32 and manifest["key"] == folders[0].name


def test_partial_cache_from_a_killed_run_is_rebuilt(tmp_path):
    synth = WatermarkSynth(SynthConfig(size=32))
    folder = build_disk_cache(synth, seed=3, length=5, cache_dir=tmp_path)
    good = [DiskSamples(folder, 5)[i] for i in range(5)]
    # A killed build: the manifest is written last, so it is missing; a shard is cut short.
    (folder / "manifest.json").unlink()
    np.save(folder / "images_00000.npy", np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="not a complete sample cache"):
        DiskSamples(folder, 5)
    assert build_disk_cache(synth, seed=3, length=5, cache_dir=tmp_path) == folder
    rebuilt = DiskSamples(folder, 5)
    for i in range(5):
        assert np.array_equal(rebuilt[i][0], good[i][0]) and np.array_equal(rebuilt[i][1], good[i][1])
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_key_follows_backgrounds_folder_contents(tmp_path):
    from PIL import Image

    folder = tmp_path / "bg"
    folder.mkdir()
    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(folder / "a.png")
    from wmseg.synth import BackgroundBank

    def key() -> str:
        return cache_key(WatermarkSynth(SynthConfig(size=32), BackgroundBank(folder)), 0, 4)[0]

    first = key()
    assert key() == first
    Image.fromarray(np.full((40, 40, 3), 50, np.uint8)).save(folder / "b.png")
    assert key() != first


def test_key_follows_background_options():
    from wmseg.synth import BackgroundBank

    def key(**options) -> str:
        return cache_key(WatermarkSynth(SynthConfig(size=32), BackgroundBank(**options)), 0, 4)[0]

    plain = key()
    assert key() == plain
    changed = [
        key(collage_fraction=0.5),
        key(color_jitter=0.5),
        key(min_zoom=0.5),
        key(shading=0.5),
        key(collage_fraction=0.5, clutter=0.5),
    ]
    assert len({plain, *changed}) == 6


def test_bad_cache_settings_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"data\.cache='ram'"):
        WatermarkDataModule(cache="ram")
    with pytest.raises(ValueError, match=r"data\.cache_dir"):
        WatermarkDataModule(cache="disk", cache_dir=None)


def test_training_with_disk_cache_builds_it_under_the_root(make_cfg, tmp_path):
    from wmseg.tasks.train import train

    cfg = make_cfg("debug=fdr", "data.cache=disk", "data.train_size=8")
    train(cfg)
    manifests = list((tmp_path / "data" / "cache").glob("*/manifest.json"))
    assert sorted(json.loads(m.read_text())["length"] for m in manifests) == [8, 8, 8]


def test_key_tells_heldout_photos_from_bundled():
    from wmseg.synth import BackgroundBank

    def key(folder=None) -> str:
        return cache_key(WatermarkSynth(SynthConfig(size=32), BackgroundBank(folder)), 0, 4)[0]

    assert key("heldout") == key("heldout") != key()


def test_key_tells_photo_sources_apart():
    from wmseg.synth import BackgroundBank

    def key(**options) -> str:
        return cache_key(WatermarkSynth(SynthConfig(size=32), BackgroundBank(**options)), 0, 4)[0]

    assert key() == key(photo_sources=["skimage"]) != key(photo_sources=["skimage", "sklearn"])


def test_heldout_val_split_same_bytes_in_every_cache_mode_and_apart_from_train(tmp_path):
    ref = _val_batches(_dm(tmp_path, "none", val_backgrounds="heldout"))
    for cache in ("memory", "disk"):
        got = _val_batches(_dm(tmp_path, cache, val_backgrounds="heldout"))
        for a, b in zip(ref, got, strict=True):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]), cache
    # Only val and test change: the train split is the default one, byte for byte.
    plain, held = _dm(tmp_path, "disk"), _dm(tmp_path, "disk", val_backgrounds="heldout")
    assert torch.equal(plain.datasets["train"][3]["image"], held.datasets["train"][3]["image"])
    assert not torch.equal(_val_batches(plain)[0]["image"], ref[0]["image"])
    assert len(list((tmp_path / "cache").iterdir())) == 5  # train, 2 val and 2 test caches
