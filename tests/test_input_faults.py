"""Inputs that used to be read wrongly or lost work silently: each is now read right, or
refused with a message naming the key or file."""

import os
import shutil
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import compose_config, run_script
from wmseg.atomic import write_atomic, write_text_atomic
from wmseg.callbacks.checkpoint_io import AtomicCheckpointIO
from wmseg.data.cache import DiskSamples, build_disk_cache, is_complete
from wmseg.data.folder import FolderPairs
from wmseg.errors import ConfigError, DataError
from wmseg.image_files import image_size, read_mask, read_rgb
from wmseg.synth import BackgroundBank, SynthConfig, WatermarkSynth
from wmseg.tasks.checks import check_run_config
from wmseg.tasks.evaluate import evaluate
from wmseg.tasks.export import export

ORIENTATION = 0x0112


def _eval(tmp_path, *overrides):
    return evaluate(compose_config(tmp_path / "eval", list(overrides), config_name="evaluate"))


# --- images as shown ---------------------------------------------------------------


def test_16_bit_greyscale_is_scaled_to_8_bits_not_whitened(tmp_path):
    values = np.linspace(0, 2 * 87 * 257, 64 * 64).reshape(64, 64).astype(np.uint16)  # mean 87 in 8 bits
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    rgb = read_rgb(path)
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert rgb.shape == (64, 64, 3) and np.array_equal(rgb[..., 1], expected)
    assert abs(rgb.mean() - 87) < 0.5
    # The backgrounds loader reads the same way: a flat 16-bit photo stays grey 87.
    folder = tmp_path / "bg"
    folder.mkdir()
    Image.fromarray(np.full((80, 80), 87 * 257, np.uint16)).save(folder / "flat.png")
    sample = BackgroundBank(folder, procedural_fraction=0.0).sample(np.random.default_rng(0), 32)
    assert np.all(sample == 87)


def _rotated_jpeg(path, orientation=6):
    """A 40x20 (W x H) JPEG whose left half is red, stored with an EXIF orientation."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20, 0] = 255
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)


def test_exif_orientation_is_applied_to_pixels_and_size(tmp_path):
    path = tmp_path / "phone.jpg"
    _rotated_jpeg(path)
    image = read_rgb(path)
    assert image.shape == (40, 20, 3) and image_size(path) == (40, 20)
    # Orientation 6 is shown turned 90 degrees clockwise: the left half becomes the top.
    assert image[:18, :, 0].mean() > 200 and image[22:, :, 0].mean() < 50


def test_a_phone_photo_and_its_upright_mask_pair_up(tmp_path):
    root = tmp_path / "pairs"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    _rotated_jpeg(root / "images" / "phone.jpg")
    mask = np.zeros((40, 20), np.uint8)  # drawn on the photo as shown: 20 wide, 40 tall
    mask[:20] = 255
    Image.fromarray(mask).save(root / "masks" / "phone.png")
    item = FolderPairs(root)[0]
    assert item.image.shape[:2] == item.mask.shape == (40, 20)
    assert item.mask[:20].all() and not item.mask[20:].any()


def test_a_mask_saved_as_0_and_1_marks_its_pixels(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 2:12] = 1
    Image.fromarray(mask).save(tmp_path / "ones.png")
    assert np.array_equal(read_mask(tmp_path / "ones.png", (16, 16)), mask)
    Image.fromarray(mask * 255).save(tmp_path / "full.png")
    assert np.array_equal(read_mask(tmp_path / "full.png"), mask)


# --- data.root lists ----------------------------------------------------------------


def test_folders_of_the_same_name_get_rows_of_their_own(trained_ckpt, pairs_folder, tmp_path):
    roots = [tmp_path / "a" / "set", tmp_path / "b" / "set", tmp_path / "c" / "all"]
    for root, keep in zip(roots, (1, 2, 3), strict=True):
        shutil.copytree(pairs_folder, root)
        for image in sorted((root / "images").iterdir())[keep:]:
            image.unlink()
    listed = "[" + ",".join(str(r) for r in roots) + "]"
    report = _eval(tmp_path, f"ckpt={trained_ckpt}", "data=folder", f"data.root={listed}")
    rows = report["sets"]
    assert set(rows) == {"a/set", "b/set", "c/all", "all"}
    assert [rows[k]["images"] for k in ("a/set", "b/set", "c/all", "all")] == [1, 2, 3, 6]


# --- the pixel limit ------------------------------------------------------------------


def test_an_image_over_the_pixel_limit_is_a_named_bad_file(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    with pytest.raises(DataError, match=r"big\.png: image is 64x64 = 4,096 pixels, over the limit"):
        read_rgb(path, max_pixels=4000)
    assert read_rgb(path).shape == (64, 64, 3)  # the limit is the call's, not the process's
    assert image_size(path, max_pixels=4096) == (64, 64)
    # Pillow's own guard (a process global, at twice its limit) fires at open: named our way.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    limit = r"big\.png: image is over the limit of 1,000 pixels.*max_image_pixels"
    with pytest.raises(DataError, match=limit):
        image_size(path, max_pixels=10**6)


def test_evaluation_skips_images_over_the_limit_and_names_them(trained_ckpt, pairs_folder, tmp_path):
    data = ["data=folder", f"data.root={pairs_folder}", "max_image_pixels=5000"]  # 64x64 fits; 80, 96 not
    with pytest.raises(DataError, match=r"img[23]\.png: image is .* over the limit") as err:
        _eval(tmp_path / "strict", f"ckpt={trained_ckpt}", *data)
    assert str(err.value).count(str(err.value.path)) == 1  # the path is named once
    report = _eval(tmp_path / "lenient", f"ckpt={trained_ckpt}", *data, "skip_bad=true")
    assert sorted(b["file"].rsplit("/", 1)[-1] for b in report["bad_files"]) == ["img2.png", "img3.png"]
    assert report["sets"]["pairs"]["images"] == 2


def test_backgrounds_skip_an_image_over_the_limit(tmp_path):
    folder = tmp_path / "bg"
    folder.mkdir()
    Image.fromarray(np.full((200, 200, 3), 10, np.uint8)).save(folder / "huge.png")
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(folder / "small.png")
    bank = BackgroundBank(folder, max_pixels=5000, procedural_fraction=0.0)
    samples = [bank.sample(np.random.default_rng(i), 32) for i in range(6)]
    assert all(np.all(s == 200) for s in samples)
    assert [p.name for p in bank.skipped] == ["huge.png"]


# --- the disk cache ---------------------------------------------------------------------


def test_a_cache_shard_zeroed_in_place_is_found_and_rebuilt(tmp_path):
    synth = WatermarkSynth(SynthConfig(size=32))
    folder = build_disk_cache(synth, seed=3, length=5, cache_dir=tmp_path)
    good = [DiskSamples(folder, 5)[i] for i in range(5)]
    shard = folder / "images_00000.npy"
    size, stat = shard.stat().st_size, shard.stat()
    with open(shard, "r+b") as f:  # the header stays valid; the pixels turn black
        f.seek(256)
        f.write(bytes(size - 256))
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as any later write
    assert shard.stat().st_size == size and np.load(shard).shape[0] == 5
    assert not is_complete(folder, 5)
    assert build_disk_cache(synth, seed=3, length=5, cache_dir=tmp_path) == folder
    rebuilt = DiskSamples(folder, 5)
    assert all(np.array_equal(rebuilt[i][0], good[i][0]) for i in range(5))
    assert rebuilt[0][0].any()


# --- writes -----------------------------------------------------------------------------


def test_atomic_writes_follow_the_umask_and_leave_nothing_on_failure(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "report.json", "{}")
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)

    def half_then_fail(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


class _Exploding:
    def __reduce__(self):
        raise RuntimeError("killed mid-save")


def test_checkpoints_are_staged_beside_their_target_not_in_tmpdir(tmp_path, monkeypatch):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))  # $TMPDIR unusable
    target = tmp_path / "checkpoints" / "last.ckpt"
    target.parent.mkdir()
    with pytest.raises(OSError):  # Lightning's writer stages the file in $TMPDIR
        TorchCheckpointIO().save_checkpoint({"step": 0}, target)
    orphan = target.parent / ".last.ckpt.0123abcd.tmp"  # left by a write that was killed
    orphan.write_bytes(b"partial")

    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, target)
    assert torch.load(target, weights_only=True)["step"] == 1
    assert not orphan.exists()
    with pytest.raises(RuntimeError, match="killed mid-save"):
        io.save_checkpoint({"step": 2, "w": torch.ones(1000), "x": _Exploding()}, target)
    assert torch.load(target, weights_only=True)["step"] == 1  # the last good one is whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]


def test_the_trainer_config_uses_the_atomic_writer(make_cfg):
    import hydra

    trainer = hydra.utils.instantiate(make_cfg().trainer)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_an_unwritable_output_folder_is_named_before_any_work(trained_ckpt, pairs_folder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    data = ["data=folder", f"data.root={pairs_folder}"]
    cfg = compose_config(tmp_path / "e", [f"ckpt={trained_ckpt}", *data], config_name="evaluate")
    cfg.paths.output_dir = f"{blocker}/out"  # e.g. a read-only disk: no folder can be made there
    with pytest.raises(ConfigError, match=r"paths\.output_dir=.*file/out is not a writable folder"):
        evaluate(cfg)
    with pytest.raises(ConfigError, match=r"calibrate \(its folder\)=.*file is not a writable folder"):
        _eval(tmp_path, f"ckpt={trained_ckpt}", f"calibrate={blocker}/cal.ckpt", "split=val")
    cfg = compose_config(tmp_path / "x", [f"ckpt={trained_ckpt}", "sample_size=64"], config_name="export")
    cfg.paths.output_dir = f"{blocker}/out"
    with pytest.raises(ConfigError, match=r"paths\.output_dir="):
        export(cfg)


# --- messages that name the key ------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("threshold=abc", r"threshold='abc': use a number between 0 and 1"),
        ("threshold=1.5", r"threshold=1.5: use a number between 0 and 1"),
        ("max_pixels=-1", r"max_pixels=-1: use a whole number >= 1"),
        ("tta=maybe", r"tta='maybe': use true or false"),
        ("skip_bad=nope", r"skip_bad='nope': use true or false"),
        ("overlays=1.5", r"overlays=1.5: use a whole number >= 0"),
        ("max_image_pixels=0", r"max_image_pixels=0: use a whole number >= 1 or null"),
        ("device=tpu", r"device=tpu: use cpu, cuda"),
    ],
)
def test_bad_evaluate_values_name_the_key(trained_ckpt, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        _eval(tmp_path, f"ckpt={trained_ckpt}", override)
    assert not (tmp_path / "eval" / "report.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_device_cuda_without_a_gpu_names_the_key(trained_ckpt, tmp_path):
    with pytest.raises(ConfigError, match=r"device=cuda: no CUDA GPU is available here"):
        _eval(tmp_path, f"ckpt={trained_ckpt}", "device=cuda")


@pytest.mark.parametrize("value", ["1.5", "true"])
def test_batch_size_must_be_a_whole_number(make_cfg, value):
    message = rf"data\.batch_size must be a whole number > 0, got {value.title()}"
    with pytest.raises(ConfigError, match=message):
        check_run_config(make_cfg(f"data.batch_size={value}"))


def test_a_bad_value_prints_one_line_not_a_traceback(trained_ckpt, tmp_path):
    args = ["evaluate.py", f"ckpt={trained_ckpt}", "threshold=abc", f"hydra.run.dir={tmp_path}/run"]
    out = run_script(args, tmp_path, timeout=180)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: threshold='abc': use a number between 0 and 1 (exclusive), or null"]
    assert "Traceback" not in out.stderr
    full = run_script(args, tmp_path, timeout=180, env_extra={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback" in full.stderr and "ConfigError" in full.stderr


def test_a_data_folder_without_masks_is_named_in_one_line(trained_ckpt, tmp_path):
    images = tmp_path / "set" / "images"
    images.mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(images / "a.png")
    with pytest.raises(DataError, match=r"set: has no masks/: a data folder holds images/ and masks/"):
        _eval(tmp_path, f"ckpt={trained_ckpt}", "data=folder", f"data.root={tmp_path / 'set'}")
