"""Checks on a composed run config that catch bad input before any training starts."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


def _get(cfg: DictConfig, key: str) -> object:
    return OmegaConf.select(cfg, key, default=None)


def check_run_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key; cheap, so it runs before imports of data."""
    from wmseg.synth.backgrounds import HELDOUT  # here: the module stays free of the synthesis

    for key in ("model.optimizer.lr", "data.batch_size", "trainer.accumulate_grad_batches"):
        value = _get(cfg, key)
        if value is not None and not (isinstance(value, int | float) and value > 0):
            raise ConfigError(f"{key} must be a number > 0, got {value!r}: e.g. {key}=<positive value>")
    clip = _get(cfg, "trainer.gradient_clip_val")
    if clip is not None and not (isinstance(clip, int | float) and clip >= 0):
        raise ConfigError(f"trainer.gradient_clip_val must be >= 0 or null, got {clip!r}")
    # (key, names it takes besides a folder, what null means)
    folders = (
        ("data.backgrounds", (), "the bundled default"),
        ("data.val_backgrounds", (HELDOUT,), "the train photos"),
    )
    for key, names, default in folders:
        folder = _get(cfg, key)
        if folder is None or folder in names or Path(str(folder)).expanduser().is_dir():
            continue
        also = "".join(f", {key}={name} (bundled photos training never sees)" for name in names)
        raise ConfigError(
            f"{key}={folder} is not a folder: point it at a folder of clean photos{also}, "
            f"or set {key}=null for {default}"
        )
    ckpt = _get(cfg, "ckpt_path")
    if ckpt is not None and not Path(str(ckpt)).expanduser().is_file():
        raise ConfigError(f"ckpt_path={ckpt} does not exist: pass the path of a .ckpt file to resume from")
    # Logged only by a calibrating model: Lightning's own error would not name the fix.
    monitor = _get(cfg, "monitor")
    calibrated = ("val/best_f1", "val/best_mean_iou", "val/threshold")
    if monitor in calibrated and not _get(cfg, "model.calibrate_threshold"):
        raise ConfigError(
            f"monitor={monitor} is logged only with model.calibrate_threshold=true: "
            "add it, or monitor val/iou"
        )
    from wmseg.metrics import CALIBRATE_METRICS

    metric = _get(cfg, "model.calibrate_metric")
    if metric is not None and metric not in CALIBRATE_METRICS:
        raise ConfigError(
            f"model.calibrate_metric={metric}: use f1 or mean_iou (the metric the stored threshold maximises)"
        )
    for key in ("train", "test"):
        if not isinstance(_get(cfg, key), bool):
            raise ConfigError(f"{key} must be true or false, got {_get(cfg, key)!r}")
