"""Data engine: augmentation, real-folder training crops, the synthetic/real mix."""

import logging

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image

from wmseg.data.datamodule import FolderDataModule, WatermarkDataModule
from wmseg.data.dataset import FolderCrops, scan_pairs
from wmseg.synth import SynthConfig


def _pairs(root, n: int, size=(80, 60), start: int = 0) -> None:
    """n real-looking pairs: noise photos with a bright bar marked in the mask."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        w, h = size
        image = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 3 : h // 2, :] = 255
        image[mask > 0] = 250
        Image.fromarray(image).save(root / "images" / f"p{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i:02d}.png")


def _batches(dm, split="val"):
    loader = {"val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    return [(b["image"], b["mask"]) for b in loader]


def _flip_augment(p: float = 1.0) -> A.Compose:
    return A.Compose([A.HorizontalFlip(p=p), A.RandomBrightnessContrast(p=0.5)])


def _synthetic_dm(workers: int, cache: str, tmp_path, augment=None, **kw) -> WatermarkDataModule:
    dm = WatermarkDataModule(
        synth=SynthConfig(size=32),
        train_size=8,
        val_size=4,
        test_size=4,
        batch_size=4,
        num_workers=workers,
        cache=cache,
        cache_dir=tmp_path / "cache",
        augment=augment,
        **kw,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_augmentation_is_shared_by_image_and_mask_and_seeded_per_sample(tmp_path):
    plain = _synthetic_dm(0, "none", tmp_path)
    flipped = _synthetic_dm(0, "none", tmp_path, augment=A.Compose([A.HorizontalFlip(p=1.0)]))
    for i in range(4):
        image, mask = plain.datasets["train"].pair(i)
        f_image, f_mask = flipped.datasets["train"].pair(i)
        assert np.array_equal(f_image, image[:, ::-1]) and np.array_equal(f_mask, mask[:, ::-1])
    # Validation is never augmented.
    assert all(torch.equal(a[0], b[0]) for a, b in zip(_batches(plain), _batches(flipped), strict=True))


def test_augmented_train_samples_same_in_every_worker_count_and_cache_mode(tmp_path):
    ref = _synthetic_dm(0, "none", tmp_path, augment=_flip_augment(0.5))
    # Augmentation does change samples (some flipped, some brightened).
    unaugmented = _synthetic_dm(0, "none", tmp_path)
    assert any(
        not np.array_equal(ref.datasets["train"].pair(i)[0], unaugmented.datasets["train"].pair(i)[0])
        for i in range(8)
    )
    for workers, cache in ((2, "none"), (0, "memory"), (2, "disk")):
        dm = _synthetic_dm(workers, cache, tmp_path, augment=_flip_augment(0.5))
        # Unshuffled loader over the train split, so that worker processes do the work.
        loader = torch.utils.data.DataLoader(dm.datasets["train"], batch_size=4, num_workers=workers)
        got = [b for b in loader]
        want = [ref.datasets["train"][i] for i in range(8)]
        images = torch.cat([b["image"] for b in got])
        masks = torch.cat([b["mask"] for b in got])
        assert torch.equal(images, torch.stack([w["image"] for w in want])), (workers, cache)
        assert torch.equal(masks, torch.stack([w["mask"] for w in want])), (workers, cache)


def test_scan_pairs_names_and_skips_bad_files(tmp_path, caplog):
    root = tmp_path / "pairs"
    _pairs(root, 3)
    (root / "images" / "corrupt.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "images" / "nomask.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "images" / "wrongsize.png")
    Image.fromarray(np.zeros((21, 30), np.uint8)).save(root / "masks" / "wrongsize.png")
    with caplog.at_level(logging.WARNING):
        pairs = scan_pairs([root])
    assert sorted(p.name for p, _ in pairs) == ["p00.png", "p01.png", "p02.png"]
    text = caplog.text
    assert "corrupt.jpg" in text and "nomask.png" in text and "wrongsize.png" in text
    assert "30x21 but its image is 30x20" in text and "skipped 3 of 6 pairs" in text
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(empty / "images" / "a.png")
    with pytest.raises(FileNotFoundError, match="no usable image/mask pairs"):
        scan_pairs([empty])


def test_folder_crops_are_deterministic_and_survive_a_file_gone_bad(tmp_path, caplog):
    root = tmp_path / "pairs"
    _pairs(root, 3, size=(50, 40))
    pairs = scan_pairs([root])
    crops = FolderCrops(pairs, size=48, length=6, seed=5)
    a, b = crops.pair(2), FolderCrops(pairs, size=48, length=6, seed=5).pair(2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # Images smaller than the crop are scaled up; the mask still marks the bright bar.
    image, mask = a
    assert image.shape == (48, 48, 3) and mask.shape == (48, 48) and set(np.unique(mask)) == {0, 1}
    assert (image[mask == 1] >= 200).all()
    # A file that passed the scan but cannot be decoded later: named, and another pair used.
    (root / "images" / "p00.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with caplog.at_level(logging.WARNING):
        for i in range(6):
            assert crops.pair(i)[0].shape == (48, 48, 3)
    assert "p00.png" in caplog.text


def test_mixed_train_split_follows_the_ratio(tmp_path):
    root = tmp_path / "pairs"
    _pairs(root, 3, size=(40, 40))
    dm = _synthetic_dm(0, "none", tmp_path, real_roots=[str(root)], real_ratio=0.5)
    train = dm.datasets["train"]
    real = [train.is_real(i) for i in range(len(train))]
    assert 0 < sum(real) < len(real)
    for i, is_real in enumerate(real):
        want = (train.real if is_real else train.synthetic).pair(i)
        assert torch.equal(train[i]["image"], torch.from_numpy(want[0].copy()).permute(2, 0, 1).float() / 255)
    big = WatermarkDataModule(
        synth=SynthConfig(size=32), train_size=400, real_roots=[str(root)], real_ratio=0.3
    )
    big.setup("fit")
    share = np.mean([big.datasets["train"].is_real(i) for i in range(400)])
    assert 0.22 < share < 0.38
    with pytest.raises(ValueError, match=r"data\.real_roots"):
        WatermarkDataModule(real_ratio=0.5)
    with pytest.raises(ValueError, match=r"data\.real_ratio"):
        WatermarkDataModule(real_roots=[str(root)], real_ratio=1.5)


def test_folder_datamodule_splits_pairs(tmp_path):
    root = tmp_path / "pairs"
    _pairs(root, 10, size=(64, 64))
    dm = FolderDataModule(
        str(root), size=32, train_size=12, val_size=4, test_size=4, batch_size=4, num_workers=0
    )
    splits = dm.split_pairs()
    assert [len(splits[k]) for k in ("train", "val", "test")] == [8, 1, 1]
    names = [p.name for k in splits for p, _ in splits[k]]
    assert len(set(names)) == 10  # disjoint
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
    two = tmp_path / "two"
    _pairs(two, 2)
    with pytest.raises(ValueError, match="at least 3 usable pairs"):
        FolderDataModule(str(two)).setup("fit")


def test_train_on_a_folder_and_on_a_mix(make_cfg, tmp_path):
    from wmseg.tasks.train import train

    root = tmp_path / "pairs"
    _pairs(root, 6, size=(64, 64))
    common = ["debug=fdr", "callbacks.rich_progress_bar=null"]
    cfg = make_cfg(
        "data=folder",
        f"data.root={root}",
        "data.size=32",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.val_size=2",
        "data.test_size=2",
        "data/augment=basic",
        *common,
        tiny=False,
    )
    metrics = train(cfg)
    assert np.isfinite(metrics["val/iou"])
    cfg = make_cfg(
        "data=mix", f"data.real_roots=[{root}]", "data.real_ratio=0.5", "data.train_size=8", *common
    )
    metrics = train(cfg)
    assert np.isfinite(metrics["val/iou"])
