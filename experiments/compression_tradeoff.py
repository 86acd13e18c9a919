"""The compression study: from one trained teacher, a student trained alone and distilled at
the same budget, the teacher pruned unstructured and channel-pruned and fine-tuned; each
measured for size, ONNX Runtime speed and accuracy.

    python experiments/compression_tradeoff.py train --teacher <teacher.ckpt> --runs <dir>
    python experiments/compression_tradeoff.py measure --teacher <teacher.ckpt> --runs <dir> [--real]

`train` runs each row's `train.py` command (skipping rows whose run already finished);
`measure` exports every row (`export.py`: ONNX + INT8), times fp32 and INT8 in ONNX
Runtime at 512x512 batch 8, round-robin over the rows so machine noise hits all alike
(speeds are reported as ratios against the teacher's), scores the synthetic validation
split (`evaluate.py split=val`), and with `--real` the real sets of ../shared/eval
(measured once, after the settings were fixed). Results: results/compression/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "compression"
REAL = [ROOT.parent / "shared" / "eval" / name for name in ("aucourde", "stock_coarse", "chotot_coarse")]

QUIET = ["callbacks.rich_progress_bar=null", "callbacks.prediction_overlays=null"]


# Real photos neither the training bank nor validation uses (mvtb-data's other stereo
# views, the pictures the package itself holds out, a photo sequence): the unlabelled
# photos the teacher labels for the student.
UNLABELLED = (
    "rocks2-r.png",
    "walls-r.png",
    "building2-2.png",
    "building2-3.png",
    *(f"campus/holdout/P1070{n}.png" for n in (492, 502, 508, 511, 513)),
    *(f"seq/im.00{n}.png" for n in range(1, 10)),
)


def unlabelled_folder(runs: Path) -> Path:
    """A folder of the UNLABELLED photos under `runs` (written once)."""
    from importlib.resources import files

    folder = runs / "unlabelled_photos"
    folder.mkdir(parents=True, exist_ok=True)
    root = files("mvtbdata") / "images"
    for name in UNLABELLED:
        target = folder / name.replace("/", "_")
        if not target.exists():
            target.write_bytes((root / name).read_bytes())
    return folder


def rows(
    teacher: Path,
    student_steps: int = 500,
    finetune_steps: int = 250,
    unlabelled: Path | None = None,
) -> dict[str, list[str] | None]:
    """Each row's train.py overrides (None: the teacher itself, already trained); each run
    validates twice, halfway and at its end. The rows after the first six are the second
    attempt at the targets (experiments/records/compression.md): channel pruning in three
    cuts with the unpruned teacher distilling, over twice the fine-tune; distillation at a
    higher, decaying weight with teacher-labelled real photos (when `unlabelled` is given)."""

    def budget(steps: int) -> list[str]:
        return [f"trainer.max_steps={steps}", f"trainer.val_check_interval={max(1, steps // 2)}"]

    student = ["experiment=distill_lite0", *budget(student_steps)]
    finetune = ["experiment=prune_finetune", f"ckpt_from={teacher}", *budget(finetune_steps)]
    iterative = [
        "experiment=prune_finetune",
        f"ckpt_from={teacher}",
        *budget(2 * finetune_steps),
        "callbacks=[default,channel_pruning,distillation]",
        "callbacks.channel_pruning.ratio=0.3",
        "callbacks.channel_pruning.iterations=3",
        f"callbacks.channel_pruning.every={max(1, 2 * finetune_steps // 5)}",
        f"callbacks.distillation.teacher={teacher}",
    ]
    strong = [
        *student,
        f"callbacks.distillation.teacher={teacher}",
        "callbacks.distillation.weight=4.0",
        "callbacks.distillation.final_weight=1.0",
    ]
    if unlabelled is not None:
        strong.append(f"callbacks.distillation.unlabelled={unlabelled}")
    return {
        "teacher": None,
        "student_alone": [*student, "callbacks=[default,ema]"],
        "student_distilled": [*student, f"callbacks.distillation.teacher={teacher}"],
        "teacher_unstructured50": [*finetune, "callbacks=[default,pruning]", "callbacks.pruning.amount=0.5"],
        "teacher_channels30": [*finetune, "callbacks.channel_pruning.ratio=0.3"],
        "teacher_channels50": [*finetune, "callbacks.channel_pruning.ratio=0.5"],
        "teacher_channels30_iterative_kd": iterative,
        "student_distilled_strong": strong,
    }


def run(args: list[str], log: Path) -> str:
    print("$ python", " ".join(args), flush=True)
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    text = log.read_text()
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): see {log}\n{text[-2000:]}")
    return text


def best_checkpoint(run_dir: Path) -> Path | None:
    marker = run_dir / "best_checkpoint.txt"
    return Path(marker.read_text().strip()) if marker.is_file() else None


def chosen_rows(teacher: Path, runs: Path, steps: tuple[int, int], names: list[str] | None) -> dict:
    """The rows named (all when None; the teacher always comes first: speeds are ratios
    against it)."""
    table = rows(teacher, *steps, unlabelled=unlabelled_folder(runs))
    unknown = sorted(set(names or ()) - set(table))
    if unknown:
        raise SystemExit(f"--rows: unknown {unknown}; known: {sorted(table)}")
    return {k: v for k, v in table.items() if names is None or k == "teacher" or k in names}


def train_rows(
    teacher: Path, runs: Path, steps: tuple[int, int], extra: list[str], names: list[str] | None
) -> None:
    for name, overrides in chosen_rows(teacher, runs, steps, names).items():
        run_dir = runs / name
        if overrides is None or best_checkpoint(run_dir):
            continue
        overrides = [*overrides, *extra]
        run_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        text = run(["train.py", *overrides, *QUIET, f"hydra.run.dir={run_dir}"], run_dir / "train.out")
        best = next(x for x in text.splitlines() if x.startswith("Best checkpoint: ")).split(": ", 1)[1]
        (run_dir / "best_checkpoint.txt").write_text(best + "\n")
        (run_dir / "command.txt").write_text("python train.py " + " ".join(overrides) + "\n")
        print(f"{name}: {best} ({(time.time() - t0) / 60:.1f} min)", flush=True)


def speeds(models: dict[str, Path], threads: int, reps: int = 5) -> dict[str, float]:
    """Images/s of each ONNX file at 512x512 batch 8: the median of `reps` rounds, one
    batch per model a round, models in turn."""
    import numpy as np

    from wmseg.inference import OnnxPredictor

    batch = np.random.default_rng(0).random((8, 3, 512, 512), dtype=np.float32)
    sessions = {name: OnnxPredictor(path, threads=threads) for name, path in models.items()}
    for s in sessions.values():
        s.logits(batch)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(reps):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.logits(batch)
            times[name].append(time.perf_counter() - t0)
    return {name: 8 / float(np.median(t)) for name, t in times.items()}


def measure(
    teacher: Path, runs: Path, real: bool, threads: int, steps: tuple[int, int], names: list[str] | None
) -> dict:
    from wmseg.inference import load_model
    from wmseg.models.compression import parameters_and_gflops

    table: dict[str, dict] = {}
    files: dict[str, Path] = {}
    for name, overrides in chosen_rows(teacher, runs, steps, names).items():
        ckpt = teacher if overrides is None else best_checkpoint(runs / name)
        if ckpt is None:
            raise SystemExit(f"{name}: not trained yet (run `train` first)")
        out = runs / name / "measure"
        out.mkdir(parents=True, exist_ok=True)
        params, gflops = parameters_and_gflops(load_model(ckpt).net, 512)
        run(
            [
                "export.py",
                f"ckpt={ckpt}",
                "parity.val_samples=32",  # its own mask checks; the split is scored below
                f"paths.output_dir={out / 'export'}",
                f"hydra.run.dir={out / 'export'}",
            ],
            out / "export.out",
        )
        exported = json.loads((out / "export" / "export_report.json").read_text())
        run(
            [
                "evaluate.py",
                f"ckpt={ckpt}",
                "split=val",
                f"paths.output_dir={out / 'val'}",
                f"hydra.run.dir={out / 'val'}",
            ],
            out / "val.out",
        )
        val = json.loads((out / "val" / "report.json").read_text())["sets"]["synthetic_val"]
        row = {
            "checkpoint": str(ckpt),
            "command": "(trained before)" if overrides is None else "python train.py " + " ".join(overrides),
            "params": params,
            "gflops_512": gflops,
            "onnx_mb": exported["files"]["model.onnx"]["bytes"] / 1e6,
            "int8_mb": exported["files"]["model.int8.onnx"]["bytes"] / 1e6,
            # Zeroed weights shrink a compressed file only.
            "onnx_gzip_mb": len(gzip.compress((out / "export" / "model.onnx").read_bytes(), 6)) / 1e6,
            "val_f1": val["mean_f1"],
            "val_iou": val["mean_iou"],
            "val_global_iou": val["global_iou"],
        }
        if real:
            roots = "[" + ",".join(str(p) for p in REAL) + "]"
            run(
                [
                    "evaluate.py",
                    f"ckpt={ckpt}",
                    "data=folder",
                    f"data.root={roots}",
                    f"paths.output_dir={out / 'real'}",
                    f"hydra.run.dir={out / 'real'}",
                ],
                out / "real.out",
            )
            sets = json.loads((out / "real" / "report.json").read_text())["sets"]
            row["real_mean_iou"] = {k: v["mean_iou"] for k, v in sets.items()}
        table[name] = row
        files[f"{name}/fp32"] = out / "export" / "model.onnx"
        files[f"{name}/int8"] = out / "export" / "model.int8.onnx"
    speed = speeds(files, threads)
    for name, row in table.items():
        for precision in ("fp32", "int8"):
            row[f"{precision}_img_per_s"] = speed[f"{name}/{precision}"]
            row[f"{precision}_speedup"] = speed[f"{name}/{precision}"] / speed[f"teacher/{precision}"]
    return table


def markdown(table: dict, cpu: str) -> str:
    real = any("real_mean_iou" in r for r in table.values())
    columns = ["row", "params (M)", "GFLOPs 512", "ONNX MB", "gzip MB", "INT8 MB", "fp32 img/s (x teacher)"]
    columns += ["INT8 img/s (x teacher)", "val F1", "val IoU"]
    sets = ("aucourde", "stock_coarse", "chotot_coarse")
    if real:
        columns += list(sets)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, r in table.items():
        cells = [name, f"{r['params'] / 1e6:.2f}", f"{r['gflops_512']:.2f}", f"{r['onnx_mb']:.1f}"]
        cells += [f"{r['onnx_gzip_mb']:.1f}"]
        cells += [f"{r['int8_mb']:.1f}", f"{r['fp32_img_per_s']:.2f} ({r['fp32_speedup']:.2f}x)"]
        cells += [f"{r['int8_img_per_s']:.2f} ({r['int8_speedup']:.2f}x)"]
        cells += [f"{r['val_f1']:.4f}", f"{r['val_iou']:.4f}"]
        if real:
            cells += [f"{r['real_mean_iou'].get(k, float('nan')):.4f}" for k in sets]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"# Compression trade-off\n\nCPU: {cpu}; ONNX Runtime, 512x512, batch 8.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=["train", "measure"])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True, help="a folder for the rows' runs")
    parser.add_argument("--real", action="store_true", help="also measure ../shared/eval (once)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--student-steps", type=int, default=500)
    parser.add_argument("--finetune-steps", type=int, default=250)
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run (a dry run's)")
    parser.add_argument("--rows", nargs="*", default=None, help="only these rows (and the teacher)")
    parser.add_argument("--stem", default="tradeoff", help="results file name (+ _real with --real)")
    args = parser.parse_args()
    steps = (args.student_steps, args.finetune_steps)
    if args.stage == "train":
        train_rows(args.teacher.resolve(), args.runs.resolve(), steps, args.extra, args.rows)
        return
    table = measure(args.teacher.resolve(), args.runs.resolve(), args.real, args.threads, steps, args.rows)
    cpu = cpu_name()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.stem}_real" if args.real else args.stem
    (args.out / f"{stem}.json").write_text(json.dumps({"cpu": cpu, "rows": table}, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(table, cpu))
    print(markdown(table, cpu))


if __name__ == "__main__":
    main()
