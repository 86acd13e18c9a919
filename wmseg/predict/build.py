"""The Remover (and its inpainter) of a checked `wmseg-predict` or `wmseg-serve` config.
No Lightning, nothing of training."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from wmseg.errors import ConfigError, UserError


def build_inpainter(cfg: DictConfig) -> Any:
    import hydra
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(cfg.inpainter)
    except InstantiationException as err:  # Hydra wraps the constructor's own clear error
        cause = err.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise ConfigError(f"inpainter: {err}") from err


def build_remover(cfg: DictConfig, remove: bool) -> Any:
    """The Remover of a checked predict or serve config; its inpainter only when `remove`."""
    from wmseg.predict.detect import DetectOptions
    from wmseg.predict.remover import Remover

    inpainter = build_inpainter(cfg) if remove else None  # a missing package named first
    detect = DetectOptions(
        batch_pixels=cfg.batch.pixels,
        batch_images=cfg.batch.images,
        grow_after=cfg.batch.grow_after,
        tile_pixels=cfg.tiles.pixels,
        tile=cfg.tiles.size,
        overlap=cfg.tiles.overlap,
    )
    return Remover(
        cfg.model,
        threshold=cfg.threshold,
        margin=cfg.margin,
        inpainter=inpainter,
        detect=detect,
        device=cfg.device,
        threads=cfg.threads,
        precision=cfg.precision,
        remover=cfg.remover,
        opaque=cfg.opaque,
        max_pixels=cfg.get("max_image_pixels"),
    )
