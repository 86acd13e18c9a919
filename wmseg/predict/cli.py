"""`wmseg-predict` (and `python -m wmseg.predict`): the Hydra entry point of prediction."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from wmseg.errors import ConfigError, UserError
from wmseg.tasks.checks import require_bool, require_device, require_int, require_probability


def check_predict_config(cfg: DictConfig) -> None:
    """ConfigError naming the first bad key, before any model is loaded."""
    for key in ("input", "output"):
        if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
            raise ConfigError(
                f"{key}= is required: wmseg-predict input=<image|folder|video|list.txt> output=<dir>"
            )
    for key in ("remove", "overlay", "overwrite", "progress", "video.hardware"):
        require_bool(cfg, key)
    for key, minimum in (
        ("workers.decode", 1),
        ("workers.encode", 1),
        ("workers.queue", 1),
        ("video.batch", 1),
        ("video.crf", 0),
    ):
        require_int(cfg, key, minimum, nullable=False)
    check_model_config(cfg)


def check_model_config(cfg: DictConfig) -> None:
    """The keys `wmseg-predict` and `wmseg-serve` share: the model and how it runs."""
    require_probability(cfg, "threshold")
    require_device(cfg)
    for key, minimum in (
        ("threads", 0),
        ("margin", 0),
        ("batch.images", 1),
        ("batch.pixels", 1),
        ("batch.grow_after", 1),
        ("tiles.pixels", 1),
        ("tiles.size", 32),
        ("tiles.overlap", 0),
    ):
        require_int(cfg, key, minimum, nullable=False)
    require_int(cfg, "max_image_pixels", 1, nullable=True)
    require_probability(cfg, "opaque")
    if cfg.get("opaque") is None:
        raise ConfigError("opaque=null: give the mark opacity (0-1) above which remover=restore inpaints")
    if cfg.remover not in ("inpaint", "restore"):
        raise ConfigError(
            f"remover={cfg.remover}: use inpaint (paint over the mask) or restore (un-blend the mark; "
            "a model with a restoration head)"
        )
    if cfg.precision not in ("int8", "fp32"):
        raise ConfigError(f"precision={cfg.precision}: use int8 or fp32 (of the bundled model)")


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
    from wmseg.image_files import set_max_pixels
    from wmseg.predict.detect import DetectOptions
    from wmseg.predict.remover import Remover

    set_max_pixels(cfg.get("max_image_pixels"))
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
    )


def predict(cfg: DictConfig) -> dict[str, Any]:
    check_predict_config(cfg)
    remover = build_remover(cfg, remove=cfg.remove)
    return remover.run(
        cfg.input,
        cfg.output,
        remove=cfg.remove,
        overlay=cfg.overlay,
        overwrite=cfg.overwrite,
        decode_workers=cfg.workers.decode,
        encode_workers=cfg.workers.encode,
        queue=cfg.workers.queue,
        progress=cfg.progress,
        video=OmegaConf.to_container(cfg.video),
    )
