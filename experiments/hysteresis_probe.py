"""Hysteresis masks on a checkpoint's probabilities: pixels at or above `low` that touch a
pixel at or above `high` (scikit-image's apply_hysteresis_threshold), against the plain
mask at the stored threshold.

The idea: the stored threshold is high (about 0.9) because the model fires on some real
photo content; the parts of a real mark it is less sure of (faint strokes, edges) fall
below it. Growing confident detections into their less confident surroundings keeps
isolated weak responses out.

    python experiments/hysteresis_probe.py --ckpt <best.ckpt> --split val \
        --folders /tmp/clean_real /tmp/marked_real --out experiments/results/hysteresis_v7

`--split val` is the checkpoint's own held-out synthetic validation split (where `low`
may be chosen); `--folders` are real-pair folders (e.g. the proxy of clean_photos.py).
Never pass ../shared/eval here: this chooses a setting. Writes <out>.json and <out>.md:
per set and setting, evaluate.py's measures (per-image mean IoU over marked images, pooled
precision and recall, and their F1; the mean share of pixels marked on clean images),
with the per-image IoUs for paired comparisons.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from skimage.filters import apply_hysteresis_threshold

from wmseg.atomic import write_text_atomic
from wmseg.data.folder import FolderPairs
from wmseg.inference import TorchPredictor, predict_items
from wmseg.metrics import SegmentationMeter
from wmseg.tasks.evaluate import _run_split


def masks(prob: np.ndarray, settings: list[tuple[float, float]]) -> list[np.ndarray]:
    out = []
    for low, high in settings:
        # skimage compares with >; the meter's plain mask is prob >= t
        out.append(prob >= high if low >= high else apply_hysteresis_threshold(prob, low, high))
    return out


def measure(predictor, items, settings) -> dict:
    """evaluate.py's own meter on each setting's binary mask (a 0/1 "probability" at 0.5)."""
    meters = [SegmentationMeter(threshold=0.5) for _ in settings]
    loaded = (items[i] for i in range(len(items)))  # a synthetic item renders once
    for item, prob in predict_items(predictor, ((item, item.image) for item in loaded)):
        for meter, mask in zip(meters, masks(prob, settings), strict=True):
            meter.update(item.group, item.name, mask.astype(np.float32), item.mask)
    rows = [meter.compute() for meter in meters]
    per_image: dict[str, list[float]] = {}
    for meter in meters:
        for score in meter.images:
            if score.iou is not None:
                per_image.setdefault(score.name, []).append(score.iou)
    return {
        "marked_images": rows[0]["images_with_watermark"],
        "mean_iou": [r["mean_iou"] for r in rows] if rows[0]["mean_iou"] is not None else None,
        "f1": [2 * r["precision"] * r["recall"] / max(r["precision"] + r["recall"], 1e-12) for r in rows],
        "precision": [r["precision"] for r in rows],
        "recall": [r["recall"] for r in rows],
        "clean_fp_rate": [r["empty_fp_rate"] for r in rows] if rows[0]["empty_fp_rate"] is not None else None,
        "per_image": per_image,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--split", choices=["val", "test"], default=None)
    parser.add_argument("--folders", nargs="*", default=[])
    parser.add_argument("--lows", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--out", required=True, help="path without suffix for .json and .md")
    args = parser.parse_args()
    predictor = TorchPredictor(args.ckpt)
    high = predictor.threshold
    settings = [(high, high)] + [(low, high) for low in args.lows if low < high]
    sets = {}
    if args.split:
        sets[f"synthetic_{args.split}"] = _run_split(OmegaConf.create({"ckpt": args.ckpt}), args.split)[0]
    for folder in args.folders:
        sets[Path(folder).name] = FolderPairs(folder)
    results = {}
    for name, items in sets.items():
        start = time.perf_counter()
        results[name] = measure(predictor, items, settings)
        print(f"{name}: {len(items)} images in {time.perf_counter() - start:.0f} s", flush=True)
    report = {"ckpt": args.ckpt, "high": high, "settings": settings, "sets": results}
    out = Path(args.out)
    write_text_atomic(out.with_suffix(".json"), json.dumps(report, indent=1))
    lines = [
        f"# Hysteresis probe: {args.ckpt} (high = stored threshold {high:.2f})",
        "",
        "| set | low | marked mean IoU | pooled F1 | precision | recall | clean FP |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for k, (low, _) in enumerate(settings):
            miou = "-" if r["mean_iou"] is None else f"{r['mean_iou'][k]:.4f}"
            fp = "-" if r["clean_fp_rate"] is None else f"{100 * r['clean_fp_rate'][k]:.2f} %"
            label = "plain" if k == 0 else f"{low:.2f}"
            lines.append(
                f"| {name} | {label} | {miou} | {r['f1'][k]:.4f} | {r['precision'][k]:.3f} "
                f"| {r['recall'][k]:.3f} | {fp} |"
            )
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
