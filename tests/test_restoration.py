"""Restoration: the un-blending formula, its loss, the synthetic pairs, the head, the
two-output export and removal with remover=restore."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import TINY, compose_config
from wmseg.models.losses import RestorationLoss
from wmseg.models.restoration import MAX_OPACITY, blend_mark, unblend
from wmseg.synth.render import SynthConfig, WatermarkSynth


def test_a_mark_of_known_colour_and_opacity_is_undone_by_the_formula():
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(2, 3, 16, 16, generator=g)
    colour = torch.rand(2, 3, 16, 16, generator=g)
    opacity = torch.full((2, 1, 16, 16), 0.6)
    marked = blend_mark(photo, colour, opacity)
    assert (marked - photo).abs().max() > 0.1  # the mark changes the photo
    assert torch.allclose(unblend(marked, colour, opacity), photo, atol=1e-5)
    # Through 8-bit images, as in a real file: within the quantisation, amplified by 1/(1-a).
    quantised = (marked * 255).round() / 255
    assert (unblend(quantised, colour, opacity) - photo).abs().max() <= 0.5 / 255 / 0.4 + 1e-6
    # An opacity above the cap is clamped to it: a bounded result, never a division by ~0.
    out = unblend(marked, colour, torch.ones_like(opacity))
    assert out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out, unblend(marked, colour, torch.full_like(opacity, MAX_OPACITY)))


def test_restoration_loss_is_zero_at_the_clean_photo_and_counts_only_the_mark():
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(2, 3, 12, 12, generator=g)
    mask = torch.zeros(2, 1, 12, 12)
    mask[:, :, 3:9, 3:9] = 1
    loss = RestorationLoss(l1_weight=1.0, gradient_weight=0.5)
    assert loss(clean, clean, mask).item() == 0.0
    wrong_outside = clean.clone()
    wrong_outside[:, :, :2] = 0.0  # rows outside the mask
    assert loss(wrong_outside, clean, mask).item() == 0.0
    wrong_inside = clean.clone()
    wrong_inside[:, :, 5, 5] += 0.3
    assert loss(wrong_inside, clean, mask).item() > 0
    assert loss(wrong_inside, clean, torch.zeros_like(mask)).item() == 0.0  # unmarked images
    with pytest.raises(ValueError, match="l1_weight"):
        RestorationLoss(l1_weight=0.0, gradient_weight=0.0)


def test_the_composite_term_pulls_a_head_predicting_no_mark_towards_the_mark():
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(1, 3, 8, 8, generator=g) * 0.5
    mask = torch.ones(1, 1, 8, 8)
    colour, true_opacity = torch.ones(1, 3, 8, 8), torch.full((1, 1, 8, 8), 0.6)
    image = blend_mark(clean, colour, true_opacity)
    loss = RestorationLoss(l1_weight=1.0, composite_weight=1.0)
    # The true mark: the re-blended clean photo is the input, and the un-blend the photo.
    assert loss(unblend(image, colour, true_opacity), clean, mask, true_opacity).item() < 1e-5
    # The term is the L1 of the clean photo re-blended with the predicted mark against the input.
    a = torch.full((1, 1, 8, 8), 0.3)
    composite = RestorationLoss(l1_weight=0.0, composite_weight=1.0)
    expected = (blend_mark(clean, colour, a) - image).abs().mean()
    assert composite(unblend(image, colour, a, clamp=False), clean, mask, a).item() == pytest.approx(
        expected.item(), rel=1e-5
    )
    # A head predicting no mark: the composite term's gradient raises the opacity.
    opacity = torch.zeros(1, 1, 8, 8, requires_grad=True)
    loss(unblend(image, colour, opacity, clamp=False), clean, mask, opacity).backward()
    assert (opacity.grad < 0).all()  # descending the loss raises the opacity
    with pytest.raises(ValueError, match="opacity"):
        loss(clean, clean, mask)


def test_the_clean_photo_is_the_sample_without_its_marks():
    # The degradations replay on the clean photo (the same noise), so outside the mask the
    # image is the clean photo to within the visibility threshold that defines the mask
    # (JPEG off: its blocks would carry the mark's edges out); inside it they differ.
    cfg = SynthConfig(size=96, jpeg_prob=0.0, clean_fraction=0.0)
    synth = WatermarkSynth(cfg)
    for index in range(4):
        sample, clean = synth.render_with_clean(3, index)
        plain = synth.render(3, index)
        assert np.array_equal(sample.image, plain.image) and np.array_equal(sample.mask, plain.mask)
        assert clean.shape == sample.image.shape and clean.dtype == np.uint8
        diff = np.abs(sample.image.astype(int) - clean.astype(int)).max(axis=2)
        outside = sample.mask == 0
        assert np.percentile(diff[outside], 99) < cfg.visibility_threshold + 2
        if sample.mask.any():
            assert diff[sample.mask == 1].mean() > cfg.visibility_threshold


def test_datasets_carry_the_clean_photo_through_the_augmentation(make_cfg):
    import hydra

    cfg = make_cfg("data.restoration_targets=true")
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    item = dm.train_dataloader().dataset[0]
    assert item["clean"].shape == item["image"].shape and item["clean"].dtype == torch.float32
    outside = item["mask"][0] == 0
    # The flips and crops moved the clean photo with the image: they agree off the mark.
    assert (item["image"] - item["clean"]).abs().amax(0)[outside].median() < 0.05
    with pytest.raises(ValueError, match="cache=none"):
        from wmseg.data.dataset import MemorySamples, SyntheticWatermarks

        synth = WatermarkSynth(SynthConfig(size=32))
        SyntheticWatermarks(synth, 2, 0, MemorySamples(synth, 0, 2), with_clean=True)


def test_the_head_adds_outputs_without_changing_the_mask_path():
    from wmseg.models.unet import WatermarkUnet

    torch.manual_seed(0)
    net = WatermarkUnet(encoder_weights=None, restore=True).eval()
    plain = WatermarkUnet(encoder_weights=None).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("restore_head.")})
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        logits, colour, opacity = net.forward_restore(x)
        assert torch.allclose(logits, net(x)) and torch.allclose(net(x), plain(x))
    assert colour.shape == (1, 3, 64, 64) and opacity.shape == (1, 1, 64, 64)
    assert opacity.min() >= 0 and opacity.max() <= MAX_OPACITY
    with pytest.raises(ValueError, match="restore=true"):
        plain.forward_restore(x)


def test_restore_keeps_pixels_outside_the_region_and_inpaints_the_opaque_part():
    from wmseg.predict.inpaint import OpenCVInpainter
    from wmseg.predict.remover import restore

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    region = np.zeros((32, 40), bool)
    region[8:20, 10:30] = True
    maps = np.zeros((5, 32, 40), np.float32)
    maps[1:4] = 0.25  # the restored photo: 64 everywhere
    maps[4] = 0.3
    maps[4, 8:12, 10:14] = 0.99  # an opaque corner of the mark
    out = restore(image, region, maps, opaque=0.9, inpainter=OpenCVInpainter())
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out[~region], image[~region])  # bit for bit outside
    see_through = region.copy()
    see_through[8:12, 10:14] = False
    assert (out[see_through] == 64).all()  # the restored photo where the mark was translucent
    # The opaque corner is inpainted from its surroundings (the restored 64s and the input).
    assert not np.array_equal(out[8:12, 10:14], image[8:12, 10:14])
    assert np.array_equal(restore(image, np.zeros_like(region), maps, 0.9, OpenCVInpainter()), image)


def test_render_targets_are_the_opacity_and_colour_that_make_the_composite():
    # Normal blend, no degradation: the image is (1 - a) clean + a c, to rounding, and a
    # is 0 wherever no mark is; multiply, screen and overlay pixels are left unknown.
    cfg = SynthConfig(
        size=64,
        clean_fraction=0.0,
        jpeg_prob=0.0,
        noise_std=(0.0, 0.0),
        logo_prob=0.3,
        plate_prob=0.3,
        outline_prob=0.5,
        shadow_prob=0.5,
        fill_prob=0.3,
        tiled_fraction=0.3,
    )
    synth = WatermarkSynth(cfg)
    for index in range(8):
        sample, clean, (opacity, colour, known) = synth.render_targets(4, index)
        plain, plain_clean = synth.render_with_clean(4, index)
        assert np.array_equal(sample.image, plain.image) and np.array_equal(clean, plain_clean)
        assert known.all()  # normal blend only
        assert opacity.min() >= 0 and opacity.max() <= 1 and colour.shape == (64, 64, 3)
        rebuilt = (1 - opacity[..., None]) * clean + opacity[..., None] * colour
        assert np.abs(rebuilt - sample.image).max() <= 1.0  # the composite, to rounding
        # No mark (a = 0): the photo as it was; the mask lies where a mark shows.
        assert np.abs(sample.image.astype(float) - clean)[opacity == 0].max(initial=0) <= 1
        assert opacity[sample.mask == 1].min() > 0
        # The un-blend of the targets gives the photo back where the mark lets any through.
        see = (opacity > 0.05) & (opacity < 0.9)
        photo = (sample.image - opacity[..., None] * colour) / (1 - opacity[..., None])
        assert np.abs(photo - clean)[see].max() <= 1.0 / (1 - 0.9)
    _, _, (opacity, _, known) = WatermarkSynth(SynthConfig(size=64, clean_fraction=1.0)).render_targets(0, 1)
    assert not opacity.any() and known.all()  # an unmarked image: opacity 0 everywhere
    modes = WatermarkSynth(SynthConfig(size=64, clean_fraction=0.0, blend_probs=(0.0, 0.5, 0.5, 0.0)))
    sample, _, (opacity, _, known) = modes.render_targets(0, 1)
    assert not known[sample.mask == 1].any() and not opacity[sample.mask == 1].any()


def test_direct_terms_teach_a_head_that_predicts_no_mark():
    loss = RestorationLoss(l1_weight=1.0, opacity_weight=1.0, colour_weight=1.0)
    a = torch.zeros(1, 1, 8, 8)
    a[..., 2:6, 2:6] = 0.5
    c = torch.full((1, 3, 8, 8), 0.9)
    known = torch.ones(1, 1, 8, 8)
    assert loss.target_terms(a, c, a, c, known) == 0
    guess = torch.zeros(1, 1, 8, 8, requires_grad=True)  # the collapsed head: no mark
    term = loss.target_terms(guess, c, a, c, known)
    term.backward()
    assert term > 0 and guess.grad[..., 2:6, 2:6].abs().min() > 0  # pulled towards the mark
    # Unknown pixels and unmarked colour count for nothing.
    assert loss.target_terms(guess.detach(), torch.zeros_like(c), a, c, torch.zeros_like(known)) == 0
    assert loss.target_terms(a, torch.zeros_like(c), a, c * (a > 0), known) > 0


def test_remover_auto_restores_with_a_head_and_hands_over_smoothly():
    from wmseg.predict.inpaint import OpenCVInpainter
    from wmseg.predict.remover import HANDOVER, restore

    image = np.full((24, 24, 3), 200, np.uint8)
    region = np.zeros((24, 24), bool)
    region[4:20, 4:20] = True
    maps = np.zeros((5, 24, 24), np.float32)
    maps[1:4] = 0.5  # restored: 128 (rounded)
    maps[4] = np.linspace(0.5, 1.0, 24)[None, :]  # opacity rising left to right
    out = restore(image, region, maps, opaque=0.9, inpainter=OpenCVInpainter())
    assert np.array_equal(out[~region], image[~region])
    low = region & (maps[4] < 0.9 - HANDOVER)
    assert (out[low] == 128).all()
    # Across the band each pixel lies between the restored and the inpainted value.
    band = region & (maps[4] > 0.9 - HANDOVER) & (maps[4] < 0.9)
    assert band.any() and (out[band] >= 127).all() and (out[band] <= 201).all()


@pytest.fixture(scope="module")
def restore_run(trained_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A mask-only checkpoint given a restoration head (experiment=restore_finetune), a few
    steps, then `python export.py` with INT8: the best checkpoint and the export report."""
    from wmseg.tasks.export import export
    from wmseg.tasks.train import train

    run = tmp_path_factory.mktemp("restore")
    overrides = [
        *TINY,
        "experiment=restore_finetune",
        f"ckpt_from={trained_ckpt}",
        "debug=limit",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
        "data.collage_fraction=0",
        "data.photo_sources=[skimage]",
    ]
    metrics = train(compose_config(run, overrides))
    GlobalHydra.instance().clear()
    ckpt = Path(metrics["best_model_path"])
    assert "val/restoration_loss" in metrics
    out = tmp_path_factory.mktemp("restore_export")
    cfg = compose_config(
        out,
        [f"ckpt={ckpt}", "sample_size=64", "parity.val_samples=4", "int8.calibration_batches=2"],
        config_name="export",
    )
    report = export(cfg)
    GlobalHydra.instance().clear()
    return ckpt, report


def test_a_restoration_model_exports_three_outputs_with_parity(restore_run):
    from wmseg.inference.predictor import OnnxPredictor, TorchPredictor

    ckpt, report = restore_run
    assert report["parity_max_abs_logit_diff"]["model.onnx"] < 1e-3
    assert report["parity_max_abs_restored_diff"]["model.onnx"] < 1e-3
    assert report["parity_max_abs_opacity_diff"]["model.onnx"] < 1e-3
    # INT8 carries the outputs too, within what quantisation costs on values in [0, 1].
    assert report["parity_max_abs_restored_diff"]["model.int8.onnx"] < 0.25
    onnx_path = Path(report["files"]["model.onnx"]["path"])
    onnx, torch_model = OnnxPredictor(onnx_path), TorchPredictor(ckpt)
    assert onnx.restores and torch_model.restores
    assert onnx.metadata["outputs"] == "logits,restored,opacity"
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    got, ref = onnx.restore(x), torch_model.restore(x)
    assert got.shape == ref.shape == (2, 5, 64, 64)
    assert np.abs(got - ref).max() < 1e-3
    assert np.allclose(onnx.logits(x), got[:, :1], atol=1e-5)  # readers of `logits` alone


def test_remover_restore_runs_a_folder_and_a_mask_only_model_is_refused(restore_run, exported, tmp_path):
    from PIL import Image

    from wmseg.errors import UserError
    from wmseg.predict import Remover
    from wmseg.predict.inpaint import dilate

    _, report = restore_run
    src = tmp_path / "in"
    src.mkdir()
    synth = WatermarkSynth(SynthConfig(size=64))
    for i in range(3):
        Image.fromarray(synth.render(5, i).image).save(src / f"{i}.png")
    remover = Remover(Path(report["files"]["model.onnx"]["path"]), remover="restore", threshold=0.3)
    summary = remover.run(src, tmp_path / "out", remove=True, overlay=False)
    assert summary["processed"] == 3 and not summary["failed"]
    for i in range(3):
        image = np.asarray(Image.open(src / f"{i}.png"))
        cleaned = np.asarray(Image.open(tmp_path / "out" / f"{i}.png"))
        mask = np.asarray(Image.open(tmp_path / "out" / f"{i}.mask.png")) > 0
        outside = ~dilate(mask, remover.margin)
        assert np.array_equal(cleaned[outside], image[outside])
    folder, _ = exported  # a mask-only model
    with pytest.raises(UserError, match="remover=inpaint"):
        Remover(folder / "model.onnx", remover="restore")


def test_checkpoints_from_before_the_direct_terms_load_evaluate_and_predict(
    restore_run, trained_ckpt, tmp_path
):
    # A restoration checkpoint whose stored loss has no opacity_weight or colour_weight (as
    # trained before those terms), and a mask-only one: both load, evaluate on their
    # synthetic split, and remover=auto restores with the first and inpaints with the second.
    from wmseg.predict import Remover
    from wmseg.tasks.evaluate import evaluate

    ckpt, _ = restore_run
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    loss = state["wmseg"]["config"]["model"]["restoration_loss"]
    loss.pop("opacity_weight"), loss.pop("colour_weight")
    old = tmp_path / "old_head.ckpt"
    torch.save(state, old)
    image = WatermarkSynth(SynthConfig(size=64)).render(3, 0).image
    for path, restores_ in ((old, True), (trained_ckpt, False)):
        remover = Remover(path, remover="auto")
        assert remover.restore is restores_
        cleaned, mask = remover.clean(image)
        assert cleaned.shape == image.shape and mask.shape == image.shape[:2]
        cfg = compose_config(
            tmp_path / f"eval_{path.stem}",
            [f"ckpt={path}", "split=val", "overlays=0"],
            config_name="evaluate",
        )
        try:
            report = evaluate(cfg)
        finally:
            GlobalHydra.instance().clear()
        assert 0.0 <= report["sets"]["synthetic_val"]["mean_iou"] <= 1.0


def test_the_balanced_opacity_term_weighs_a_small_mark_as_much_as_the_rest():
    true = torch.zeros(1, 1, 20, 20)
    true[..., :2, :2] = 0.5  # 1 % of the pixels
    known, colour = torch.ones_like(true), torch.full((1, 3, 20, 20), 0.5)
    zero = torch.zeros_like(true)  # a head that predicts no mark
    even = RestorationLoss(opacity_weight=1.0).target_terms(zero, colour, true, colour, known)
    balanced = RestorationLoss(opacity_weight=1.0, opacity_balance=True).target_terms(
        zero, colour, true, colour, known
    )
    assert float(even) == pytest.approx(0.5 * 0.01) and float(balanced) == pytest.approx(0.25)


def test_the_layer_is_read_back_from_the_degraded_pair():
    from wmseg.data.dataset import MAX_TARGET_OPACITY, layer_of_pair

    rng = np.random.default_rng(0)
    clean = rng.uniform(20, 200, (16, 16, 3)).astype(np.float32)  # no clipping by the shift
    opacity = np.zeros((16, 16), np.float32)
    opacity[4:12, 4:12] = 0.4
    opacity[6:8, 6:8] = 1.0
    colour = np.zeros((16, 16, 3), np.float32)
    colour[opacity > 0] = (240.0, 30.0, 90.0)
    gain, offset = np.array([0.8, 1.1, 0.9]), np.array([10.0, -5.0, 3.0])  # a colour shift after compositing
    image = np.clip(((1 - opacity[..., None]) * clean + opacity[..., None] * colour) * gain + offset, 0, 255)
    shifted_clean = np.clip(clean * gain + offset, 0, 255)
    a, c = layer_of_pair(
        np.rint(image).astype(np.uint8), np.rint(shifted_clean).astype(np.uint8), opacity, colour
    )
    assert a.max() == MAX_TARGET_OPACITY and not a[opacity == 0].any()
    rebuilt = (1 - opacity[..., None]) * np.rint(shifted_clean) + opacity[..., None] * c
    assert np.abs(rebuilt - np.rint(image))[opacity >= 0.05].max() <= 1.0  # the colour the pair shows
    assert np.allclose(
        c[opacity >= 0.05], np.clip(np.array([240.0, 30.0, 90.0]) * gain + offset, 0, 255), atol=4
    )
