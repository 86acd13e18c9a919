"""Train the watermark detector: `python train.py [overrides]` (see README)."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import hydra
from omegaconf import DictConfig

import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before Hydra composes or resolves)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from wmseg.tasks.report_errors import run_task
    from wmseg.tasks.train import train  # heavy imports after Hydra has parsed the CLI

    metrics = run_task(train, cfg)
    # The value Hydra sweepers (Optuna) maximise.
    best = metrics.get("best_model_score")
    return best if best is not None else metrics.get(cfg.get("optimized_metric") or "")


if __name__ == "__main__":
    main()
