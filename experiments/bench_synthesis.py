"""The fast path of synthesis against the renderer, in one run on one machine.

    python experiments/bench_synthesis.py [--samples 400] [--steps 30] [--repeats 3]

1. Samples/s one process (= one DataLoader worker = one core) delivers from the train
   split's `dataset[i]` (tensors, as the loader hands them on), `data.engine=render`
   against `data.engine=compose` (no live renders: `data.live_fraction=0`), for the
   cpu_long recipe and for cpu_overlay (the photo bank's recipe, skipped when the bank is
   not installed). The two engines alternate in
   `--repeats` rounds, so machine noise hits both alike; the ratio is of the medians.
   The layer bank's build time (on all cores) is reported beside it.
2. Training steps/s of the default recipe (`python train.py`, one loader worker) on this
   machine's cores, render against compose, alternating, `--steps` steps after warm-up.
Writes experiments/results/fast_synthesis/throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
import lightning as L
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from machine import cpu_name
from omegaconf import open_dict

import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before compose)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "fast_synthesis"


def config(overrides: list[str], root: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = root
        cfg.paths.output_dir = root
    from hydra.core.hydra_config import HydraConfig

    HydraConfig().set_config(cfg)
    return cfg


def train_datasets(experiment: str, root: str) -> tuple[dict, float]:
    """{engine: train dataset} and the layer bank's build time (s)."""
    out, build = {}, 0.0
    for engine in ("render", "compose"):
        overrides = [f"experiment={experiment}", f"data.engine={engine}", "data.num_workers=0"]
        cfg = config([*overrides, "data.live_fraction=0"], root)
        dm = hydra.utils.instantiate(cfg.data)
        t0 = time.perf_counter()
        dm.prepare_data()
        dm.setup("fit")
        if engine == "compose":
            build = time.perf_counter() - t0
        out[engine] = dm.datasets["train"]
    return out, build


def per_core(experiment: str, samples: int, repeats: int, root: str) -> dict:
    datasets, build = train_datasets(experiment, root)
    rates: dict[str, list[float]] = {e: [] for e in datasets}
    for ds in datasets.values():
        ds[0]  # warm caches (fonts, photos, memory maps)
    for r in range(repeats):
        for engine, ds in datasets.items():
            first = 1 + r * samples
            t0 = time.perf_counter()
            for i in range(first, first + samples):
                ds[i]
            rates[engine].append(samples / (time.perf_counter() - t0))
    med = {e: statistics.median(v) for e, v in rates.items()}
    return {
        "samples_per_s_per_core": med,
        "rounds": rates,
        "ratio": med["compose"] / med["render"],
        "bank_build_s": build,
        "bank_build_cores": os.cpu_count(),
    }


class StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.t0 = time.perf_counter()
        self.t1, self.steps = time.perf_counter(), trainer.global_step - self.warmup


def steps_per_s(engine: str, steps: int, root: str) -> float:
    warmup = 5
    size = f"data.train_size={(steps + warmup + 2) * 16}"
    cfg = config([f"data.engine={engine}", "data.live_fraction=0", size], root)
    dm = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    timer = StepTimer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=cfg.trainer.precision,
        max_steps=steps + warmup,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=dm)
    return timer.steps / (timer.t1 - timer.t0)


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default=None, help="paths.root_dir: its data/layer_bank keeps the banks")
    args = parser.parse_args()
    recipes = ["cpu_long"]
    try:
        from wmseg.synth.photo_bank import photo_bank

        photo_bank(None)
        recipes.append("cpu_overlay")
    except Exception as err:
        print(f"cpu_overlay skipped: {err}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or tmp
        per = {r: per_core(r, args.samples, args.repeats, root) for r in recipes}
        for r, v in per.items():
            print(r, json.dumps(v), flush=True)
        steps: dict[str, list[float]] = {"render": [], "compose": []}
        for _ in range(2):
            for engine in steps:
                steps[engine].append(steps_per_s(engine, args.steps, root))
                print(engine, steps[engine][-1], flush=True)
    step_med = {e: statistics.median(v) for e, v in steps.items()}
    result = {
        "command": f"python experiments/bench_synthesis.py --samples {args.samples} --steps {args.steps} "
        f"--repeats {args.repeats}",
        "cpu": cpu_name(),
        "per_core": per,
        "default_recipe_steps_per_s": {"runs": steps, "median": step_med},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "throughput.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Synthesis throughput: renderer against the fast path (layer bank + compositor)",
        "",
        f"CPU: {result['cpu']}. `{result['command']}`",
        "",
        "| recipe | render, samples/s a core | compose, samples/s a core | ratio | bank build, s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r, v in per.items():
        s = v["samples_per_s_per_core"]
        lines.append(
            f"| {r} | {s['render']:.1f} | {s['compose']:.1f} | {v['ratio']:.2f}x | {v['bank_build_s']:.0f} |"
        )
    lines += [
        "",
        "Default recipe (`python train.py`, 1 loader worker, batch 16), training steps/s on all cores:",
        "",
        "| engine | steps/s (median of 2) | runs |",
        "|---|---:|---|",
    ]
    for e, v in steps.items():
        lines.append(f"| {e} | {step_med[e]:.3f} | {', '.join(f'{x:.3f}' for x in v)} |")
    lines.append(f"\nRatio compose / render: {step_med['compose'] / step_med['render']:.2f}x")
    (OUT / "throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
