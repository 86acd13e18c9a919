"""Checks of a `wmseg-predict` or `wmseg-serve` config, before any model is loaded: each
bad value is a ConfigError naming its key. No Lightning, nothing of training."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from wmseg.config_checks import require_bool, require_device, require_int, require_probability
from wmseg.errors import ConfigError


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
    if cfg.get("mark") not in ("auto", "own", "shared"):
        raise ConfigError(
            f"mark={cfg.get('mark')}: use own (each image its own estimate), shared (one mark "
            "estimated from all the images that carry it) or auto (shared for a video's frames)"
        )
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
    if cfg.remover not in ("auto", "inpaint", "restore"):
        raise ConfigError(
            f"remover={cfg.remover}: use auto (restore where the model can, else inpaint), inpaint "
            "(paint over the mask) or restore (un-blend the mark; a model with a restoration head)"
        )
    if cfg.precision not in ("int8", "fp32"):
        raise ConfigError(f"precision={cfg.precision}: use int8 or fp32 (of the bundled model)")
