"""Removal quality of restoration against inpainting, on photos with clean originals.

    python experiments/restoration_removal.py --model <restore best.ckpt | model.onnx> \
        [--eval ../shared/eval/aucourde] [--synthetic 64] [--out experiments/results/restoration/removal]

For each image: PSNR and SSIM against the clean original, over the whole image and inside
the true mask, for doing nothing, OpenCV Telea with the predicted mask, Telea with the
true mask, and restoration (`remover=restore`: un-blended where the predicted opacity is
low, inpainted where it is high) with the predicted mask. `--eval` is a set
with `images/`, `masks/` and `clean/` (evaluation only: it chooses nothing);
`--synthetic N` adds the first N images of the model's own synthetic test split (its
stored run config, rendered with the clean photos), where the predicted opacity is also
measured against the renderer's (MAE inside and outside the true mask). Images without a mark are left out
(there is nothing to remove). Writes `<out>.json`, `<out>.md` and a
picture grid `<out>_grid.jpg` (input | Telea, predicted mask | restored | clean).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from machine import cpu_name
from PIL import Image
from skimage.metrics import structural_similarity

from wmseg.atomic import write_bytes_atomic, write_text_atomic
from wmseg.image_files import read_mask, read_rgb
from wmseg.predict import OpenCVInpainter, Remover
from wmseg.predict.inpaint import dilate, fill

ROWS = ("nothing", "telea, predicted mask", "telea, true mask", "restore, predicted mask")


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = diff[region].mean() if region is not None else diff.mean()
    return float(10 * np.log10(255**2 / mse)) if mse > 0 else 100.0  # identical: capped


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    _, full = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    full = full.mean(axis=2)
    return float(full[region].mean() if region is not None else full.mean())


def pairs_of(eval_dir: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for path in sorted((eval_dir / "images").iterdir()):
        image = read_rgb(path)
        clean_path = next((eval_dir / "clean").glob(f"{path.stem}.*"), None)
        if clean_path is None:
            raise SystemExit(f"{eval_dir / 'clean'} has no original for {path.name}")
        clean = read_rgb(clean_path)
        truth = read_mask(eval_dir / "masks" / f"{path.stem}.png", image.shape[:2]).astype(bool)
        out.append((path.name, image, truth, clean, None))
    return out


def synthetic_pairs(ckpt: Path, n: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    from wmseg.inference import load_model
    from wmseg.tasks.run_data import stored_splits

    loaded = load_model(ckpt)
    config = json.loads(json.dumps(loaded.config))
    config["data"]["restoration_targets"] = True
    test = stored_splits(config, ckpt, "the synthetic removal check").datasets()["test"]
    to_u8 = lambda t: (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
    items = [test[i] for i in range(min(n, len(test)))]
    return [
        (
            f"synthetic_{i}",
            to_u8(it["image"]),
            it["mask"][0].numpy() > 0.5,
            to_u8(it["clean"]),
            # The renderer's opacity where it is known (normal blends; NaN elsewhere).
            np.where(it["known"][0].numpy() > 0.5, it["opacity"][0].numpy(), np.nan)
            if "opacity" in it
            else None,
        )
        for i, it in enumerate(items)
    ]


def measure(remover: Remover, pairs: list, grid_rows: int = 4) -> tuple[dict, np.ndarray | None]:
    telea = OpenCVInpainter()
    scores: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in ROWS}
    grid = []
    opacity_errors: dict[str, list[float]] = {"in_mask": [], "off_mask": []}
    for _, image, truth, clean, true_opacity in pairs:
        if clean.shape != image.shape:
            raise SystemExit(f"clean original {clean.shape} does not match the image {image.shape}")
        if not truth.any():
            # Nothing to remove: "nothing" would score the 100 dB cap there and outweigh
            # every marked image in the mean.
            continue
        maps = remover.maps([image])[0]
        predicted = maps[0] >= remover.threshold
        if true_opacity is not None and maps.shape[0] >= 5:
            known = ~np.isnan(true_opacity)
            err = np.abs(maps[4] - np.nan_to_num(true_opacity))
            if (known & truth).any():  # marks of other blend modes only: nothing known there
                opacity_errors["in_mask"].append(float(err[known & truth].mean()))
            if (known & ~truth).any():
                opacity_errors["off_mask"].append(float(err[known & ~truth].mean()))
        outs = {
            "nothing": image,
            "telea, predicted mask": fill(telea, image, dilate(predicted, remover.margin)),
            "telea, true mask": fill(telea, image, dilate(truth, remover.margin)),
            "restore, predicted mask": remover.remove(image, predicted, maps),
        }
        for name, out in outs.items():
            scores[name].append(
                (psnr(out, clean), psnr(out, clean, truth), ssim(out, clean), ssim(out, clean, truth))
            )
        if len(grid) < grid_rows:
            row = [image, outs["telea, predicted mask"], outs["restore, predicted mask"], clean]
            h = 256
            grid.append(
                np.concatenate(
                    [np.asarray(Image.fromarray(x).resize((h * x.shape[1] // x.shape[0], h))) for x in row], 1
                )
            )
    table = {
        name: {
            "images": len(v),
            "psnr_whole": float(np.mean([x[0] for x in v])),
            "psnr_in_mask": float(np.mean([x[1] for x in v])),
            "ssim_whole": float(np.mean([x[2] for x in v])),
            "ssim_in_mask": float(np.mean([x[3] for x in v])),
        }
        for name, v in scores.items()
    }
    if opacity_errors["in_mask"]:
        table["opacity MAE"] = {k: float(np.mean(v)) for k, v in opacity_errors.items()}
    if not grid:
        return table, None
    width = max(g.shape[1] for g in grid)
    return table, np.concatenate([np.pad(g, ((0, 0), (0, width - g.shape[1]), (0, 0))) for g in grid], 0)


def markdown(results: dict, model: str) -> str:
    lines = [f"# Removal against the clean originals: {model}", ""]
    for name, table in results.items():
        lines += [
            f"## {name}",
            "",
            "| removal | images | PSNR whole | PSNR in mask | SSIM whole | SSIM in mask |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for row, v in table.items():
            if row == "opacity MAE":
                continue
            lines.append(
                f"| {row} | {v['images']} | {v['psnr_whole']:.2f} | {v['psnr_in_mask']:.2f} | "
                f"{v['ssim_whole']:.4f} | {v['ssim_in_mask']:.4f} |"
            )
        if "opacity MAE" in table:
            v = table["opacity MAE"]
            lines += [
                "",
                f"Opacity MAE: {v['in_mask']:.4f} inside the true mask, {v['off_mask']:.4f} outside it.",
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="a restoration .ckpt or its model.onnx")
    parser.add_argument(
        "--ckpt", type=Path, default=None, help="the .ckpt whose test split --synthetic draws"
    )
    parser.add_argument(
        "--eval", type=Path, action="append", default=[], help="a set with images/, masks/, clean/"
    )
    parser.add_argument("--synthetic", type=int, default=0, help="images of the model's synthetic test split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/restoration/removal"))
    args = parser.parse_args()
    remover = Remover(args.model, remover="auto", threads=args.threads)
    if not remover.restore:
        raise SystemExit(f"{args.model} has no restoration head: nothing to compare Telea with")
    results, grids = {}, {}
    for eval_dir in args.eval:
        results[eval_dir.name], grids[eval_dir.name] = measure(remover, pairs_of(eval_dir))
    if args.synthetic:
        ckpt = args.ckpt or args.model
        if ckpt.suffix != ".ckpt":
            raise SystemExit("--synthetic needs the checkpoint (--ckpt) whose run config holds the split")
        results["synthetic_test"], grids["synthetic_test"] = measure(
            remover, synthetic_pairs(ckpt, args.synthetic)
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "experiments/restoration_removal.py", *sys.argv[1:]])
    report = {
        "command": command,
        "model": str(args.model),
        "threshold": remover.threshold,
        "cpu": cpu_name(),
        "sets": results,
    }
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_text_atomic(args.out.with_suffix(".md"), markdown(results, str(args.model)))
    for name, grid in grids.items():
        if grid is not None:
            from wmseg.predict.image_io import encode_jpeg

            write_bytes_atomic(args.out.parent / f"{args.out.name}_{name}_grid.jpg", encode_jpeg(grid))
    print(markdown(results, str(args.model)))


if __name__ == "__main__":
    main()
