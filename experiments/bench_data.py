"""Data throughput per cache mode, and the data-wait share of training with a disk cache.

    python experiments/bench_data.py [--samples 512] [--steps 40]

1. Samples/s one process (= one DataLoader worker) delivers from `dataset[i]` for each
   `data.cache` mode (none renders; memory and disk read), and how fast the memory and
   disk caches are built.
2. The default training step (Lightning, default model and loader settings) with
   `data.cache=disk`: the share of the second epoch's wall time spent waiting in the
   DataLoader's `next` (target < 2 %), against `data.cache=none` in the same run.
Writes experiments/results/benchmarks/data_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
import lightning as L
from hydra import compose, initialize_config_dir
from lightning.pytorch.profilers import SimpleProfiler

import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before compose)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"


def data_module(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="train", overrides=overrides)
    return cfg, hydra.utils.instantiate(cfg.data)


def per_worker_rate(cache: str, samples: int, cache_dir: str) -> dict[str, float]:
    _, dm = data_module([f"data.cache={cache}", f"data.train_size={samples}", f"data.cache_dir={cache_dir}"])
    t0 = time.perf_counter()
    dm.prepare_data()
    dm.setup("fit")
    build = time.perf_counter() - t0
    ds = dm.datasets["train"]
    t0 = time.perf_counter()
    for i in range(samples):
        ds[i]
    read = time.perf_counter() - t0
    # setup() also builds val and test (256 each): count them in the build rate.
    built = samples + len(dm.datasets["val"]) + len(dm.datasets["test"])
    build_rate = built / build if cache != "none" else None
    return {"samples_per_s": samples / read, "build_samples_per_s": build_rate}


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.ends.append(time.perf_counter())


def second_epoch_wait(cache: str, steps: int, cache_dir: str) -> dict[str, float]:
    overrides = [f"data.cache={cache}", f"data.train_size={steps * 16}", f"data.cache_dir={cache_dir}"]
    cfg, dm = data_module([*overrides, "data.batch_size=16"])
    model = hydra.utils.instantiate(cfg.model)
    timer, profiler = EpochTimer(), SimpleProfiler()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=cfg.trainer.precision,
        max_epochs=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        profiler=profiler,
    )
    trainer.fit(model, datamodule=dm)
    fetches = [d for k, v in profiler.recorded_durations.items() if "train_dataloader_next" in k for d in v]
    # Each epoch makes steps + 1 fetches (the last one ends the epoch).
    wait = sum(fetches[steps + 1 :])
    wall = timer.ends[1] - timer.starts[1]
    return {"data_wait_fraction": wait / wall, "img_per_s": steps * 16 / wall}


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=RESULTS / "benchmarks" / "data_throughput")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rates = {c: per_worker_rate(c, args.samples, f"{tmp}/rate") for c in ("none", "memory", "disk")}
        for c, r in rates.items():
            print(c, r, flush=True)
        waits = {c: second_epoch_wait(c, args.steps, f"{tmp}/train") for c in ("none", "disk")}
        for c, r in waits.items():
            print(c, r, flush=True)

    result = {
        "command": f"python experiments/bench_data.py --samples {args.samples} --steps {args.steps}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "per_worker": rates,
        "second_epoch": waits,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Data throughput ({result['machine']})",
        "",
        f"`{result['command']}`",
        "",
        "| data.cache | samples/s per worker (128 px) | cache build, samples/s |",
        "|---|---|---|",
    ]
    for c, r in rates.items():
        b = r["build_samples_per_s"]
        lines.append(f"| {c} | {r['samples_per_s']:.0f} | {'-' if b is None else f'{b:.0f}'} |")
    lines += [
        "",
        f"Default model and loader (1 worker, batch 16), second epoch of {args.steps} steps:",
        "",
        "| data.cache | data-wait share of wall time | images/s |",
        "|---|---|---|",
    ]
    lines += [
        f"| {c} | {100 * r['data_wait_fraction']:.2f}% | {r['img_per_s']:.1f} |" for c, r in waits.items()
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
