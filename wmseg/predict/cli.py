"""`wmseg-predict` (and `python -m wmseg.predict`): the Hydra entry point of prediction."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from wmseg.image_files import allow_pixels_in_process
from wmseg.predict.build import build_remover
from wmseg.predict.checks import check_model_config, check_predict_config

__all__ = ["build_remover", "check_model_config", "check_predict_config", "predict"]


# The exit status of a run in which some inputs failed (the others were processed); bad
# settings exit with 1 before any work.
EXIT_FAILED_INPUTS = 2


def predict(cfg: DictConfig) -> dict[str, Any]:
    check_predict_config(cfg)
    allow_pixels_in_process(cfg.get("max_image_pixels"))  # the command owns its process
    remover = build_remover(cfg, remove=cfg.remove)
    summary = remover.run(
        cfg.input,
        cfg.output,
        remove=cfg.remove,
        overlay=cfg.overlay,
        overwrite=cfg.overwrite,
        decode_workers=cfg.workers.decode,
        encode_workers=cfg.workers.encode,
        queue=cfg.workers.queue,
        mark=cfg.mark,
        progress=cfg.progress,
        video=OmegaConf.to_container(cfg.video),
    )
    if summary["failed"]:  # scripts can tell; the summary names each file and why
        raise SystemExit(EXIT_FAILED_INPUTS)
    return summary
