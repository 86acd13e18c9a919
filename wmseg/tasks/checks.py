"""Checks on a composed run config that catch bad input before any training starts."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from wmseg.config_checks import (
    config_value,
    is_number,
    require_bool,
    require_device,
    require_int,
    require_probability,
)
from wmseg.errors import ConfigError

__all__ = [
    "ConfigError",
    "check_eval_config",
    "check_export_config",
    "check_run_config",
    "require_bool",
    "require_device",
    "require_int",
    "require_probability",
]


def check_eval_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key of an evaluate.py config, before any work."""
    require_probability(cfg, "threshold")
    require_int(cfg, "max_pixels", 1, nullable=False)
    require_int(cfg, "overlays", 0, nullable=False)
    require_int(cfg, "threads", 0, nullable=False)
    require_int(cfg, "max_image_pixels", 1)
    for key in ("tta", "skip_bad", "x64_quant_precision"):
        require_bool(cfg, key)
    require_device(cfg)
    from wmseg.metrics import check_calibrate_metric

    check_calibrate_metric(cfg.get("calibrate_metric", "f1"), "calibrate_metric")
    if (cfg.get("ckpt") is None) == (cfg.get("onnx") is None):
        raise ConfigError("give exactly one of ckpt=<path.ckpt> or onnx=<path.onnx>")
    if cfg.get("calibrate") and cfg.get("ckpt") is None:
        raise ConfigError("calibrate=<out.ckpt> writes a checkpoint: it needs ckpt=, not onnx=")
    split = cfg.get("split")
    if split is not None and split not in ("val", "test"):
        raise ConfigError(f"split={split}: use val or test (the run's own synthetic splits), or null")
    if split is not None and cfg.get("ckpt") is None and cfg.get("split_from") is None:
        raise ConfigError(
            f"split={split} reads the run config stored in a checkpoint: give ckpt= or split_from="
        )
    if cfg.get("split_from") is not None and split is None:
        raise ConfigError(
            f"split_from={cfg.split_from} names whose split to use: add split=val or split=test"
        )


def check_export_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key of an export.py config, before any work."""
    for key in ("dynamic", "fp16", "int8.enabled", "int8.per_channel", "int8.reduce_range"):
        require_bool(cfg, key)
    for key, minimum in (("sample_size", 1), ("opset", 7), ("threads", 0), ("int8.batch_size", 1)):
        require_int(cfg, key, minimum, nullable=False)
    require_int(cfg, "int8.calibration_batches", 1, nullable=False)
    require_int(cfg, "parity.val_samples", 1)


def check_run_config(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key; cheap, so it runs before imports of data."""
    from wmseg.synth.backgrounds import BANK_VAL, HELDOUT  # here: the module stays free of the synthesis

    lr = config_value(cfg, "model.optimizer.lr")
    if lr is not None and not (is_number(lr) and lr > 0):
        raise ConfigError(f"model.optimizer.lr must be a number > 0, got {lr!r}: e.g. 3e-3")
    for key in ("data.batch_size", "trainer.accumulate_grad_batches"):
        value = config_value(cfg, key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ConfigError(f"{key} must be a whole number > 0, got {value!r}: e.g. {key}=16")
    require_int(cfg, "data.num_workers", 0)
    require_int(cfg, "max_image_pixels", 1)
    clip = config_value(cfg, "trainer.gradient_clip_val")
    if clip is not None and not (is_number(clip) and clip >= 0):
        raise ConfigError(f"trainer.gradient_clip_val must be >= 0 or null, got {clip!r}")
    # (key, names it takes besides a folder, what null means)
    folders = (
        ("data.backgrounds", (), "the bundled default"),
        ("data.val_backgrounds", (HELDOUT, BANK_VAL), "the train photos"),
    )
    never_seen = {
        HELDOUT: "bundled photos training never sees",
        BANK_VAL: "the photo bank's validation photos",
    }
    for key, names, default in folders:
        folder = config_value(cfg, key)
        if folder is None or folder in names or Path(str(folder)).expanduser().is_dir():
            continue
        also = "".join(f", {key}={name} ({never_seen[name]})" for name in names)
        raise ConfigError(
            f"{key}={folder} is not a folder: point it at a folder of clean photos{also}, "
            f"or set {key}=null for {default}"
        )
    ckpt = config_value(cfg, "ckpt_path")
    if ckpt is not None and not Path(str(ckpt)).expanduser().is_file():
        raise ConfigError(f"ckpt_path={ckpt} does not exist: pass the path of a .ckpt file to resume from")
    # Logged only by a calibrating model: Lightning's own error would not name the fix.
    monitor = config_value(cfg, "monitor")
    calibrated = ("val/best_f1", "val/best_mean_iou", "val/threshold")
    if monitor in calibrated and not config_value(cfg, "model.calibrate_threshold"):
        raise ConfigError(
            f"monitor={monitor} is logged only with model.calibrate_threshold=true: "
            "add it, or monitor val/iou"
        )
    # Also checked by the segmenter, but Hydra would wrap its error in a traceback.
    from wmseg.metrics import check_calibrate_metric

    if config_value(cfg, "model.calibrate_metric") is not None:
        check_calibrate_metric(config_value(cfg, "model.calibrate_metric"), "model.calibrate_metric")
    # debug= forces the CPU: DeepSpeed needs CUDA (DDP runs there on gloo).
    strategy = str(config_value(cfg, "trainer.strategy") or "")
    if strategy.startswith("deepspeed") and config_value(cfg, "trainer.accelerator") == "cpu":
        raise ConfigError(
            f"trainer.strategy={strategy} needs CUDA GPUs, and this run is on the CPU (debug= configs "
            "force it): drop trainer=deepspeed for a debug run (trainer=ddp runs there), or run on GPUs"
        )
    for key in ("train", "test"):
        if not isinstance(config_value(cfg, key), bool):
            raise ConfigError(f"{key} must be true or false, got {config_value(cfg, key)!r}")
