import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.classification import BinaryPrecisionRecallCurve
from torchmetrics.functional.classification import binary_jaccard_index

from tests.conftest import compose_config
from wmseg.data.folder import DataError
from wmseg.inference import CheckpointError, FlipAveraged, TorchPredictor, load_model
from wmseg.metrics import MeanImageIoUCurve, SegmentationMeter, f1_best_threshold, image_iou_curve
from wmseg.models.checkpoint import read_checkpoint
from wmseg.tasks.checks import ConfigError
from wmseg.tasks.evaluate import evaluate


def test_meter_values_on_hand_made_masks():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2] = 1  # 8 pixels
    prob = np.zeros((4, 4), np.float32)
    prob[1:3] = 0.9  # 4 right, 4 wrong
    meter = SegmentationMeter(threshold=0.5)
    score = meter.update("s", "a", prob, truth)
    assert score.iou == pytest.approx(4 / 12) and score.f1 == pytest.approx(0.5)
    empty_prob = np.zeros((4, 4), np.float32)
    empty_prob[0, :2] = 0.7  # 2 false positives on an empty mask
    meter.update("s", "b", empty_prob, np.zeros((4, 4), np.uint8))
    out = meter.compute()
    assert out["mean_iou"] == pytest.approx(4 / 12) and out["mean_f1"] == pytest.approx(0.5)
    assert out["empty_fp_rate"] == pytest.approx(2 / 16)
    # Global: tp 4, fp 4 + 2, fn 4.
    assert out["global_iou"] == pytest.approx(4 / 14)
    assert out["precision"] == pytest.approx(4 / 10) and out["recall"] == pytest.approx(0.5)
    assert out["images"] == 2 and out["images_with_watermark"] == 1
    # Best F1 over thresholds: above 0.7 the two false positives drop out (F1 0.5 vs 0.44).
    assert out["best_f1"] == pytest.approx(0.5, abs=1e-6)
    assert 0.7 < out["best_f1_threshold"] <= 0.9
    # Per-image mean IoU of the marked image: 4/12 at thresholds in (0, 0.9], 0 above;
    # at 0 every pixel is marked: 8/16, its best (empty masks take no part).
    assert out["best_mean_iou"] == pytest.approx(0.5) and out["best_mean_iou_threshold"] == 0.0


def test_image_iou_curve_matches_iou_at_each_threshold():
    gen = torch.Generator().manual_seed(0)
    prob = torch.rand(3, 1, 20, 24, generator=gen)
    truth = (torch.rand(3, 1, 20, 24, generator=gen) > 0.6).int()
    truth[2] = 0  # an empty mask: no IoU, not averaged in
    grid = torch.linspace(0.0, 1.0, 21)
    for p, t in zip(prob[:2], truth[:2], strict=True):
        brute = [float(binary_jaccard_index(p, t, threshold=float(x))) for x in grid[:-1]]
        assert image_iou_curve(p, t, grid)[:-1].tolist() == pytest.approx(brute, abs=1e-6)
    meter = MeanImageIoUCurve(thresholds=grid)
    meter.update(prob, truth)
    mean, thresholds = meter.compute()
    assert thresholds.tolist() == pytest.approx(grid.tolist())
    both = (image_iou_curve(prob[0], truth[0], grid) + image_iou_curve(prob[1], truth[1], grid)) / 2
    assert mean.tolist() == pytest.approx(both.tolist()) and int(meter.images) == 2
    # A pixel exactly at a threshold counts as marked there (prob >= t), as in evaluation.
    exact = image_iou_curve(torch.tensor([0.5, 0.2]), torch.tensor([1, 0]), torch.tensor([0.2, 0.5, 0.6]))
    assert exact.tolist() == pytest.approx([0.5, 1.0, 0.0])


def _eval_cfg(tmp_path, *overrides):
    return compose_config(tmp_path / "eval", list(overrides), config_name="evaluate")


def test_f1_best_threshold_skips_thresholds_above_every_probability():
    # An under-confident model (an early weight average): nothing reaches 0.41, where
    # torchmetrics' precision is NaN. Training's calibration once stored such a NaN.
    curve = BinaryPrecisionRecallCurve(thresholds=torch.linspace(0.01, 0.99, 99))
    curve.update(torch.tensor([0.4, 0.3, 0.35, 0.1]), torch.tensor([1, 1, 0, 0]))
    precision, recall, thresholds = curve.compute()
    assert precision.isnan().any()
    threshold, f1 = f1_best_threshold(precision, recall, thresholds)
    # Thresholds 0.11-0.30 mark 0.4, 0.35 and 0.3: precision 2/3, recall 1.
    assert f1 == pytest.approx(0.8) and threshold == pytest.approx(0.11)


@pytest.mark.slow
def test_checkpoint_and_onnx_give_same_numbers(trained_ckpt, exported, pairs_folder, tmp_path):
    loaded = load_model(trained_ckpt)
    onnx_path = exported[0] / "model.onnx"
    data = ["data=folder", f"data.root={pairs_folder}"]
    a = evaluate(_eval_cfg(tmp_path / "a", f"ckpt={trained_ckpt}", *data))
    # The fp32 graph has no int8 kernels: the option must compose and change nothing.
    b = evaluate(_eval_cfg(tmp_path / "b", f"onnx={onnx_path}", "x64_quant_precision=true", *data))
    for key in ("mean_iou", "mean_f1", "global_iou", "precision", "recall"):
        assert a["sets"]["pairs"][key] == pytest.approx(b["sets"]["pairs"][key], abs=1e-3)
    assert a["sets"]["pairs"]["images"] == 4
    out = tmp_path / "a" / "eval"
    report = json.loads((out / "report.json").read_text())
    assert report["threshold"] == loaded.threshold and len(report["per_image"]) == 4
    assert "| pairs |" in (out / "report.md").read_text()
    assert Image.open(out / "pr_curve.png").size[0] > 100
    assert Image.open(out / "overlays_worst_best.png").size[0] > 100
    assert not list(out.glob(".*.tmp"))


def test_split_reads_the_runs_own_synthetic_split(trained_ckpt, tmp_path):
    stored = read_checkpoint(trained_ckpt)["wmseg"]["config"]["data"]
    val = evaluate(_eval_cfg(tmp_path / "val", f"ckpt={trained_ckpt}", "split=val", "data.val_size=3"))
    # From the stored config, whatever data= says.
    assert (
        list(val["sets"]) == ["synthetic_val"]
        and val["sets"]["synthetic_val"]["images"] == stored["val_size"]
    )
    test = evaluate(_eval_cfg(tmp_path / "test", f"ckpt={trained_ckpt}", "split=test"))
    assert test["sets"]["synthetic_test"]["images"] == stored["test_size"]
    # Different seeds: the two splits are different images.
    assert [s["iou"] for s in val["per_image"]] != [s["iou"] for s in test["per_image"]]
    with pytest.raises(ConfigError, match="split=train"):
        evaluate(_eval_cfg(tmp_path / "bad", f"ckpt={trained_ckpt}", "split=train"))
    with pytest.raises(ConfigError, match="give ckpt="):
        evaluate(_eval_cfg(tmp_path / "onnx", "onnx=model.onnx", "split=val"))


def test_split_from_scores_a_model_on_another_runs_split(trained_ckpt, tmp_path):
    # Another run: the same model file, whose stored data config draws another val split.
    other = torch.load(trained_ckpt, map_location="cpu", weights_only=False)
    data = other["wmseg"]["config"]["data"]
    assert data["val_size"] != 5
    data["seed"], data["val_size"] = data["seed"] + 1, 5
    torch.save(other, tmp_path / "other.ckpt")
    own = evaluate(_eval_cfg(tmp_path / "own", f"ckpt={trained_ckpt}", "split=val"))
    ckpt, val = f"ckpt={trained_ckpt}", "split=val"
    same = evaluate(_eval_cfg(tmp_path / "same", ckpt, val, f"split_from={trained_ckpt}"))
    assert same["per_image"] == own["per_image"]
    theirs = evaluate(_eval_cfg(tmp_path / "theirs", ckpt, val, f"split_from={tmp_path / 'other.ckpt'}"))
    assert theirs["sets"]["synthetic_val"]["images"] == 5
    with pytest.raises(ConfigError, match="add split=val or split=test"):
        evaluate(_eval_cfg(tmp_path / "bad", f"ckpt={trained_ckpt}", f"split_from={trained_ckpt}"))


@pytest.mark.slow
def test_synthetic_split_and_threshold_override(trained_ckpt, tmp_path):
    cfg = _eval_cfg(
        tmp_path, f"ckpt={trained_ckpt}", "data.synth.size=64", "data.test_size=8", "threshold=0.3"
    )
    report = evaluate(cfg)
    assert report["threshold"] == 0.3 and report["threshold_source"] == "threshold="
    assert report["sets"]["synthetic_test"]["images"] == 8
    assert 0.0 <= report["sets"]["synthetic_test"]["best_f1_threshold"] <= 1.0


def test_several_folders_one_table(trained_ckpt, pairs_folder, tmp_path):
    second = tmp_path / "second"
    (second / "images").mkdir(parents=True)
    (second / "masks").mkdir()
    for f in ("img0.png", "img2.png"):
        (second / "images" / f).write_bytes((pairs_folder / "images" / f).read_bytes())
        (second / "masks" / f).write_bytes((pairs_folder / "masks" / f).read_bytes())
    cfg = _eval_cfg(tmp_path, f"ckpt={trained_ckpt}", "data=folder", f"data.root=[{pairs_folder},{second}]")
    report = evaluate(cfg)
    assert set(report["sets"]) == {"pairs", "second", "all"}
    assert report["sets"]["all"]["images"] == 6


def test_calibrate_writes_checkpoint_with_best_f1_threshold(trained_ckpt, pairs_folder, tmp_path):
    data = ["data=folder", f"data.root={pairs_folder}"]
    out = tmp_path / "calibrated.ckpt"
    first = evaluate(_eval_cfg(tmp_path / "cal", f"ckpt={trained_ckpt}", *data, f"calibrate={out}"))
    best = first["sets"]["pairs"]
    assert first["calibrated"] == {"path": str(out), "threshold": best["best_f1_threshold"]}
    # The copy describes itself: its threshold is the one measured, with where it came from.
    loaded = load_model(out)
    assert loaded.threshold == pytest.approx(best["best_f1_threshold"])
    note = read_checkpoint(out)["wmseg_threshold_calibration"]
    assert note["previous"] == pytest.approx(load_model(trained_ckpt).threshold)
    assert note["data"]["root"] == str(pairs_folder)
    # Evaluating the copy uses that threshold; the pixel-pooled F1 there is the best F1.
    again = evaluate(_eval_cfg(tmp_path / "again", f"ckpt={out}", *data))
    assert again["threshold"] == pytest.approx(best["best_f1_threshold"])
    p, r = again["sets"]["pairs"]["precision"], again["sets"]["pairs"]["recall"]
    assert 2 * p * r / (p + r) == pytest.approx(best["best_f1"], abs=0.02)
    # calibrate_metric=mean_iou stores the threshold of the best per-image mean IoU.
    by_iou = tmp_path / "by_iou.ckpt"
    cfg = _eval_cfg(
        tmp_path / "iou", f"ckpt={trained_ckpt}", *data, f"calibrate={by_iou}", "calibrate_metric=mean_iou"
    )
    assert evaluate(cfg)["calibrated"]["threshold"] == best["best_mean_iou_threshold"]
    assert read_checkpoint(by_iou)["wmseg_threshold_calibration"]["metric"] == "mean_iou"
    again = evaluate(_eval_cfg(tmp_path / "again_iou", f"ckpt={by_iou}", *data))
    assert again["sets"]["pairs"]["mean_iou"] == pytest.approx(best["best_mean_iou"], abs=1e-6)
    with pytest.raises(ConfigError, match="calibrate_metric=iou"):
        evaluate(
            _eval_cfg(
                tmp_path / "bad", f"ckpt={trained_ckpt}", *data, f"calibrate={by_iou}", "calibrate_metric=iou"
            )
        )
    clean = tmp_path / "clean"
    (clean / "images").mkdir(parents=True)
    (clean / "masks").mkdir()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(clean / "images" / "grey.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(clean / "masks" / "grey.png")
    with pytest.raises(ConfigError, match="no watermark pixels"):
        evaluate(
            _eval_cfg(
                tmp_path / "c",
                f"ckpt={trained_ckpt}",
                "data=folder",
                f"data.root={clean}",
                f"calibrate={out}",
            )
        )
    with pytest.raises(ConfigError, match=r"calibrate=.*needs ckpt="):
        evaluate(_eval_cfg(tmp_path / "onnx", "onnx=model.onnx", *data, f"calibrate={out}"))


def test_bad_files_named_and_skipped(trained_ckpt, pairs_folder, tmp_path):
    (pairs_folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (pairs_folder / "masks" / "broken.png").write_bytes((pairs_folder / "masks" / "img0.png").read_bytes())
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(pairs_folder / "masks" / "img1.png")  # wrong size
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(pairs_folder / "images" / "nomask.png")
    data = ["data=folder", f"data.root={pairs_folder}"]
    with pytest.raises(DataError, match=r"broken\.jpg|img1\.png|nomask\.png"):
        evaluate(_eval_cfg(tmp_path / "strict", f"ckpt={trained_ckpt}", *data))
    report = evaluate(_eval_cfg(tmp_path / "lenient", f"ckpt={trained_ckpt}", *data, "skip_bad=true"))
    bad = {b["file"].split("/")[-1]: b["error"] for b in report["bad_files"]}
    assert set(bad) == {"broken.jpg", "img1.png", "nomask.png"}
    assert "mask is 10x10 but its image is 64x64" in bad["img1.png"]
    assert "no mask" in bad["nomask.png"]
    assert report["sets"]["pairs"]["images"] == 3  # img0, img2, img3


def test_checkpoint_errors(trained_ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(trained_ckpt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"truncated\.ckpt"):
        load_model(truncated)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(CheckpointError, match="not a wmseg checkpoint"):
        load_model(plain)
    # A model config that does not match the weights: named, with the way out.
    cfg = _eval_cfg(tmp_path, f"ckpt={trained_ckpt}", "model=unet_mnv3", "data.test_size=4")
    with pytest.raises(CheckpointError, match="does not match the model config"):
        evaluate(cfg)

    # The one loader's messages name the key the model came from.
    with pytest.raises(ConfigError, match=r"ckpt=.*missing\.ckpt not found"):
        evaluate(_eval_cfg(tmp_path, f"ckpt={tmp_path / 'missing.ckpt'}", "data.test_size=4"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda: no CUDA GPU is available here"):
            evaluate(_eval_cfg(tmp_path, f"ckpt={trained_ckpt}", "device=cuda", "data.test_size=4"))


class PixelwiseNet:
    """A real 1x1-conv network as a predictor: no spatial context, so tiles must stitch
    back to exactly the whole-image output; records every batch shape it is given."""

    stride = 32

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 1, 1)
        self.shapes: list[tuple[int, ...]] = []

    @torch.inference_mode()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        return self.conv(torch.from_numpy(batch)).numpy()


def test_large_image_runs_in_tiles_within_the_pixel_budget():
    from wmseg.inference.batching import predict_items

    image = np.random.default_rng(0).integers(0, 256, (300, 250, 3), dtype=np.uint8)
    net = PixelwiseNet()
    (_, whole), *_ = predict_items(net, [("a", image)], max_pixels=10**6)
    assert net.shapes == [(1, 3, 320, 256)]  # padded to the stride in one piece
    net.shapes.clear()
    (_, tiled), *_ = predict_items(net, [("a", image)], max_pixels=128 * 128)
    # Tiles of at most 128x128 pixels cover the image: memory is that of one tile.
    assert len(net.shapes) >= 6 and all(n * h * w <= 128 * 128 for n, _, h, w in net.shapes)
    assert tiled.shape == whole.shape == (300, 250)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_long_side_runs_large_images_small_and_answers_at_full_size(trained_ckpt, pairs_folder, tmp_path):
    from wmseg.inference.batching import predict_items

    # Two flat halves: a pixelwise net gives each half one value at any scale.
    image = np.zeros((300, 250, 3), np.uint8)
    image[:, :125] = (200, 40, 90)
    image[:, 125:] = (10, 220, 160)
    net = PixelwiseNet()
    (_, full), *_ = predict_items(net, [("a", image)])
    net.shapes.clear()
    (_, small), *_ = predict_items(net, [("a", image)], long_side=150)
    assert net.shapes == [(1, 3, 160, 128)]  # 150x125, padded to the stride
    assert small.shape == (300, 250)
    np.testing.assert_allclose(small[:, :100], full[:, :100], atol=1e-5)
    np.testing.assert_allclose(small[:, 150:], full[:, 150:], atol=1e-5)
    assert not np.allclose(full[:, :100], full[:, 150:])  # the halves do differ
    # Images already that small run as they are.
    net.shapes.clear()
    (_, same), *_ = predict_items(net, [("a", image)], long_side=400)
    assert net.shapes == [(1, 3, 320, 256)]
    np.testing.assert_array_equal(same, full)

    data = ["data=folder", f"data.root={pairs_folder}"]
    report = evaluate(_eval_cfg(tmp_path, f"ckpt={trained_ckpt}", *data, "long_side=64"))
    assert report["long_side"] == 64 and report["sets"]["pairs"]["images"] == 4
    assert "long side 64 px" in (tmp_path / "eval" / "report.md").read_text()
    with pytest.raises(ConfigError, match="long_side=8"):
        evaluate(_eval_cfg(tmp_path, f"ckpt={trained_ckpt}", *data, "long_side=8"))


def test_long_side_list_averages_the_sizes_probabilities(trained_ckpt, pairs_folder, tmp_path):
    from wmseg.inference.batching import predict_items

    net = TorchPredictor(trained_ckpt)
    image = np.random.default_rng(3).integers(0, 256, (300, 250, 3), dtype=np.uint8)
    (_, full), *_ = predict_items(net, [("a", image)])
    (_, small), *_ = predict_items(net, [("a", image)], long_side=96)
    assert not np.allclose(full, small, atol=1e-3)  # the two sizes do answer differently
    out = dict(predict_items(net, [("a", image), ("b", image[:200])], long_side=[None, 96]))
    assert out["a"].shape == (300, 250) and out["b"].shape == (200, 250)
    np.testing.assert_allclose(out["a"], (full + small) / 2, atol=1e-6)
    (_, only_full), *_ = predict_items(net, [("a", image)], long_side=[None])
    np.testing.assert_array_equal(only_full, full)

    data = ["data=folder", f"data.root={pairs_folder}"]
    report = evaluate(_eval_cfg(tmp_path, f"ckpt={trained_ckpt}", *data, "long_side=[null,64]", "overlays=0"))
    assert report["long_side"] == [None, 64] and report["sets"]["pairs"]["images"] == 4
    assert "the mean of full size, long side 64 px" in (tmp_path / "eval" / "report.md").read_text()
    assert not (tmp_path / "eval" / "overlays_worst_best.png").exists()  # overlays=0: none drawn
    with pytest.raises(ConfigError, match=r"long_side=\[null,8\]: 8 is not"):
        evaluate(_eval_cfg(tmp_path, f"ckpt={trained_ckpt}", *data, "long_side=[null,8]"))


def test_flip_averaging_is_mirror_consistent_and_reported(trained_ckpt, pairs_folder, tmp_path):
    plain = TorchPredictor(trained_ckpt)
    tta = FlipAveraged(plain)
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    mirrored = np.ascontiguousarray(x[..., ::-1])
    y = tta.logits(x)
    expected = 0.5 * (plain.logits(x) + plain.logits(mirrored)[..., ::-1])
    np.testing.assert_allclose(y, expected, atol=1e-5)
    # A mirrored image gets the mirrored answer, which one pass alone does not give.
    np.testing.assert_allclose(tta.logits(mirrored), y[..., ::-1], atol=1e-5)
    assert not np.allclose(plain.logits(mirrored), plain.logits(x)[..., ::-1], atol=1e-4)
    assert tta.threshold == plain.threshold and tta.stride == plain.stride
    data = ["data=folder", f"data.root={pairs_folder}"]
    report = evaluate(_eval_cfg(tmp_path, f"ckpt={trained_ckpt}", *data, "tta=true"))
    assert report["model"].endswith("(flip-averaged)") and report["sets"]["pairs"]["images"] == 4


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_overlay_grid_keeps_the_worst_and_best_images_once_each_in_order(k):
    from wmseg.metrics.report import ExtremeRows

    # Ties (0.1, 0.7) and IoUs from images of different sets: the grid is the k worst then
    # the k best of a stable sort, each image once, as if every score had been kept.
    ious = [0.5, 0.1, 0.9, 0.1, 0.7, 0.3, 0.7, 0.0, 0.1]
    made = []
    extremes = ExtremeRows(k)
    for n, iou in enumerate(ious):
        extremes.offer(iou, lambda n=n: made.append(n) or np.full((1, 1), n))
    order = sorted(range(len(ious)), key=lambda n: ious[n])
    expected = order[:k] + order[max(k, len(ious) - k) :]
    assert [int(r[0, 0]) for r in extremes.rows()] == expected
    assert set(expected) <= set(made)
    assert len(made) < len(ious) or 2 * k >= len(ious)  # rows are drawn only when kept
    assert ExtremeRows(0).rows() == []
