"""One mark on many images: `wmseg-predict mark=shared` against each image's own estimate.

    python experiments/shared_mark.py --model <restoration model.onnx> \\
        [--synthetic 16] [--eval ../shared/eval/chotot_coarse] [--styles ../shared/eval/aucourde] \\
        [--out experiments/results/restoration_targets/shared_mark]

- `--synthetic N`: N photos of the photo bank's `proxy` split (no recipe trains on them),
  384 px, each carrying the same mark (a normal-blend layer of the renderer, translucent,
  known exactly): opacity MAE inside and outside the mark, PSNR of the cleaned image
  inside it, mask IoU.
- `--eval DIR`: a set of photos with one mark (`images/`, `masks/`): mask IoU per mode,
  and PSNR inside the true mask where `clean/` has the originals.
- `--styles DIR`: the same per style, the style being the file name up to its last `_`.
Each mode runs `Remover.run` as `wmseg-predict` does (the files it writes are measured).
Writes `<out>.json`, `<out>.md` and `<out>_<set>_grid.jpg` (input | own | shared | clean).
Evaluation only: nothing here chooses a setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from machine import cpu_name
from PIL import Image
from restoration_removal import psnr

from wmseg.atomic import write_bytes_atomic, write_text_atomic
from wmseg.image_files import read_mask, read_rgb
from wmseg.predict import Remover
from wmseg.predict.image_io import encode_jpeg
from wmseg.predict.shared_mark import estimate_shared, find_mark, own_estimate

MODES = ("own", "shared")
SIZE = 384


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def known_mark(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A translucent normal-blend mark of the renderer (a text or a logo, 25-50 %
    opacity) as its exact opacity (H, W) and colour (H, W, 3) in 0-255."""
    from wmseg.synth import WatermarkSynth
    from wmseg.synth.config import SynthConfig

    config = dataclasses.replace(
        SynthConfig(size=SIZE),
        clean_fraction=0.0,
        tiled_fraction=0.0,
        max_marks=1,
        opacity=(0.25, 0.5),
        blend_probs=(1.0, 0.0, 0.0, 0.0),
        font_size=(0.12, 0.25),
        jpeg_prob=0.0,
    )
    synth = WatermarkSynth(config)
    for index in range(200):
        sample, _, (opacity, colour, _) = synth.render_targets(seed, index)
        if 0.01 < sample.mask.mean() < 0.08:
            return opacity, colour
    raise SystemExit("no mark of a useful size in 200 samples")


def synthetic_folder(out: Path, count: int, bank: Path) -> tuple[dict, np.ndarray]:
    """`count` bank proxy photos with the same mark, as PNG; returns the clean photos by
    stem and the true opacity."""
    from wmseg.synth.photo_bank import PhotoBank

    opacity, colour = known_mark()
    clean = {}
    (out / "images").mkdir(parents=True)
    for i, photo in enumerate(list(PhotoBank(bank).photos("proxy"))[:count]):
        h, w = photo.shape[:2]
        side = min(h, w)
        crop = photo[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
        crop = np.asarray(Image.fromarray(crop).resize((SIZE, SIZE), Image.BICUBIC)).astype(np.float32)
        image = (1 - opacity[..., None]) * crop + opacity[..., None] * colour
        Image.fromarray(np.rint(image).astype(np.uint8)).save(out / "images" / f"bank_{i:02d}.png")
        clean[f"bank_{i:02d}"] = np.rint(crop).astype(np.uint8)
    return clean, opacity


def opacity_errors(remover: Remover, folder: Path, truth: np.ndarray) -> dict:
    """Opacity MAE inside and outside the mark: each image's own estimate against the
    shared one (the estimate `mark=shared` un-blends with)."""
    images = [read_rgb(p) for p in sorted(folder.iterdir())]
    maps = remover.maps(images)
    estimates = [own_estimate(im, m, remover.threshold) for im, m in zip(images, maps, strict=True)]
    mark = estimate_shared(estimates)
    on = truth > 0.02
    out = {"own": {"in_mark": [], "off_mark": []}, "shared": {"in_mark": [], "off_mark": []}}
    for m, e in zip(maps, estimates, strict=True):
        placed = find_mark({mark.size: mark}, e.mask) if mark is not None else None
        for mode, opacity in (("own", m[4]), ("shared", placed.opacity if placed is not None else m[4])):
            out[mode]["in_mark"].append(float(np.abs(opacity - truth)[on].mean()))
            out[mode]["off_mark"].append(float(np.abs(opacity - truth)[~on].mean()))
    return {mode: {k: float(np.mean(v)) for k, v in d.items()} for mode, d in out.items()}


def measure(remover: Remover, folder: Path, masks: dict, clean: dict, scratch: Path) -> tuple[dict, list]:
    """Run both modes on `folder`; per mode mean mask IoU (and PSNR in the true mask where
    the clean photo is known); the run summaries; grid rows."""
    results, rows, cleaned = {}, [], {}
    for mode in MODES:
        out = scratch / mode
        summary = remover.run(folder, out, remove=True, overlay=False, mark=mode, progress=False)
        ious, psnrs = [], []
        for stem, truth in masks.items():
            source = next(folder.glob(f"{stem}.*"))
            predicted = read_mask(out / f"{stem}.mask.png", truth.shape) > 0
            ious.append(iou(predicted, truth))
            cleaned[mode, stem] = read_rgb(out / source.name)
            if stem in clean:
                psnrs.append(psnr(cleaned[mode, stem], clean[stem], truth))
        results[mode] = {
            "images": len(ious),
            "mean_iou": float(np.mean(ious)),
            "psnr_in_mask": float(np.mean(psnrs)) if psnrs else None,
            "shared_marks": summary["shared_marks"],
            "shared_used": summary["shared_used"],
            "own_estimate": [Path(p).name for p in summary["own_estimate"]],
        }
    for stem in list(masks)[:4]:
        source = read_rgb(next(folder.glob(f"{stem}.*")))
        row = [source, cleaned["own", stem], cleaned["shared", stem]]
        if stem in clean:
            row.append(clean[stem])
        rows.append(row)
    return results, rows


def grid(rows: list) -> np.ndarray:
    h = 240
    fit = lambda x: np.asarray(Image.fromarray(x).resize((h * x.shape[1] // x.shape[0], h)))  # noqa: E731
    lines = [np.concatenate([fit(x) for x in r], 1) for r in rows]
    width = max(line.shape[1] for line in lines)
    return np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines], 0)


def eval_set(eval_dir: Path, stems: list[str] | None = None) -> tuple[Path, dict, dict]:
    images = sorted((eval_dir / "images").iterdir())
    if stems is not None:
        images = [p for p in images if p.stem in stems]
    masks, clean = {}, {}
    for path in images:
        shape = read_rgb(path).shape[:2]
        masks[path.stem] = read_mask(eval_dir / "masks" / f"{path.stem}.png", shape).astype(bool)
        originals = eval_dir / "clean"
        original = next(originals.glob(f"{path.stem}.*"), None) if originals.is_dir() else None
        if original is not None:
            clean[path.stem] = read_rgb(original)
    return eval_dir / "images", masks, clean


def linked(paths: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for p in paths:
        (folder / p.name).symlink_to(p.resolve())
    return folder


def markdown(report: dict) -> str:
    lines = [f"# mark=shared against each image's own estimate: {report['model']}", ""]
    lines += ["| set | images | mode | mean IoU | PSNR in mask | shared marks (images) | kept own |"]
    lines.append("|---|---|---|---|---|---|---|")
    for name, modes in report["sets"].items():
        for mode in MODES:
            r = modes[mode]
            marks = ", ".join(str(m["images"]) for m in r["shared_marks"]) or "-"
            p = "-" if r["psnr_in_mask"] is None else f"{r['psnr_in_mask']:.2f}"
            kept, score = len(r["own_estimate"]), f"{r['mean_iou']:.4f}"
            lines.append(f"| {name} | {r['images']} | {mode} | {score} | {p} | {marks} | {kept} |")
    if "opacity" in report:
        lines += ["", "Opacity MAE on the synthetic folder:", "", "| mode | in the mark | off it |"]
        lines.append("|---|---|---|")
        for mode, v in report["opacity"].items():
            lines.append(f"| {mode} | {v['in_mark']:.4f} | {v['off_mark']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--bank", type=Path, default=Path("data/photo_bank"))
    parser.add_argument("--eval", type=Path, action="append", default=[])
    parser.add_argument("--styles", type=Path, action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=Path("experiments/results/restoration_targets/shared_mark")
    )
    args = parser.parse_args()
    remover = Remover(args.model, remover="auto", threads=args.threads)
    if not remover.restore:
        print(f"{args.model} has no restoration head: mark=shared shares the mask only")
    report: dict = {
        "command": " ".join(["python", "experiments/shared_mark.py", *sys.argv[1:]]),
        "model": str(args.model),
        "threshold": remover.threshold,
        "cpu": cpu_name(),
        "sets": {},
    }
    grids = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if args.synthetic:
            clean, truth = synthetic_folder(scratch / "synthetic", args.synthetic, args.bank)
            folder = scratch / "synthetic" / "images"
            masks = {stem: truth > 0.02 for stem in clean}
            report["sets"]["synthetic"], grids["synthetic"] = measure(
                remover, folder, masks, clean, scratch / "runs_synthetic"
            )
            if remover.restore:
                report["opacity"] = opacity_errors(remover, folder, truth)
        for eval_dir in args.eval:
            folder, masks, clean = eval_set(eval_dir)
            report["sets"][eval_dir.name], grids[eval_dir.name] = measure(
                remover, folder, masks, clean, scratch / f"runs_{eval_dir.name}"
            )
        for eval_dir in args.styles:
            stems = sorted(p.stem for p in (eval_dir / "images").iterdir())
            for style in sorted({s.rsplit("_", 1)[0] for s in stems}):
                members = [s for s in stems if s.rsplit("_", 1)[0] == style]
                _, masks, clean = eval_set(eval_dir, members)
                paths = [next((eval_dir / "images").glob(f"{s}.*")) for s in members]
                folder = linked(paths, scratch / f"style_{style}")
                name = f"{eval_dir.name}/{style}"
                report["sets"][name], grids[name.replace("/", "_")] = measure(
                    remover, folder, masks, clean, scratch / f"runs_{style}"
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_text_atomic(args.out.with_suffix(".md"), markdown(report))
    for name, rows in grids.items():
        if rows:
            write_bytes_atomic(args.out.parent / f"{args.out.name}_{name}_grid.jpg", encode_jpeg(grid(rows)))
    print(markdown(report))


if __name__ == "__main__":
    main()
