"""Record a finished training run: command, machine, wall time, the validation curves.

    /usr/bin/time -f %e -o wall.txt python train.py     # the run to record
    python experiments/record_train_run.py logs/train/runs/<date> --wall "$(cat wall.txt)" \
        --name default_15min

A run that was resumed (`ckpt_path=.../last.ckpt`) lives in several run folders: pass
them all, oldest first, and --wall as the sum of their wall times.

Writes <out>/<name>.json (--out: experiments/results/<study>), <name>.md and <name>.png (the curve).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def best_checkpoint(run_dirs: list[Path]) -> tuple[Path, str, float]:
    """(file, monitored metric, score) of the best checkpoint, as the run's monitoring
    ModelCheckpoint chose it (its state in the newest last.ckpt; its mode, max or min,
    included). The unmonitored last_checkpoint also names a "best" file: last.ckpt itself.
    After a resume the best file may sit in an earlier run folder."""
    last_path = run_dirs[-1] / "checkpoints" / "last.ckpt"
    last = torch.load(last_path, map_location="cpu", weights_only=True)
    for key, state in last["callbacks"].items():
        if key.startswith("ModelCheckpoint") and state.get("monitor") and state.get("best_model_path"):
            name = Path(state["best_model_path"]).name
            # Look in the run folders, not at the stored path: they may have been moved.
            found = [
                d / "checkpoints" / name for d in reversed(run_dirs) if (d / "checkpoints" / name).is_file()
            ]
            if not found:
                raise SystemExit(
                    f"{last_path} names {name} as the best checkpoint; it is in none of {run_dirs}"
                )
            return found[0], state["monitor"], float(state["best_model_score"])
    raise SystemExit(f"{last_path} names no best checkpoint (was a top-k one saved?)")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def read_logs(run_dirs: list[Path]) -> pd.DataFrame:
    """The metrics of all parts of a run; a resumed part replaces what an earlier part
    logged from the resumed part's first logged step on (those steps were trained again;
    with one logging interval that is the first log after the resume step)."""
    log = pd.DataFrame()
    for run_dir in run_dirs:
        part = pd.read_csv(run_dir / "csv" / "metrics.csv")
        if len(log):
            log = log[log["step"] < part["step"].min()]
        log = pd.concat([log, part], ignore_index=True)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", type=Path, nargs="+", help="the run folder(s), oldest first")
    parser.add_argument("--name", required=True)
    parser.add_argument("--wall", type=float, required=True, help="wall seconds of the whole command")
    parser.add_argument("--command", default="python train.py")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    args = parser.parse_args()

    log = read_logs(args.run_dirs)
    # val/threshold and val/best_f1 exist when the run calibrated its threshold.
    extra = [c for c in ("val/best_f1", "val/threshold") if c in log]
    val = log.dropna(subset=["val/iou"])[["step", "val/iou", "val/f1", "val/loss", *extra]]
    train = log.dropna(subset=["train/loss"])[["step", "train/loss"]]
    commands = [
        args.command + "".join(f" {o}" for o in yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()))
        for d in args.run_dirs
    ]
    best, monitor, best_score = best_checkpoint(args.run_dirs)
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    test = log.dropna(subset=["test/iou"]) if "test/iou" in log else pd.DataFrame()
    record = {
        "command": commands[0],
        "resumed_with": commands[1:],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU, torch {torch.__version__}",
        "wall_seconds": args.wall,
        # The run's length up to its last training or validation log, not the step of the
        # best checkpoint: Lightning logs the N-th optimizer step's metrics at step N - 1.
        "steps": int(max(train["step"].max(), val["step"].max())) + 1,
        "best_step": int(ckpt["global_step"]),
        "best_checkpoint": best.name,
        "monitor": monitor,
        "best_score": best_score,
        "best_val_iou": float(val["val/iou"].max()),
        "test_iou_best_ckpt": float(test["test/iou"].iloc[-1]) if len(test) else None,
        "stored_threshold": float(ckpt.get("hyper_parameters", {}).get("threshold", 0.5)),
        "val_curve": val.to_dict(orient="list"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(record, indent=2))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(val["step"], val["val/iou"], "o-", label="val/iou")
    if "val/best_f1" in val:
        ax.plot(val["step"], val["val/best_f1"], "s--", label="val/best_f1 (at val/threshold)")
    ax.plot(
        train["step"], train["train/loss"].rolling(5, min_periods=1).mean(), alpha=0.6, label="train/loss"
    )
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{args.name}: best {monitor} {record['best_score']:.3f} in {args.wall / 60:.1f} min")
    fig.tight_layout()
    fig.savefig(args.out / f"{args.name}.png", dpi=100)

    columns = ["val/iou", "val/f1", *extra]
    rows = "\n".join(
        f"| {int(row['step'])} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |"
        for _, row in val.iterrows()
    )
    (args.out / f"{args.name}.md").write_text(
        f"# {args.name}\n\n- command: `{record['command']}`\n"
        + "".join(f"- resumed with: `{c}`\n" for c in record["resumed_with"])
        + f"- machine: {record['machine']}\n"
        f"- wall time: {args.wall:.0f} s ({args.wall / 60:.1f} min), {record['steps']} steps\n"
        f"- best {monitor} (the monitored metric): {record['best_score']:.4f} ({best.name}, "
        f"step {record['best_step']}); best val/iou: {record['best_val_iou']:.4f}; "
        f"test/iou of that checkpoint: {_fmt(record['test_iou_best_ckpt'])}; "
        f"its stored threshold: {record['stored_threshold']:.2f}\n\n"
        f"| step | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}\n{rows}\n\n"
        f"![curve]({args.name}.png)\n"
    )
    print(json.dumps({k: v for k, v in record.items() if k != "val_curve"}, indent=2))


if __name__ == "__main__":
    main()
