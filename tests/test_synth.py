import dataclasses

import numpy as np
import pytest
from PIL import Image

from wmseg.synth import BackgroundBank, SynthConfig, WatermarkSynth
from wmseg.synth.backgrounds import procedural_background
from wmseg.synth.composition import blend


def test_sample_is_pure_function_of_seed_and_index():
    synth = WatermarkSynth(SynthConfig(size=64))
    a, b = synth.render(3, 7), WatermarkSynth(SynthConfig(size=64)).render(3, 7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    c = synth.render(3, 8)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert a.mask.shape == (64, 64) and set(np.unique(a.mask)) <= {0, 1}


def test_clean_images_have_empty_masks():
    synth = WatermarkSynth(SynthConfig(size=64, clean_fraction=1.0, noise_std=(0, 0), jpeg_prob=0.0))
    for i in range(5):
        assert synth.render(0, i).mask.sum() == 0


VARIED = {
    "procedural_fraction": 0.1,
    "collage_fraction": 0.7,
    "color_jitter": 0.7,
    "min_zoom": 0.4,
    "shading": 0.5,
    "clutter": 0.5,
}


@pytest.mark.parametrize(
    "style, bank_options",
    [
        ({}, {"procedural_fraction": 1.0}),
        ({}, VARIED),
        ({"blend_probs": (0.25, 0.25, 0.25, 0.25)}, {"procedural_fraction": 1.0}),
        ({"logo_prob": 1.0, "logo_text_prob": 0.5, "outline_prob": 0.5, "shadow_prob": 0.5}, VARIED),
        ({"corner_prob": 1.0, "logo_prob": 0.5}, {"procedural_fraction": 1.0}),
        ({"emboss_prob": 1.0, "logo_prob": 0.5, "tiled_fraction": 0.5}, VARIED),
        ({"footprint_channels": "mean", "blend_probs": (0.25, 0.25, 0.25, 0.25)}, VARIED),
        ({"fill_prob": 1.0, "logo_prob": 0.5, "blend_probs": (0.25, 0.25, 0.25, 0.25)}, VARIED),
        ({"plate_prob": 1.0, "plate_opacity": (0.3, 1.0), "logo_prob": 0.5, "tiled_fraction": 0.5}, VARIED),
    ],
)
def test_mask_is_visible_footprint(style, bank_options):
    # No degradation: the mask must be exactly where the image differs visibly from its
    # background. Rendering the same rng stream's background alone gives the clean image.
    cfg = SynthConfig(
        size=96,
        clean_fraction=0.0,
        noise_std=(0, 0),
        jpeg_prob=0.0,
        opacity=(1.0, 1.0),
        **style,
    )
    bank = BackgroundBank(**bank_options)
    synth = WatermarkSynth(cfg, bank)
    for i in range(4):
        s = synth.render(1, i)
        clean = bank.sample(np.random.default_rng([1, i]), 96).astype(np.int16)
        diff = np.abs(s.image.astype(np.int16) - clean)
        diff = diff.max(axis=2) if cfg.footprint_channels == "max" else diff.mean(axis=2)
        visible = diff >= cfg.visibility_threshold
        # Rounding to uint8 moves values by at most 0.5, so only threshold-edge pixels differ.
        assert (visible != s.mask.astype(bool)).mean() < 0.01
        decided = np.abs(diff - cfg.visibility_threshold) > 0.5
        assert np.array_equal(visible[decided], s.mask.astype(bool)[decided])
        assert s.mask.sum() > 0


def test_blend_modes_on_known_values():
    base = np.array([[0.0, 64.0, 128.0, 255.0]])[..., None].repeat(3, axis=2)
    grey = np.full(3, 128.0)
    assert np.allclose(blend(base, grey, "multiply")[0, :, 0], [0, 64 * 128 / 255, 128 * 128 / 255, 128])
    assert np.allclose(blend(base, grey, "screen")[0, :, 0], 255 - (255 - base[0, :, 0]) * 127 / 255)
    overlay = blend(base, grey, "overlay")[0, :, 0]
    assert np.allclose(overlay[:2], 2 * base[0, :2, 0] * 128 / 255)  # dark half: multiply
    assert np.allclose(overlay[2:], 255 - 2 * (255 - base[0, 2:, 0]) * 127 / 255)  # light half: screen
    # Identities: white multiplies and black screens to no change at all.
    assert np.allclose(blend(base, np.full(3, 255.0), "multiply"), base)
    assert np.allclose(blend(base, np.zeros(3), "screen"), base)
    with pytest.raises(ValueError, match="blend mode 'dodge'"):
        blend(base, grey, "dodge")


def test_mark_that_changes_nothing_has_empty_mask(monkeypatch):
    # White in multiply mode leaves every pixel as it was: nothing visible, nothing labelled.
    from wmseg.synth import layers

    monkeypatch.setattr(layers, "rand_color", lambda rng: np.full(3, 255.0, np.float32))
    cfg = SynthConfig(
        size=64,
        clean_fraction=0.0,
        noise_std=(0, 0),
        jpeg_prob=0.0,
        outline_prob=0.0,
        shadow_prob=0.0,
        blend_probs=(0, 1, 0, 0),
    )
    synth = WatermarkSynth(cfg)
    assert all(synth.render(0, i).mask.sum() == 0 for i in range(4))
    # The same marks in normal mode are visible (white over photos) and labelled.
    normal = WatermarkSynth(dataclasses.replace(cfg, blend_probs=(1, 0, 0, 0)))
    assert sum(normal.render(0, i).mask.sum() for i in range(4)) > 0


def test_logos_and_corner_signatures():
    from wmseg.synth.logos import emblem, icon_glyph

    rng = np.random.default_rng(0)
    for _ in range(10):
        e = emblem(rng, 40, letter="W")
        assert e.size == (40, 40) and 0 < np.asarray(e).mean() < 255
        g = icon_glyph(rng, 30)
        assert g.mode == "L" and np.asarray(g).max() == 255
    # Corner signatures: the marked pixels of a one-mark image sit in one corner quadrant.
    cfg = SynthConfig(
        size=128,
        clean_fraction=0.0,
        tiled_fraction=0.0,
        max_marks=1,
        corner_prob=1.0,
        font_size=(0.08, 0.12),
        noise_std=(0, 0),
        jpeg_prob=0.0,
        opacity=(1.0, 1.0),
    )
    synth = WatermarkSynth(cfg)
    for i in range(6):
        ys, xs = np.nonzero(synth.render(4, i).mask)
        assert len(ys) > 0
        # Its bounding box ends within ~10 % of the image side from a corner, both ways.
        assert ys.min() < 14 or ys.max() > 113, (i, ys.min(), ys.max())
        assert xs.min() < 14 or xs.max() > 113, (i, xs.min(), xs.max())


def test_bad_blend_probs_name_the_key():
    with pytest.raises(ValueError, match=r"data\.synth\.blend_probs"):
        WatermarkSynth(SynthConfig(blend_probs=(1.0, 0.0)))


def test_invisible_mark_has_empty_mask():
    # A mark whose opacity leaves every pixel below the visibility threshold is not labelled.
    cfg = SynthConfig(size=64, clean_fraction=0.0, opacity=(0.01, 0.01), noise_std=(0, 0), jpeg_prob=0.0)
    synth = WatermarkSynth(cfg)
    assert all(synth.render(0, i).mask.sum() == 0 for i in range(5))


def test_procedural_background_range():
    img = procedural_background(np.random.default_rng(0), 64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and img.std() > 1


def test_backgrounds_folder_errors_and_skips(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        BackgroundBank(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        BackgroundBank(tmp_path / "empty")
    photos = tmp_path / "photos" / "nested"
    photos.mkdir(parents=True)
    Image.fromarray(np.full((80, 90, 3), 200, np.uint8)).save(photos / "good.png")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    bank = BackgroundBank(tmp_path / "photos", procedural_fraction=0.0)
    rng = np.random.default_rng(0)
    crops = [bank.sample(rng, 32) for _ in range(10)]
    assert all(c.shape == (32, 32, 3) and (c == 200).all() for c in crops)
    assert bank.skipped == {photos / "broken.jpg"}
    assert "broken.jpg" in caplog.text


def test_cjk_text_uses_only_characters_its_font_draws():
    from wmseg.synth.fonts import cjk_fonts, covered
    from wmseg.synth.text import CJK_WORDS, cjk_phrase

    fonts = cjk_fonts()
    assert {p.name for p in fonts} >= {"ipaexg.ttf", "NanumGothic.ttf"}
    scripts = set()
    for path in fonts:
        cmap = covered(path)
        assert sum(all(ord(ch) in cmap for ch in w) for w in CJK_WORDS) >= 5, path.name
        rng = np.random.default_rng(0)
        for _ in range(20):
            phrase = cjk_phrase(rng, cmap)
            assert all(ord(ch) in cmap for ch in phrase if not ch.isspace()), (path.name, phrase)
            for ch in phrase:
                if 0xAC00 <= ord(ch) <= 0xD7A3:
                    scripts.add("hangul")
                elif 0x30A0 <= ord(ch) <= 0x30FF:
                    scripts.add("katakana")
                elif 0x4E00 <= ord(ch) <= 0x9FFF:
                    scripts.add("han")
    assert scripts == {"hangul", "katakana", "han"}
    cfg = SynthConfig(size=96, clean_fraction=0.0, cjk_prob=1.0, opacity=(1.0, 1.0))
    latin = WatermarkSynth(dataclasses.replace(cfg, cjk_prob=0.0))
    cjk = WatermarkSynth(cfg)
    assert all(cjk.render(0, i).mask.sum() > 0 for i in range(4))
    assert not np.array_equal(cjk.render(0, 0).image, latin.render(0, 0).image)


def test_qr_code_marks():
    from wmseg.synth.logos import qr_code

    for seed in range(6):
        tile = np.asarray(qr_code(np.random.default_rng(seed), 84)) > 0
        assert tile.shape == (84, 84)
        # Finder squares in three corners, for any module count (21, 25 or 29): pixel 1 is
        # in the outer ring, pixel 5 in the clear ring, pixel 10 in the centre square.
        for flip_y, flip_x in ((False, False), (False, True), (True, False)):
            t = tile[::-1] if flip_y else tile
            t = t[:, ::-1] if flip_x else t
            assert t[1, 1] and not t[5, 5] and t[10, 10], (seed, flip_y, flip_x)
    cfg = SynthConfig(
        size=96, clean_fraction=0.0, tiled_fraction=0.0, logo_prob=1.0, qr_prob=1.0, opacity=(1, 1)
    )
    assert all(WatermarkSynth(cfg).render(2, i).mask.sum() > 0 for i in range(4))


def test_footprint_blur_widens_the_mask_only():
    # The same image; the mask grows into a band around the strokes, and a clean image
    # stays unlabelled.
    cfg = SynthConfig(size=96, clean_fraction=0.0, noise_std=(0, 0), jpeg_prob=0.0, opacity=(1.0, 1.0))
    sharp, soft = WatermarkSynth(cfg), WatermarkSynth(dataclasses.replace(cfg, footprint_blur=1.5))
    for i in range(4):
        a, b = sharp.render(5, i), soft.render(5, i)
        assert np.array_equal(a.image, b.image)
        assert b.mask.sum() > a.mask.sum()
        # Sharp-mask pixels stay marked, except thin tips the blur averages away.
        assert (b.mask[a.mask == 1] == 1).mean() > 0.95
    clean = WatermarkSynth(dataclasses.replace(cfg, clean_fraction=1.0, footprint_blur=2.0))
    assert all(clean.render(0, i).mask.sum() == 0 for i in range(3))


def _mean_gradient(img: np.ndarray) -> float:
    return float(np.abs(np.diff(img.astype(np.float32), axis=1)).mean())


def test_background_variety_options():
    def draw(n: int = 24, **options) -> list[np.ndarray]:
        bank = BackgroundBank(**{"procedural_fraction": 0.0, **options})
        return [bank.sample(np.random.default_rng([5, i]), 96) for i in range(n)]

    plain = draw()
    # The defaults draw nothing extra: samples are what they were without the options.
    assert all(
        np.array_equal(a, b) for a, b in zip(plain, draw(collage_fraction=0, color_jitter=0), strict=True)
    )
    # Seeded: the same stream gives the same bytes.
    varied = draw(collage_fraction=1.0, color_jitter=1.0, min_zoom=0.3)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(varied, draw(collage_fraction=1.0, color_jitter=1.0, min_zoom=0.3), strict=True)
    )
    assert all(v.shape == (96, 96, 3) and v.dtype == np.uint8 for v in varied)
    # Collages differ from the crop they start from; jitter moves its colours.
    collage = draw(collage_fraction=1.0)
    assert sum(not np.array_equal(c, p) for c, p in zip(collage, plain, strict=True)) == len(plain)
    jittered = draw(color_jitter=1.0)
    shift = [
        np.abs(j.astype(np.float32).mean((0, 1)) - p.astype(np.float32).mean((0, 1))).max()
        for j, p in zip(jittered, plain, strict=True)
    ]
    assert np.median(shift) > 5
    # Shading is soft: it changes the crop, and its edges add little fine gradient.
    shaded = draw(shading=1.0)
    assert all(not np.array_equal(s, p) for s, p in zip(shaded, plain, strict=True))
    assert np.mean([_mean_gradient(s) for s in shaded]) < 1.1 * np.mean([_mean_gradient(p) for p in plain])
    # Clutter only touches collages, adds many small leaves (fine detail), and is seeded.
    assert all(
        np.array_equal(a, b) for a, b in zip(draw(clutter=1.0), plain, strict=True)
    )  # no collage, nothing to clutter
    assert all(
        np.array_equal(a, b) for a, b in zip(draw(collage_fraction=1.0, clutter=0.0), collage, strict=True)
    )
    cluttered = draw(collage_fraction=1.0, clutter=1.0)
    assert all(
        np.array_equal(a, b) for a, b in zip(cluttered, draw(collage_fraction=1.0, clutter=1.0), strict=True)
    )
    changed = [
        np.abs(c.astype(np.int16) - p.astype(np.int16)).max(axis=2) > 0
        for c, p in zip(cluttered, collage, strict=True)
    ]
    assert all(0.05 < m.mean() < 0.98 for m in changed)  # leaves cover part of the scene, not all
    assert np.mean([_mean_gradient(c) for c in cluttered]) > 1.1 * np.mean(
        [_mean_gradient(c) for c in collage]
    )


def test_min_zoom_magnifies_crops(tmp_path):
    # White noise: the smaller the crop, the more it is magnified, the smoother it gets.
    (tmp_path / "bg").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "bg" / "noise.png")

    def gradients(min_zoom: float) -> np.ndarray:
        bank = BackgroundBank(tmp_path / "bg", procedural_fraction=0.0, min_zoom=min_zoom)
        return np.array([_mean_gradient(bank.sample(np.random.default_rng([2, i]), 96)) for i in range(64)])

    plain, zoomed = gradients(1.0), gradients(0.1)
    assert plain.min() > 20  # never magnified: noise stays sharp
    assert (zoomed < 0.6 * plain.min()).sum() >= 3  # crops well under 96 px were magnified


@pytest.mark.parametrize(
    "options, key",
    [
        ({"collage_fraction": 1.5}, "collage_fraction"),
        ({"color_jitter": -0.1}, "color_jitter"),
        ({"min_zoom": 0.0}, "min_zoom"),
        ({"clutter": 2.0}, "clutter"),
    ],
)
def test_background_options_are_checked(options, key):
    with pytest.raises(ValueError, match=rf"data\.{key}"):
        BackgroundBank(**options)


@pytest.mark.parametrize(
    "degradation",
    [
        {"color_shift_prob": 1.0},
        {"blur_prob": 1.0, "blur_sigma": (1.0, 1.5)},
        {"resize_prob": 1.0, "resize_scale": (0.4, 0.5)},
    ],
)
def test_degradations_change_the_image_not_the_mask(degradation):
    base = {"size": 64, "clean_fraction": 0.0, "noise_std": (0, 0), "jpeg_prob": 0.0}
    plain = WatermarkSynth(SynthConfig(**base))
    degraded = WatermarkSynth(SynthConfig(**base, **degradation))
    for i in range(4):
        a, b = plain.render(0, i), degraded.render(0, i)
        assert np.array_equal(a.mask, b.mask)
        diff = np.abs(a.image.astype(np.float32) - b.image.astype(np.float32))
        assert diff.mean() > 1.0
        if "color_shift_prob" not in degradation:  # blur and resize smooth the image
            assert _mean_gradient(b.image) < _mean_gradient(a.image)


def test_heldout_bank_draws_only_photos_training_never_sees():
    from wmseg.synth.backgrounds import bundled_photos, heldout_photos

    held = BackgroundBank("heldout", procedural_fraction=0.0)
    assert len(held) == len(heldout_photos()) == 3
    sources = {img.tobytes() for img in heldout_photos().values()}
    assert sources.isdisjoint(img.tobytes() for img in bundled_photos())
    # Every photo the bank loads is one of the held-out photos, as they are.
    rng = np.random.default_rng(0)
    loaded = [held._load(rng) for _ in range(12)]
    assert all(img.tobytes() in sources for img in loaded)
    a = held.sample(np.random.default_rng(3), 48)
    assert a.shape == (48, 48, 3) and np.array_equal(a, held.sample(np.random.default_rng(3), 48))


@pytest.mark.parametrize(("source", "count"), [("sklearn", 2), ("mvtb", 42)])
def test_photo_sources_add_photos_after_the_skimage_ones_and_bad_names_fail(source: str, count: int):
    from wmseg.synth.backgrounds import bundled_photos, heldout_photos

    base, more = bundled_photos(), bundled_photos(("skimage", source))
    assert len(more) == len(base) + count
    # The skimage photos keep their order (older samples stay the same); the new ones are
    # distinct real photos of at least 200 px, none of them a held-out photo.
    assert all(np.array_equal(a, b) for a, b in zip(base, more[: len(base)], strict=True))
    new = more[len(base) :]
    assert all(img.ndim == 3 and img.shape[2] == 3 and img.std() > 20 for img in new)
    assert all(min(img.shape[:2]) >= 200 and max(img.shape[:2]) <= 512 for img in new)
    assert len({img.tobytes() for img in new}) == count
    held = {img.tobytes() for img in heldout_photos().values()}
    assert held.isdisjoint(img.tobytes() for img in more)
    bank = BackgroundBank(procedural_fraction=0.0, photo_sources=["skimage", source])
    assert len(bank) == len(more)
    rng = np.random.default_rng(0)
    loaded = {bank._load(rng).tobytes() for _ in range(40 * len(more))}
    assert {img.tobytes() for img in new} <= loaded
    with pytest.raises(ValueError, match=r"data\.photo_sources"):
        BackgroundBank(photo_sources=["coco"])
    with pytest.raises(ValueError, match=r"data\.photo_sources"):
        BackgroundBank(photo_sources=[])


def test_photo_max_side_bounds_the_bundled_photos_and_null_keeps_them_as_shipped():
    from wmseg.data.cache import cache_key
    from wmseg.synth.backgrounds import bundled_photos, mvtb_photos

    sources = ("skimage", "mvtb")
    small, large, shipped = (bundled_photos(sources, side) for side in (512, 1280, None))
    assert len(small) == len(large) == len(shipped) == 58
    assert max(max(img.shape[:2]) for img in small) == 512
    assert max(max(img.shape[:2]) for img in large) == 1280
    # The mvtb camera photos are 1280 px wide: 1280 keeps them at their own resolution,
    # and null keeps even the 3264 px ones.
    campus = mvtb_photos(("campus/P1070491.png",))[0]
    assert np.array_equal(large[16], campus) and np.array_equal(shipped[16], campus)
    assert max(max(img.shape[:2]) for img in shipped) == 3264
    # The aspect ratio survives the shrink (within a pixel).
    for a, b in zip(small[16:], shipped[16:], strict=True):
        assert abs(a.shape[0] / a.shape[1] - b.shape[0] / b.shape[1]) < 2 / min(a.shape[:2])
    bank = BackgroundBank(procedural_fraction=0.0, photo_sources=list(sources), photo_max_side=1280)
    assert max(max(bank._load(np.random.default_rng(i)).shape[:2]) for i in range(200)) == 1280

    def key(**options) -> str:
        return cache_key(WatermarkSynth(SynthConfig(size=32), BackgroundBank(**options)), 0, 4)[0]

    assert key() == key(photo_max_side=512) != key(photo_max_side=1280)
    with pytest.raises(ValueError, match=r"data\.photo_max_side"):
        BackgroundBank(photo_max_side=16)


class _FlatGrey(BackgroundBank):
    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full((size, size, 3), 128, np.uint8)


def _is_footprint(mask: np.ndarray, diff: np.ndarray, threshold: float) -> bool:
    """`mask` is `diff >= threshold` wherever uint8 rounding (<= 0.5) cannot flip it."""
    decided = np.abs(diff - threshold) > 0.5
    return bool(np.array_equal(mask.astype(bool)[decided], (diff >= threshold)[decided]))


def _one_mark(**style) -> SynthConfig:
    return SynthConfig(
        size=96,
        clean_fraction=0.0,
        tiled_fraction=0.0,
        max_marks=1,
        noise_std=(0, 0),
        jpeg_prob=0.0,
        opacity=(1.0, 1.0),
        outline_prob=0.0,
        shadow_prob=0.0,
        **style,
    )


def test_footprint_channels_max_and_mean(monkeypatch):
    from wmseg.synth import layers

    # A red mark 30 levels above mid-grey in one channel only: its largest channel moves by
    # 30, its mean by 10. At threshold 12 "max" labels the glyph and "mean" labels nothing.
    monkeypatch.setattr(layers, "rand_color", lambda rng: np.array([158.0, 128.0, 128.0], np.float32))
    cfg = _one_mark(visibility_threshold=12.0)
    by_max = WatermarkSynth(cfg, _FlatGrey())
    by_mean = WatermarkSynth(dataclasses.replace(cfg, footprint_channels="mean"), _FlatGrey())
    for i in range(3):
        a, b = by_max.render(0, i), by_mean.render(0, i)
        assert np.array_equal(a.image, b.image)  # the label changes, never the image
        assert a.mask.sum() > 0 and _is_footprint(a.mask, a.image[..., 0].astype(np.int16) - 128, 12.0)
        assert b.mask.sum() == 0
    # A grey mark moves every channel alike: both definitions give the same mask.
    monkeypatch.setattr(layers, "rand_color", lambda rng: np.full(3, 158.0, np.float32))
    for i in range(3):
        a, b = by_max.render(0, i), by_mean.render(0, i)
        assert a.mask.sum() > 0 and np.array_equal(a.mask, b.mask)
    with pytest.raises(ValueError, match=r"data\.synth\.footprint_channels='median'"):
        WatermarkSynth(SynthConfig(footprint_channels="median"))


def test_embossed_marks_light_one_side_and_shade_the_other():
    synth = WatermarkSynth(_one_mark(emboss_prob=1.0, visibility_threshold=6.0), _FlatGrey())
    plain = WatermarkSynth(_one_mark(visibility_threshold=6.0), _FlatGrey())
    for i in range(4):
        s = synth.render(2, i)
        grey = s.image.astype(np.int16)[..., 0]
        # White light and black shade on a grey page: both far from 128, and grey stays grey.
        assert (grey >= 128 + 40).sum() > 10 and (grey <= 128 - 40).sum() > 10
        assert np.array_equal(s.image[..., 0], s.image[..., 2])
        assert s.mask.sum() > 0 and _is_footprint(s.mask, np.abs(grey - 128), 6.0)
        # It is a different look from the same mark drawn flat, in the same place.
        p = plain.render(2, i)
        assert not np.array_equal(s.image, p.image)
    # 0 draws nothing extra: the default config renders as before the option existed.
    assert np.array_equal(
        WatermarkSynth(_one_mark(emboss_prob=0.0)).render(1, 1).image,
        WatermarkSynth(_one_mark()).render(1, 1).image,
    )
    with pytest.raises(ValueError, match=r"data\.synth\.emboss_prob"):
        WatermarkSynth(SynthConfig(emboss_prob=1.5))


def test_scene_text_is_part_of_the_clean_image_never_of_the_mask():
    base = {"size": 96, "noise_std": (0, 0), "jpeg_prob": 0.0}
    signs = WatermarkSynth(SynthConfig(**base, clean_fraction=1.0, scene_text_prob=1.0), _FlatGrey())
    for i in range(6):
        s = signs.render(4, i)
        assert s.mask.sum() == 0  # a clean image with a sign stays clean
        changed = np.abs(s.image.astype(np.int16) - 128).max(axis=2) > 20
        # A panel covers part of the crop (not all of it) and carries text of another colour.
        assert 0.01 < changed.mean() < 0.95
        assert s.image[changed].std(axis=0).max() > 20
    # Marks drawn over a photo with a sign are still labelled.
    marked = WatermarkSynth(SynthConfig(**base, clean_fraction=0.0, scene_text_prob=1.0), _FlatGrey())
    assert all(marked.render(4, i).mask.sum() > 0 for i in range(3))
    # 0 (the default) draws no sign: a clean image is its background, untouched.
    plain = WatermarkSynth(SynthConfig(**base, clean_fraction=1.0), _FlatGrey())
    assert all((plain.render(4, i).image == 128).all() for i in range(6))
    with pytest.raises(ValueError, match=r"data\.synth\.scene_text_prob"):
        WatermarkSynth(SynthConfig(scene_text_prob=-0.1))


def test_open_fonts_and_icon_fonts_widen_the_artwork():
    from wmseg.synth.fonts import covered, latin_fonts
    from wmseg.synth.logos import icon_glyph, icon_glyphs

    default, wide = latin_fonts(), latin_fonts(("matplotlib", "open_fonts"))
    assert wide[: len(default)] == default and len(wide) > 5 * len(default)
    # Every face can draw every character a phrase uses: no missing-glyph boxes.
    chars = {ord(c) for c in "Photo © 2024 www.abc_de@x.io"}
    assert all(chars <= covered(path) for path in wide)
    assert len(icon_glyphs(("dejavu", "qtawesome"))) > 10 * len(icon_glyphs())
    rng = np.random.default_rng(0)
    tiles = [icon_glyph(rng, 30, ("qtawesome",)) for _ in range(20)]
    assert all(np.asarray(t).max() == 255 for t in tiles)  # no blank glyphs
    assert len({t.tobytes() for t in tiles}) > 15
    # Marks in the new artwork are labelled where they show, on a background they cover.
    cfg = SynthConfig(
        size=96,
        clean_fraction=0.0,
        logo_prob=0.5,
        font_sources=("open_fonts",),
        icon_sources=("qtawesome",),
        opacity=(1.0, 1.0),
        noise_std=(0, 0),
        jpeg_prob=0.0,
    )
    synth = WatermarkSynth(cfg, _FlatGrey())
    for i in range(6):
        s = synth.render(5, i)
        drawn = np.abs(s.image.astype(np.int16) - 128).max(axis=2) > 10
        assert drawn.any() and s.mask[drawn].mean() > 0.95
    # The faces differ: the same samples drawn in matplotlib's faces are other pixels.
    old_art = dataclasses.replace(cfg, font_sources=("matplotlib",), icon_sources=("dejavu",))
    old = WatermarkSynth(old_art, _FlatGrey())
    assert any((old.render(5, i).image != synth.render(5, i).image).any() for i in range(3))
    for key in ("font_sources", "icon_sources"):
        with pytest.raises(ValueError, match=rf"data\.synth\.{key}"):
            WatermarkSynth(SynthConfig(**{key: ("comic",)}))


def test_log_opacity_draws_as_many_faint_marks_as_strong_ones():
    from wmseg.synth.config import draw_opacity

    rng = np.random.default_rng(0)
    linear = np.array([draw_opacity(rng, SynthConfig(opacity=(0.15, 1.0))) for _ in range(4000)])
    log_cfg = SynthConfig(opacity=(0.15, 1.0), opacity_scale="log")
    log = np.array([draw_opacity(rng, log_cfg) for _ in range(4000)])
    assert linear.min() >= 0.15 and log.min() >= 0.15 and max(linear.max(), log.max()) <= 1.0
    # Uniform: the median is the midpoint; log-uniform: the geometric mean of the ends.
    assert abs(np.median(linear) - 0.575) < 0.02
    assert abs(np.median(log) - np.sqrt(0.15)) < 0.02
    with pytest.raises(ValueError, match=r"data\.synth\.opacity_scale='cubic'"):
        WatermarkSynth(SynthConfig(opacity_scale="cubic"))
    with pytest.raises(ValueError, match=r"data\.synth\.opacity must be"):
        WatermarkSynth(SynthConfig(opacity=(0.0, 1.0), opacity_scale="log"))


def test_fills_give_a_mark_more_than_one_colour_and_it_stays_labelled_where_visible():
    size = 96
    synth = WatermarkSynth(_one_mark(fill_prob=1.0), BackgroundBank(procedural_fraction=1.0))
    rng = np.random.default_rng(0)
    white = np.full(3, 240.0, np.float32)
    fields = [synth.marks._fill(rng, white, period=40.0) for _ in range(24)]
    assert all(f.shape == (size, size, 3) and f.min() >= 0 and f.max() <= 255 for f in fields)
    # A gradient reaches its second colour within one period, a background crop has its
    # texture: most fields span far more than one colour (white to white can stay close).
    assert sum(float(np.ptp(f)) > 30 for f in fields) >= 18
    # Flat marks on a grey page lie between grey and their one colour; filled ones differ
    # from them, and every mark is labelled exactly where it shows.
    flat = WatermarkSynth(_one_mark(visibility_threshold=6.0), _FlatGrey())
    filled = WatermarkSynth(_one_mark(fill_prob=1.0, visibility_threshold=6.0), _FlatGrey())
    changed = 0
    for i in range(12):
        a, b = flat.render(0, i), filled.render(0, i)
        for s in (a, b):
            assert _is_footprint(s.mask, np.abs(s.image.astype(np.int16) - 128).max(axis=2), 6.0)
        px = a.image[a.mask.astype(bool)].astype(np.float64) - 128
        sv = np.linalg.svd(px, compute_uv=False)
        assert sv[1] < 0.05 * sv[0]
        changed += not np.array_equal(a.image, b.image)
    assert changed >= 10
    with pytest.raises(ValueError, match=r"data\.synth\.fill_prob"):
        WatermarkSynth(SynthConfig(fill_prob=2.0))


def _plates(**changes) -> WatermarkSynth:
    """Plates alone (no text on them), one a sample, undegraded, on procedural textures."""
    base = {"tiled_fraction": 0.0, "plate_prob": 1.0, "plate_alone_prob": 1.0}
    cfg = SynthConfig(
        size=96, clean_fraction=0.0, max_marks=1, noise_std=(0, 0), jpeg_prob=0.0, **(base | changes)
    )
    return WatermarkSynth(cfg, BackgroundBank(procedural_fraction=1.0))


def test_an_opaque_plate_is_a_filled_region_of_the_mask():
    synth = _plates(plate_opacity=(1.0, 1.0))
    for i in range(6):
        mask = synth.render(3, i).mask.astype(bool)
        # A region, not strokes: most of its pixels are inside it (all 4 neighbours marked).
        inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        assert mask.sum() > 0.02 * mask.size and inner.sum() > 0.7 * mask[1:-1, 1:-1].sum(), i


def test_a_faint_plate_changes_the_image_but_stays_out_of_the_mask():
    synth, bank = _plates(plate_opacity=(0.015, 0.015)), BackgroundBank(procedural_fraction=1.0)
    for i in range(4):
        s = synth.render(3, i)
        clean = bank.sample(np.random.default_rng([3, i]), 96)
        assert s.mask.sum() == 0 and not np.array_equal(s.image, clean)


def test_a_plate_that_changes_nothing_has_an_empty_mask(monkeypatch):
    from wmseg.synth import layers

    # White plates multiplied over the photo: every pixel stays as it was.
    monkeypatch.setattr(layers, "rand_color", lambda rng: np.full(3, 255.0, np.float32))
    synth = _plates(plate_opacity=(1.0, 1.0), plate_fill_prob=0.0, blend_probs=(0, 1, 0, 0))
    assert all(synth.render(0, i).mask.sum() == 0 for i in range(4))
    # In normal mode the same plates are the mask.
    synth = _plates(plate_opacity=(1.0, 1.0), plate_fill_prob=0.0)
    assert all(synth.render(0, i).mask.sum() > 0 for i in range(4))


def test_plates_keep_samples_a_pure_function_and_banners_cross_the_image():
    synth = _plates(plate_alone_prob=0.0, tiled_fraction=0.5)
    assert all(np.array_equal(synth.render(1, i).image, synth.render(1, i).image) for i in range(3))
    banners = [
        s.mask
        for s in (_plates(plate_opacity=(1.0, 1.0)).render(7, i) for i in range(40))
        if s.mask[:, 0].any() and s.mask[:, -1].any()
    ]
    assert banners  # some plates span the image from edge to edge
