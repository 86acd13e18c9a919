"""Export a checkpoint to ONNX (+ INT8): `python export.py ckpt=path/to/best.ckpt`."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
from omegaconf import DictConfig

import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before Hydra composes or resolves)


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from wmseg.tasks.export import export
    from wmseg.tasks.report_errors import run_task

    run_task(export, cfg)


if __name__ == "__main__":
    main()
