"""The fast path of synthesis: layer bank, NumPy compositor, torch compositor, data module."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from wmseg.data.dataset import ComposedWatermarks
from wmseg.data.gpu_compose import TorchComposer
from wmseg.synth import SynthConfig, WatermarkSynth
from wmseg.synth import layer_bank as lb
from wmseg.synth.compose import Composer, compose, dihedral
from wmseg.synth.layer_bank import BankSpec, LayerBank

# Every kind of mark the bank holds: tiled grids with line grids, logos, plates, banners,
# corner IDs, plain logos, embossed marks, fills, blend modes, all degradations.
CONFIG = dict(
    size=48,
    clean_fraction=0.1,
    tiled_fraction=0.3,
    max_marks=3,
    opacity=(0.2, 1.0),
    logo_prob=0.3,
    plate_prob=0.2,
    banner_prob=0.1,
    id_text_prob=0.1,
    plain_logo_prob=0.1,
    line_grid_prob=0.5,
    emboss_prob=0.1,
    fill_prob=0.2,
    corner_prob=0.1,
    blend_probs=(0.55, 0.15, 0.15, 0.15),
    texture_clean_prob=0.5,
    color_shift_prob=0.3,
    resize_prob=0.3,
    blur_prob=0.3,
    visibility_threshold=6.0,
)


@pytest.fixture
def synth() -> WatermarkSynth:
    return WatermarkSynth(SynthConfig(**CONFIG))


@pytest.fixture
def bank(synth, tmp_path, monkeypatch) -> LayerBank:
    monkeypatch.setattr(lb, "SHARD", 8)  # several shards from a tiny bank
    return LayerBank.build(synth, BankSpec(layers=24, backgrounds=10), tmp_path / "bank", workers=1)


def test_bank_holds_what_it_was_asked_for(bank, synth):
    index = bank.layer_index()
    assert index.shape == (24, len(lb.COLUMNS))
    tiled = index[:, lb.COL["tiled"]].astype(bool)
    assert tiled.any() and (~tiled).any()  # both kinds, interleaved
    for j in range(24):
        tile, row = bank.layer(j)
        assert tile.shape == (int(row[lb.COL["height"]]), int(row[lb.COL["width"]]), 4)
        assert tile[..., 3].max() > 0  # every mark covers something
    assert bank.background(9).shape == (48, 48, 3)
    assert bank.textures().shape == (10,)


def test_bank_is_reused_and_a_corrupt_shard_is_rendered_again(bank, synth, tmp_path, monkeypatch):
    monkeypatch.setattr(lb, "SHARD", 8)
    shard = bank.folder / "layers_0001.npy"
    other = bank.folder / "layers_0000.npy"
    before, mtime = shard.read_bytes(), other.stat().st_mtime_ns
    spec = bank.spec
    again = LayerBank.build(synth, spec, tmp_path / "bank", workers=1)
    assert again.folder == bank.folder and other.stat().st_mtime_ns == mtime  # nothing rendered
    data = bytearray(before)
    data[-5] ^= 0xFF  # a flipped byte in place: same size, wrong content
    shard.write_bytes(bytes(data))
    repaired = LayerBank.build(synth, spec, tmp_path / "bank", workers=1)
    assert shard.read_bytes() == before  # rendered again, the same bytes
    assert other.stat().st_mtime_ns == mtime  # the good shard was left alone
    tile, _ = repaired.layer(10)
    assert tile.shape[-1] == 4
    shard.unlink()  # a missing shard too
    LayerBank.build(synth, spec, tmp_path / "bank", workers=1)
    assert shard.read_bytes() == before


def test_bank_key_follows_the_config(synth, tmp_path):
    a, _ = lb.bank_key(synth, BankSpec(24, 10))
    b, _ = lb.bank_key(WatermarkSynth(SynthConfig(**{**CONFIG, "opacity": (0.5, 1.0)})), BankSpec(24, 10))
    c, _ = lb.bank_key(synth, BankSpec(25, 10))
    assert len({a, b, c}) == 3


def test_composed_samples_are_a_pure_function_of_seed_and_index(bank, synth):
    one, two = Composer(synth.config, bank), pickle.loads(pickle.dumps(Composer(synth.config, bank)))
    for i in range(12):
        a, b = one.render(3, i), two.render(3, i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert a[0].shape == (48, 48, 3) and a[0].dtype == np.uint8 and a[1].shape == (48, 48)
    assert not np.array_equal(one.render(3, 0)[0], one.render(4, 0)[0])
    masks = [one.render(3, i)[1] for i in range(40)]
    assert sum(m.any() for m in masks) >= 25  # most samples are marked (clean_fraction 0.1)


def test_mask_is_the_visible_footprint(bank, synth):
    # No degradation, so the image is the composite itself (rounded).
    config = SynthConfig(**{**CONFIG, "noise_std": (0.0, 0.0), "jpeg_prob": 0.0})
    config = SynthConfig(**{**config.__dict__, "color_shift_prob": 0.0, "resize_prob": 0.0, "blur_prob": 0.0})
    composer = Composer(config, bank)
    checked = 0
    for i in range(30):
        plan = composer.plan(0, i)
        image, mask = compose(plan, bank, config, composer.noise)
        clean = dihedral(bank.background(int(plan.background)), int(plan.dihedral)).astype(np.int16)
        diff = np.abs(image.astype(np.int16) - clean).max(axis=2)
        t = config.visibility_threshold
        # Rounding moves a value by at most half a level, so away from the threshold the
        # mask is exactly where the mark shows.
        assert mask[diff >= t + 1].all() and not mask[diff <= t - 1].any()
        checked += int(mask.any())
    assert checked >= 15


def test_composed_targets_are_the_opacity_and_colour_that_make_the_composite(bank, synth):
    config = SynthConfig(**{**CONFIG, "noise_std": (0.0, 0.0), "jpeg_prob": 0.0})
    config = SynthConfig(**{**config.__dict__, "color_shift_prob": 0.0, "resize_prob": 0.0, "blur_prob": 0.0})
    composer = Composer(config, bank)
    normal = unmarked = 0
    for i in range(30):
        (image, mask), clean, (opacity, colour, known) = composer.render_targets(2, i)
        assert np.array_equal(image, composer.render(2, i)[0]) and np.array_equal(
            mask, composer.render(2, i)[1]
        )
        rebuilt = (1 - opacity[..., None]) * clean + opacity[..., None] * colour
        assert np.abs(rebuilt - image)[known].max(initial=0) <= 1.0  # where known, exactly
        normal += int(known.all() and mask.any())
        if not composer.plan(2, i).valid.any():  # an unmarked sample: opacity 0 everywhere
            assert not opacity.any() and known.all()
            unmarked += 1
    assert normal >= 5 and unmarked >= 1
    # The dataset carries them, augmented together.
    ds = ComposedWatermarks(composer, synth, 6, 0, with_clean=True)
    item = ds[1]
    assert set(item) >= {"image", "mask", "clean", "opacity", "colour", "known"}
    assert item["opacity"].shape == (1, 48, 48) and item["colour"].shape == (3, 48, 48)
    with pytest.raises(ValueError, match="compose_on=cpu"):
        ComposedWatermarks(composer, synth, 6, 0, plans=True, with_clean=True)


def _plans(composer: Composer, n: int) -> dict[str, torch.Tensor]:
    plans = [composer.plan(0, i)._asdict() for i in range(n)]
    return {f"plan_{k}": torch.from_numpy(np.stack([p[k] for p in plans])) for k in plans[0]}


def _parity(device: str, bank: LayerBank, synth: WatermarkSynth) -> None:
    # Noise and JPEG off (their codecs differ); blur, resize and colour shift on.
    config = SynthConfig(**{**CONFIG, "noise_std": (0.0, 0.0), "jpeg_prob": 0.0, "blur_prob": 0.5})
    composer = Composer(config, bank)
    batch = {k: v.to(device) for k, v in _plans(composer, 24).items()}
    out = TorchComposer(config, bank)(batch)
    assert out["image"].shape == (24, 3, 48, 48) and out["mask"].shape == (24, 1, 48, 48)
    images, masks = out["image"].cpu().numpy() * 255, out["mask"].cpu().numpy()[:, 0]
    diffs, agree = [], []
    for i in range(24):
        image, mask = composer.render(0, i)
        diffs.append(np.abs(images[i].transpose(1, 2, 0) - image).mean())
        agree.append((masks[i] == mask).mean())
    # OpenCV samples tiles at 1/32 px in fixed point, torch in float: edges differ a little
    # (measured: 0.015 levels mean, 0.1 at most; masks agree on 99.97 % of pixels).
    assert np.mean(diffs) < 0.1 and max(diffs) < 0.5, diffs
    assert np.mean(agree) > 0.998 and min(agree) > 0.99, agree


def test_torch_compositor_matches_the_numpy_one_on_cpu(bank, synth):
    _parity("cpu", bank, synth)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: the GPU compositor runs where CUDA exists"
)
def test_torch_compositor_matches_the_numpy_one_on_cuda(bank, synth):
    _parity("cuda", bank, synth)


def test_torch_compositor_degrades_with_noise_and_jpeg(bank, synth):
    composer = Composer(SynthConfig(**{**CONFIG, "jpeg_prob": 1.0, "noise_std": (2.0, 3.0)}), bank)
    out = TorchComposer(composer.config, bank)(_plans(composer, 6))
    image = out["image"]
    assert torch.all((image >= 0) & (image <= 1)) and torch.allclose(
        image * 255, torch.round(image * 255), atol=1e-3
    )
    ref = torch.stack([torch.from_numpy(composer.render(0, i)[0]).permute(2, 0, 1) for i in range(6)]).float()
    assert (image * 255 - ref).abs().mean() < 6  # the same photos and marks, other codec rounding


def test_dataset_mixes_live_renders_and_gives_plans_for_the_device(bank, synth):
    composer = Composer(synth.config, bank)
    ds = ComposedWatermarks(composer, synth, length=40, seed=5, live_fraction=0.5)
    live = [i for i in range(40) if ds.is_live(i)]
    assert 8 <= len(live) <= 32
    i = live[0]
    assert np.array_equal(ds.pair(i)[0], synth.render(5, i).image)
    j = next(k for k in range(40) if not ds.is_live(k))
    assert np.array_equal(ds.pair(j)[0], composer.render(5, j)[0])
    plans = ComposedWatermarks(composer, synth, length=40, seed=5, live_fraction=0.5, plans=True)
    item = plans[i]
    assert item["live"] and torch.equal(
        item["live_image"], torch.from_numpy(synth.render(5, i).image).permute(2, 0, 1)
    )
    batch = torch.utils.data.default_collate([plans[k] for k in range(8)])
    out = TorchComposer(synth.config, bank)(batch)
    for k in range(8):
        if plans.is_live(k):  # a live sample comes through as rendered
            assert torch.equal(out["mask"][k, 0], torch.from_numpy(synth.render(5, k).mask).float())


def test_bad_engine_settings_name_their_key(tmp_path):
    from wmseg.data.datamodule import WatermarkDataModule

    with pytest.raises(ValueError, match=r"data\.engine"):
        WatermarkDataModule(engine="fast", bank_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"data\.compose_on=gpu"):
        WatermarkDataModule(compose_on="gpu", bank_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"data\.cache=none"):
        WatermarkDataModule(engine="compose", cache="memory", bank_dir=str(tmp_path))
    with pytest.raises(ValueError, match="live_fraction"):
        ComposedWatermarks(None, None, 4, 0, live_fraction=1.5)  # type: ignore[arg-type]
