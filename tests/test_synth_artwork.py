"""Coloured artwork, small corner signatures, texture negatives and per-family font
sources: each renders with an exact visible-footprint mask and stays a pure function of
(config, seed, index)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from wmseg.synth import BackgroundBank, SynthConfig, WatermarkSynth, artwork
from wmseg.synth.composition import texture
from wmseg.synth.fonts import latin_fonts

SOURCES = [
    pytest.param(
        "tuxpaint",
        marks=pytest.mark.skipif(
            not artwork.TUXPAINT_STAMPS.is_dir(),
            reason="Tux Paint stamps missing: sudo apt-get install tuxpaint-stamps-default",
        ),
    ),
    pytest.param(
        "emoji",
        marks=pytest.mark.skipif(
            not artwork.NOTO_EMOJI.is_file(),
            reason="Noto Color Emoji missing: sudo apt-get install fonts-noto-color-emoji",
        ),
    ),
    "procedural",
]


class _FlatGrey(BackgroundBank):
    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full((size, size, 3), 128, np.uint8)


def _artwork(source: str, bank: BackgroundBank | None = None, **changes) -> WatermarkSynth:
    """One artwork mark an image, alone, level and undegraded."""
    style = {
        "size": 96, "clean_fraction": 0.0, "tiled_fraction": 0.0, "max_marks": 1, "noise_std": (0, 0),
        "jpeg_prob": 0.0, "opacity": (1.0, 1.0), "outline_prob": 0.0, "shadow_prob": 0.0,
        "max_rotation": 0.0, "artwork_prob": 1.0, "artwork_sources": (source,), "logo_text_prob": 0.0,
    }  # fmt: skip
    return WatermarkSynth(SynthConfig(**(style | changes)), bank or _FlatGrey())


def test_rgba_layers_draw_back_the_drawing():
    # A three-colour drawing with soft (anti-aliased) outer edges.
    big = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    draw.ellipse((10, 10, 150, 150), fill=(200, 30, 40, 255))
    draw.rectangle((40, 60, 120, 100), fill=(250, 250, 250, 255))
    draw.polygon([(80, 20), (100, 55), (60, 55)], fill=(20, 60, 160, 255))
    rgba = big.resize((40, 40), Image.Resampling.BOX)
    layers = artwork.rgba_layers(rgba, colours=8)
    assert 3 <= len(layers) <= 8
    cover = np.stack([np.asarray(t, np.float32) for t, _ in layers])
    alpha = np.asarray(rgba.getchannel("A"), np.float32)
    # Disjoint layers whose coverages add up to the drawing's alpha.
    assert np.allclose(cover.sum(axis=0), alpha) and ((cover > 0).sum(axis=0) <= 1).all()
    out = np.full((40, 40, 3), 128.0, np.float32)
    for tile, colour in layers:
        a = np.asarray(tile, np.float32)[..., None] / 255.0
        out = out * (1 - a) + a * colour
    a = alpha[..., None] / 255.0
    want = np.full((40, 40, 3), 128.0) * (1 - a) + a * np.asarray(rgba.convert("RGB"), np.float32)
    # Median cut merges the box-filtered blends of the inner edges; the flat colours come back.
    inside = alpha == 255
    assert np.median(np.abs(out - want)[inside]) < 2.0 and np.abs(out - want).mean() < 8.0


@pytest.mark.parametrize("source", SOURCES)
def test_artwork_mask_is_its_visible_footprint(source):
    synth = _artwork(source, visibility_threshold=6.0, artwork_mono_prob=0.0)
    colours = 0
    for i in range(6):
        s = synth.render(2, i)
        diff = np.abs(s.image.astype(np.float32) - 128).max(axis=2)
        decided = np.abs(diff - 6.0) > 0.5
        assert np.array_equal(s.mask.astype(bool)[decided], (diff >= 6.0)[decided]), i
        assert s.mask.sum() > 20, i
        marked = s.image[s.mask.astype(bool)].reshape(-1, 3)
        colours += len(np.unique(marked // 32, axis=0)) > 2
    assert colours >= 3  # in their own colours, artwork has several


@pytest.mark.parametrize("source", SOURCES)
def test_faint_artwork_changes_the_image_but_stays_out_of_the_mask(source):
    synth = _artwork(source, opacity=(0.015, 0.015))
    for i in range(3):
        s = synth.render(0, i)
        assert s.mask.sum() == 0 and (s.image != 128).any()


def test_artwork_that_changes_nothing_has_an_empty_mask(monkeypatch):
    from wmseg.synth import layers

    # White silhouettes multiplied over the photo leave every pixel as it was.
    monkeypatch.setattr(layers, "rand_color", lambda rng: np.full(3, 255.0, np.float32))
    synth = _artwork("procedural", BackgroundBank(procedural_fraction=1.0), artwork_mono_prob=1.0)
    assert all(synth.render(0, i).mask.sum() > 0 for i in range(3))
    synth = _artwork(
        "procedural", BackgroundBank(procedural_fraction=1.0), artwork_mono_prob=1.0, blend_probs=(0, 1, 0, 0)
    )
    assert all(synth.render(0, i).mask.sum() == 0 for i in range(3))


def test_artwork_with_text_tiles_and_plates_stays_a_pure_function():
    cfg = SynthConfig(
        size=96, artwork_prob=0.7, tiled_fraction=0.5, plate_prob=0.5, signature_prob=0.3,
        texture_clean_prob=1.0, clean_fraction=0.3,
    )  # fmt: skip
    a, b = WatermarkSynth(cfg), WatermarkSynth(cfg)
    for i in range(8):
        x, y = a.render(5, i), b.render(5, i)
        assert np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)
    assert not np.array_equal(a.render(5, 0).image, a.render(5, 1).image)


def test_a_missing_artwork_package_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(artwork, "TUXPAINT_STAMPS", tmp_path / "none")
    monkeypatch.setattr(artwork, "NOTO_EMOJI", tmp_path / "none.ttf")
    artwork.tuxpaint_stamps.cache_clear()
    artwork.emoji_glyphs.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="apt-get install tuxpaint-stamps-default"):
            WatermarkSynth(SynthConfig(artwork_prob=0.5, artwork_sources=("tuxpaint",)))
        with pytest.raises(FileNotFoundError, match="apt-get install fonts-noto-color-emoji"):
            WatermarkSynth(SynthConfig(artwork_prob=0.5, artwork_sources=("procedural", "emoji")))
    finally:
        artwork.tuxpaint_stamps.cache_clear()
        artwork.emoji_glyphs.cache_clear()
    with pytest.raises(ValueError, match=r"data\.synth\.artwork_sources"):
        WatermarkSynth(SynthConfig(artwork_prob=0.5, artwork_sources=("clipart",)))
    # Not drawn, not checked: the default needs no package.
    WatermarkSynth(SynthConfig(artwork_sources=("clipart",)))


def test_signatures_are_small_level_and_in_a_corner():
    size = 512
    cfg = SynthConfig(
        size=size, clean_fraction=0.0, tiled_fraction=0.0, max_marks=1, noise_std=(0, 0), jpeg_prob=0.0,
        opacity=(1.0, 1.0), outline_prob=0.0, shadow_prob=0.0, signature_prob=1.0,
        signature_size=(0.01, 0.03), signature_image_height=(512, 1024),
    )  # fmt: skip
    synth = WatermarkSynth(cfg, _FlatGrey())
    seen = 0
    for i in range(12):
        ys, xs = np.nonzero(synth.render(1, i).mask)
        if not len(ys):  # a mid-grey mark on the grey page: invisible, so unmarked
            continue
        seen += 1
        # A font of at most 3 % of 1024 px (31 px): glyphs with ascenders and descenders,
        # a few degrees of tilt over a long line, stay within 2 em.
        assert ys.max() - ys.min() < 62, i
        # Ending near a corner: its far edges within 6 % of the side (and a little slack).
        near_x = xs.min() < 0.08 * size or xs.max() > 0.92 * size
        near_y = ys.min() < 0.08 * size or ys.max() > 0.92 * size
        assert near_x and near_y, i
    assert seen >= 8
    with pytest.raises(ValueError, match=r"data\.synth\.signature_size"):
        SynthConfig(signature_size=(0.05, 0.5))


def test_clean_images_lean_to_fine_texture():
    bank = dict(photo_sources=("skimage",), procedural_fraction=0.0)
    plain = SynthConfig(size=64, clean_fraction=1.0, noise_std=(0, 0), jpeg_prob=0.0)
    textured = SynthConfig(**{**plain.__dict__, "texture_clean_prob": 1.0, "texture_candidates": 6})
    a = [WatermarkSynth(plain, BackgroundBank(**bank)).render(0, i) for i in range(24)]
    b = [WatermarkSynth(textured, BackgroundBank(**bank)).render(0, i) for i in range(24)]
    assert all(s.mask.sum() == 0 for s in a + b)
    assert np.mean([texture(s.image) for s in b]) > 1.3 * np.mean([texture(s.image) for s in a])
    flat = np.full((16, 16, 3), 100, np.uint8)
    noisy = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    assert texture(flat) == 0.0 < texture(noisy)


def test_font_families_are_sources_of_their_own():
    every = set(latin_fonts(("open_fonts",)))
    amatic, caladea = set(latin_fonts(("amatic_sc",))), set(latin_fonts(("caladea",)))
    assert amatic and caladea and amatic.isdisjoint(caladea) and amatic | caladea < every
    assert all("font_amatic_sc" in str(p) for p in amatic)
    assert set(latin_fonts(("amatic_sc", "caladea"))) == amatic | caladea
    with pytest.raises(ValueError, match=r"data\.synth\.font_sources"):
        latin_fonts(("comic_sans",))
