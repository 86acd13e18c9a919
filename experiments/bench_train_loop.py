"""Lightning training loop against a plain PyTorch loop: same model, data, batch, process.

    python experiments/bench_train_loop.py [--steps 60] [--rounds 2] [--out <file.json>]

Both loops do the same work per step (forward, BCE+Dice, backward, clip, AdamW, LR
schedule, torchmetrics update) on the default config's model and DataModule; the
rounds alternate so machine noise hits both. Reports images/s of each, their ratio,
and the fraction of step time spent waiting for the next batch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
import lightning as L
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.profilers import SimpleProfiler

import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before compose)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"


def build(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="train", overrides=overrides)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    model = hydra.utils.instantiate(cfg.model)
    return cfg, dm, model


class Timer(L.Callback):
    """Wall time from the first timed step to the last, skipping warm-up steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1, self.n = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.t1, self.n = time.perf_counter(), self.n + 1


def run_lightning(overrides: list[str], steps: int, warmup: int) -> dict[str, float]:
    cfg, dm, model = build(overrides)
    timer, profiler = Timer(warmup), SimpleProfiler()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=cfg.trainer.precision,
        max_steps=warmup + steps,
        limit_val_batches=0,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        profiler=profiler,
    )
    trainer.fit(model, datamodule=dm)
    wall = timer.t1 - timer.t0
    # Time in DataLoader `next` during timed steps: all recorded fetches minus warm-up ones.
    fetches = [d for k, v in profiler.recorded_durations.items() if "train_dataloader_next" in k for d in v]
    wait = sum(fetches[warmup + 1 : warmup + steps])
    return {"img_per_s": timer.n * dm.batch_size / wall, "data_wait_fraction": wait / wall}


def run_plain(overrides: list[str], steps: int, warmup: int) -> dict[str, float]:
    cfg, dm, model = build(overrides)
    net, loss_fn, metrics = model.net, model.loss_fn, model.train_metrics
    optimizer = model.optimizer_factory(params=model.parameters())
    scheduler = model.scheduler_factory(optimizer=optimizer, total_steps=warmup + steps)
    clip = cfg.trainer.gradient_clip_val
    model.train()
    it = iter(dm.train_dataloader())
    wait, t0 = 0.0, 0.0
    for i in range(warmup + steps):
        tf = time.perf_counter()
        batch = next(it)
        wait += time.perf_counter() - tf
        if i == warmup:  # like the Lightning timer: from the first timed step's start
            t0, wait = time.perf_counter(), 0.0
        image = batch["image"].contiguous(memory_format=torch.channels_last)
        logits = net(image)
        loss = loss_fn(logits, batch["mask"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        scheduler.step()
        metrics.update(logits.detach().sigmoid(), batch["mask"].int())
    wall = time.perf_counter() - t0
    return {"img_per_s": steps * dm.batch_size / wall, "data_wait_fraction": wait / wall}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "benchmarks" / "train_loop.json")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.batch_size=8")
    args = parser.parse_args()

    torch.manual_seed(0)
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "lightning": []}
    for r in range(args.rounds):
        for name, fn in (("plain", run_plain), ("lightning", run_lightning)):
            res = fn(args.overrides, args.steps, args.warmup)
            runs[name].append(res)
            print(
                f"round {r} {name:9s} {res['img_per_s']:.2f} img/s, data wait {res['data_wait_fraction']:.2%}"
            )

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[name])

    summary = {
        "command": "python experiments/bench_train_loop.py " + " ".join(args.overrides),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "rounds": args.rounds,
        "plain_img_per_s": med("plain", "img_per_s"),
        "lightning_img_per_s": med("lightning", "img_per_s"),
        "ratio_lightning_over_plain": med("lightning", "img_per_s") / med("plain", "img_per_s"),
        "lightning_data_wait_fraction": med("lightning", "data_wait_fraction"),
        "plain_data_wait_fraction": med("plain", "data_wait_fraction"),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(args.out)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
