"""Samples/s a recipe's train loader delivers to the training device, finished.

    python experiments/gpu_feed.py experiment=gpu_overlay [overrides ...] [--batches 60] [--out F]

For each engine - `render` (every sample rendered on the CPU workers), `compose` with
`compose_on=cpu` (composed on the workers) and `compose_on=gpu` (plans from the workers,
composed on the device) - iterates the train loader with the recipe's workers and batch
size, moves each batch to the device (CUDA when there is one, else the CPU) and, for
`compose_on=gpu`, composes it there; the rate counts `--batches` batches after 5 of
warm-up, with the device synchronised. The layer bank is built first (its time is
reported). Writes a JSON record to --out (default: stdout only).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
import torch
from bench_synthesis import config
from machine import cpu_name

import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before compose)

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {
    "render": ["data.engine=render", "data.compose_on=cpu"],
    "compose_cpu": ["data.engine=compose", "data.compose_on=cpu"],
    "compose_gpu": ["data.engine=compose", "data.compose_on=gpu"],
}


def data_module(overrides: list[str], root: str):
    cfg = config(overrides, root)
    return cfg, hydra.utils.instantiate(cfg.data)


def rate(overrides: list[str], root: str, batches: int, device: torch.device) -> dict:
    cfg, dm = data_module(overrides, root)
    t0 = time.perf_counter()
    dm.prepare_data()
    dm.setup("fit")
    setup = time.perf_counter() - t0
    loader = dm.train_dataloader()
    it = iter(loader)
    seen, start = 0, None
    for step in range(batches + 5):
        if step == 5:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        batch = next(it)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        batch = dm.on_after_batch_transfer(batch, 0)
        seen += batch["image"].shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {
        "samples_per_s": seen / elapsed,
        "batch_size": cfg.data.batch_size,
        "num_workers": cfg.data.num_workers,
        "size": cfg.data.synth.size,
        "setup_s": setup,
    }


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--root", default=str(ROOT), help="paths.root_dir (its data/layer_bank)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {
        "overrides": args.overrides,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "cpu": cpu_name(),
        "engines": {},
    }
    for name in args.engines.split(","):
        result["engines"][name] = rate([*args.overrides, *ENGINES[name]], args.root, args.batches, device)
        print(name, json.dumps(result["engines"][name]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
