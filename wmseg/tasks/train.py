"""The training task: seed -> data -> model -> callbacks -> loggers -> trainer -> fit -> test."""

from __future__ import annotations

import logging
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from wmseg.callbacks import EmbedRunConfig
from wmseg.errors import ConfigError
from wmseg.image_files import allow_pixels_in_process
from wmseg.models.checkpoint import load_weights, read_checkpoint, trained_net_config
from wmseg.tasks.checks import check_run_config
from wmseg.tasks.instantiate import instantiate_callbacks, instantiate_loggers

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (and test) as `cfg` says; returns the logged metrics plus the best checkpoint."""
    check_run_config(cfg)
    allow_pixels_in_process(cfg.get("max_image_pixels"))  # the command owns its process
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    start = _start_from(cfg) if cfg.get("ckpt_from") else None
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model: L.LightningModule = hydra.utils.instantiate(cfg.model)
    if start is not None:
        # A restoration head the checkpoint lacks (model.net.restore=true) starts fresh.
        load_weights(model.net, start, cfg.ckpt_from, new_heads=("restore_head.",))
        log.info("starting from the weights of %s", cfg.ckpt_from)
    callbacks = [*instantiate_callbacks(cfg.get("callbacks")), EmbedRunConfig(cfg)]
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)

    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        if isinstance(logger, WandbLogger) and cfg.get("monitor"):
            # W&B sweeps rank runs by the summary value: make it the best, not the last one.
            mode = cfg.get("callbacks", {}).get("model_checkpoint", {}).get("mode", "max")
            logger.experiment.define_metric(
                cfg.monitor, step_metric="trainer/global_step", summary=mode, step_sync=True
            )

    max_epochs = cfg.trainer.get("max_epochs")
    if cfg.get("ckpt_path") and max_epochs not in (None, -1) and cfg.model.get("scheduler"):
        # The LR schedule's length makes Lightning read the train loader before it restores
        # the checkpoint, and then it never restores the loader's place (Lightning #20550).
        log.warning(
            "Resuming with trainer.max_epochs=%s: the train loader starts its epoch over instead "
            "of going on where the checkpoint stopped. Set trainer.max_epochs=-1 and stop on "
            "trainer.max_steps to resume mid-epoch with the same batches.",
            max_epochs,
        )
    try:
        if cfg.train:
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}

        checkpoint = trainer.checkpoint_callback
        best_path = getattr(checkpoint, "best_model_path", "") or ""
        best_score = getattr(checkpoint, "best_model_score", None)
        if cfg.test:
            # Test the best checkpoint, not the last weights; fall back when none was saved.
            trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    finally:
        _finish_wandb(loggers)

    metrics["best_model_path"] = best_path
    metrics["best_model_score"] = None if best_score is None else float(best_score)
    _report(metrics, cfg.get("optimized_metric"))
    return metrics


def _start_from(cfg: DictConfig) -> dict[str, Any]:
    """`ckpt_from=`: the run starts from a trained checkpoint's weights (a new run, unlike
    `ckpt_path=`, which resumes one). Its network config replaces `model.net`, so the run
    config stored in this run's checkpoints describes the network they hold; only
    `model.net.restore=true` is kept, to add a restoration head to a trained detector."""
    if cfg.get("ckpt_path"):
        raise ConfigError(
            "give ckpt_from= (start a new run from a checkpoint's weights) or ckpt_path= (resume "
            "that run where it stopped), not both"
        )
    ckpt = read_checkpoint(cfg.ckpt_from)
    stored = ckpt.get("wmseg", {}).get("config", {}).get("model", {}).get("net")
    if not isinstance(stored, dict):
        raise ConfigError(f"ckpt_from={cfg.ckpt_from}: the checkpoint holds no network config")
    restore = bool(cfg.model.net.get("restore", False))
    with open_dict(cfg):
        cfg.model.net = trained_net_config(stored, cfg.ckpt_from)
        if restore:
            cfg.model.net.restore = True
    return ckpt


def _finish_wandb(loggers: list) -> None:
    # Close the W&B run here, not at interpreter exit: multirun jobs share one process
    # (each needs its own run), and at exit the W&B service may be gone before it flushes.
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


@rank_zero_only
def _report(metrics: dict[str, Any], monitored: str | None) -> None:
    score = metrics["best_model_score"]
    shown = "n/a" if score is None else f"{score:.4f}"
    print(f"Best checkpoint: {metrics['best_model_path'] or '(none saved)'}")
    print(f"Best {monitored or 'score'}: {shown}")
