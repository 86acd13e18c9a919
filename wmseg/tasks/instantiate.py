"""Build lists of callbacks and loggers from their Hydra config groups."""

from __future__ import annotations

import logging

import hydra
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def _instantiate_group(cfg: DictConfig | None, kind: str) -> list:
    out = []
    for name, conf in (cfg or {}).items():
        if conf is None:  # `callbacks.early_stopping=null` switches one off
            continue
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            raise ValueError(f"{kind}.{name} needs a `_target_` naming its class")
        log.info("Instantiating %s <%s>", kind, conf._target_)
        out.append(hydra.utils.instantiate(conf))
    return out


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    return _instantiate_group(cfg, "callbacks")


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return _instantiate_group(cfg, "logger")
