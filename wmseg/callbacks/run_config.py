"""Store the run's resolved config and the wmseg version inside every checkpoint."""

from __future__ import annotations

from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

import wmseg


class EmbedRunConfig(L.Callback):
    """Makes checkpoints self-describing: `checkpoint["wmseg"]` = {version, config}.

    Evaluation and export rebuild the network from `config["model"]["net"]` and the
    state dict, never from a pickled object.
    """

    def __init__(self, config: DictConfig | dict[str, Any]) -> None:
        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["wmseg"] = {"version": wmseg.__version__, "config": self.config}
