"""The photo bank (install from a folder source, EXIF, splits by source, the missing-bank
error) and the scene negatives and look-alike marks of the overlay-versus-scene data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from wmseg.errors import ConfigError
from wmseg.synth import BackgroundBank, SynthConfig, WatermarkSynth
from wmseg.synth.photo_bank import BankSource, PhotoBank, install, load_sources
from wmseg.synth.scene import SCENE_OBJECTS


def _photo(path, w, h, seed, orientation=None):
    rng = np.random.default_rng(seed)
    # A left-to-right ramp plus noise: rotation is visible in where the dark side ends up.
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    arr = np.clip(ramp + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, exif=exif.tobytes() if orientation else b"", quality=95)
    return arr


def _folder_sources(tmp_path):
    """Three folder sources, one a split: train (3 photos), val (1), proxy (1), plus files
    the patterns leave out (a thumbnail, an excluded name)."""
    for i in range(3):
        _photo(tmp_path / "a" / f"p{i}.jpg", 320, 240, i)
    _photo(tmp_path / "a" / "tiny.jpg", 100, 80, 9)  # under min_side: not a photograph
    _photo(tmp_path / "a" / "logo_p.jpg", 320, 240, 10)  # excluded by name
    _photo(tmp_path / "b" / "rot.jpg", 400, 300, 3, orientation=6)  # shown rotated 90 degrees
    _photo(tmp_path / "c" / "q.jpg", 300, 300, 4)
    return [
        BankSource("a", "folder", str(tmp_path / "a"), "train", "CC0", ("*.jpg",), exclude=("logo*",)),
        BankSource("b", "folder", str(tmp_path / "b"), "val", "CC-BY-4.0", ("*.jpg",)),
        BankSource("c", "folder", str(tmp_path / "c"), "proxy", "public domain", ("*.jpg",)),
    ]


def test_bank_installs_upright_photos_split_by_source(tmp_path):
    root = install(tmp_path / "bank", _folder_sources(tmp_path), max_side=200)
    bank = PhotoBank(root)
    train, val, proxy = (bank.photos(s) for s in ("train", "val", "proxy"))
    assert (len(train), len(val), len(proxy)) == (3, 1, 1)
    assert [r["file"] for r in bank.records("train")] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert train[0].shape == (150, 200, 3) and train[0].dtype == np.uint8
    # EXIF orientation 6: the 400x300 file is shown (and stored) 225 wide, 300 high at
    # 200 px max side -> (200, 150); its bright right side is now at the bottom.
    rot = val[0]
    assert rot.shape == (200, 150, 3)
    assert rot[-20:].mean() > rot[:20].mean() + 100
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["sources"]["b"]["licence"] == "CC-BY-4.0"
    assert manifest["sources"]["a"]["photos"] == 3 and manifest["failed"] == {}
    # Installing again gives the same bank, byte for byte.
    again = install(tmp_path / "bank2", _folder_sources(tmp_path), max_side=200)
    assert (again / "photos.u8").read_bytes() == (root / "photos.u8").read_bytes()


def test_missing_bank_names_its_install_command(tmp_path):
    with pytest.raises(ConfigError, match=r"photo bank not found at .*make photos"):
        PhotoBank(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="make photos"):
        BackgroundBank(photo_sources=("skimage", "bank"), photo_bank=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="make photos"):
        BackgroundBank("bank_val", photo_bank=str(tmp_path / "nowhere"))
    # The command line says it in one line too.
    done = subprocess.run(
        [sys.executable, "-m", "wmseg.synth.photo_bank", "info", "--dest", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "make photos" in done.stderr and "Traceback" not in done.stderr


def test_backgrounds_draw_bank_photos_for_train_and_its_val_split_for_validation(tmp_path):
    root = str(install(tmp_path / "bank", _folder_sources(tmp_path), max_side=200))
    train = BackgroundBank(photo_sources=("bank",), photo_bank=root, procedural_fraction=0.0)
    val = BackgroundBank("bank_val", photo_bank=root, procedural_fraction=0.0)
    assert len(train) == 3 and len(val) == 1
    both = BackgroundBank(photo_sources=("skimage", "bank"), photo_bank=root)
    assert len(both) == 16 + 3
    # The bank photos are the last ones: index 16 is the bank's first photo, as stored.
    assert np.array_equal(both._photos()[16], PhotoBank(root).photos("train")[0])
    crop = train.sample(np.random.default_rng(0), 64)
    assert crop.shape == (64, 64, 3)
    # A render on the bank is a pure function of (seed, index).
    synth = WatermarkSynth(SynthConfig(size=64), train)
    assert np.array_equal(synth.render(3, 5).image, synth.render(3, 5).image)
    with pytest.raises(ValueError, match=r"data\.photo_sources"):
        BackgroundBank(photo_sources=("banks",))


def test_packaged_sources_are_valid_and_split_three_ways():
    sources = load_sources()
    assert {s.split for s in sources} == {"train", "val", "proxy"}
    forbidden = ("openclipart", "mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers")
    assert not [s.package for s in sources if s.package.startswith(forbidden)]
    assert all(s.licence for s in sources)


class _Photo(BackgroundBank):
    """A fixed smooth photo-like background (no bank needed)."""

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        yy, xx = np.mgrid[0:size, 0:size]
        return np.stack([xx * 200 // size + 30, yy * 200 // size + 30, np.full_like(xx, 90)], 2).astype(
            np.uint8
        )


_BASE = {"size": 128, "noise_std": (0, 0), "jpeg_prob": 0.0}


@pytest.mark.parametrize("kind", SCENE_OBJECTS)
def test_scene_objects_change_the_clean_photo_and_never_the_mask(kind):
    cfg = SynthConfig(**_BASE, clean_fraction=1.0, scene_object_prob=1.0, scene_objects=(kind,))
    synth = WatermarkSynth(cfg, _Photo())
    plain = _Photo().sample(np.random.default_rng(0), 128).astype(np.int16)
    drawn = 0
    for i in range(4):
        s = synth.render(2, i)
        assert s.mask.sum() == 0
        drawn += (np.abs(s.image.astype(np.int16) - plain).max(axis=2) > 25).mean() > 0.005
    assert drawn >= 3  # an object is drawn into (almost) every photo


def test_a_mark_over_scene_objects_is_still_labelled_exactly():
    cfg = SynthConfig(**_BASE, clean_fraction=0.0, scene_object_prob=1.0, max_scene_objects=3)
    synth = WatermarkSynth(cfg, _Photo())
    for i in range(4):
        sample, clean = synth.render_with_clean(5, i)
        assert sample.mask.sum() > 0
        # The mask is where the mark changed the photo with its objects, not the objects.
        diff = np.abs(sample.image.astype(np.int16) - clean.astype(np.int16)).max(axis=2)
        assert (diff[sample.mask == 0] <= cfg.visibility_threshold + 1).all()


@pytest.mark.parametrize(
    "style",
    [{"banner_prob": 1.0}, {"id_text_prob": 1.0}, {"plain_logo_prob": 1.0}],
)
def test_look_alike_single_marks_are_labelled(style):
    cfg = SynthConfig(**_BASE, clean_fraction=0.0, tiled_fraction=0.0, max_marks=1, **style)
    synth = WatermarkSynth(cfg, _Photo())
    areas = [synth.render(1, i).mask.mean() for i in range(6)]
    assert min(areas) > 0
    if "banner_prob" in style:  # along the top or the bottom edge
        for i in range(6):
            rows = np.flatnonzero(synth.render(1, i).mask.any(axis=1))
            assert rows.min() < 128 * 0.35 or rows.max() > 128 * 0.65
    if "id_text_prob" in style:  # small, in a corner
        assert max(areas) < 0.1


def test_line_grid_adds_thin_lines_to_tiled_marks():
    base = dict(**_BASE, clean_fraction=0.0, tiled_fraction=1.0, opacity=(0.9, 1.0))
    lines = WatermarkSynth(SynthConfig(**base, line_grid_prob=1.0), _Photo())
    plain = WatermarkSynth(SynthConfig(**base), _Photo())
    more = [lines.render(3, i).mask.mean() - plain.render(3, i).mask.mean() for i in range(4)]
    assert min(more) >= 0 and max(more) > 0.01


def test_new_options_default_off_and_are_checked():
    for key in ("scene_object_prob", "banner_prob", "id_text_prob", "plain_logo_prob", "line_grid_prob"):
        assert getattr(SynthConfig(), key) == 0.0
        with pytest.raises(ValueError, match=rf"data\.synth\.{key}"):
            SynthConfig(**{key: 1.5})
    with pytest.raises(ValueError, match=r"data\.synth\.scene_objects"):
        SynthConfig(scene_objects=("chrome", "hologram"))


def test_a_recipe_on_a_missing_bank_stops_with_the_install_command(make_cfg, tmp_path):
    from wmseg.tasks.train import train

    cfg = make_cfg("experiment=cpu_overlay", "debug=fdr", f"data.photo_bank={tmp_path / 'none'}")
    with pytest.raises(ConfigError, match=r"photo bank not found at .*none: install it with make photos"):
        train(cfg)


def test_large_scene_text_fills_much_of_the_crop_and_stays_out_of_the_mask():
    base = dict(**_BASE, clean_fraction=1.0, scene_text_prob=1.0)
    large = WatermarkSynth(SynthConfig(**base, scene_large_prob=1.0), _Photo())
    small = WatermarkSynth(SynthConfig(**base), _Photo())
    plain = _Photo().sample(np.random.default_rng(0), 128).astype(np.int16)

    def covered(synth: WatermarkSynth, i: int) -> float:
        s = synth.render(6, i)
        assert s.mask.sum() == 0
        return float((np.abs(s.image.astype(np.int16) - plain).max(axis=2) > 25).mean())

    big = [covered(large, i) for i in range(6)]
    assert np.mean(big) > 2 * np.mean([covered(small, i) for i in range(6)])
    assert min(big) > 0.15
    with pytest.raises(ValueError, match=r"data\.synth\.scene_large_prob"):
        SynthConfig(scene_large_prob=2.0)
