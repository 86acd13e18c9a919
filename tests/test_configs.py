"""Every config file composes, and every CPU-runnable one instantiates."""

from pathlib import Path

import hydra
import lightning as L
import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF
from wmseg.tasks.checks import check_run_config
from wmseg.tasks.instantiate import instantiate_callbacks, instantiate_loggers


def _resolve(cfg) -> dict:
    """Every interpolation of the run config resolves (the hydra node is Hydra's own)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("name", _options("data"))
def test_data_configs_instantiate(make_cfg, name, pairs_folder):
    extra = {"folder": [f"data.root={pairs_folder}"], "mix": [f"data.real_roots=[{pairs_folder}]"]}.get(
        name, []
    )
    dm = hydra.utils.instantiate(make_cfg(f"data={name}", *extra, tiny=False).data)
    assert isinstance(dm, L.LightningDataModule)
    sets = dm.eval_sets()
    first = sets[0][0]
    assert len(list(sets[0])) == len(sets[0])  # iteration ends
    assert first.image.dtype == first.mask.dtype == np.uint8
    assert first.image.shape[:2] == first.mask.shape


@pytest.mark.parametrize("name", _options("model"))
def test_model_configs_instantiate(make_cfg, name):
    cfg = make_cfg(f"model={name}", "model.net.encoder_weights=null")
    model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model, L.LightningModule)
    assert model.optimizer_factory.func.__name__ == "AdamW"


@pytest.mark.parametrize("name", _options("callbacks"))
def test_callback_configs_instantiate(make_cfg, name):
    extra = {"distillation": ["callbacks.distillation.teacher=teacher.ckpt"]}.get(name, [])
    cfg = make_cfg(f"callbacks={name}", *extra, tiny=False)
    callbacks = instantiate_callbacks(cfg.callbacks)
    assert callbacks and all(isinstance(c, L.Callback) for c in callbacks)


@pytest.mark.parametrize("name", _options("logger"))
def test_logger_configs_instantiate(make_cfg, name, tmp_path):
    cfg = make_cfg(f"logger={name}")
    (logger,) = instantiate_loggers(cfg.logger)
    assert Path(logger.save_dir).resolve().is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize("name", _options("trainer"))
def test_trainer_configs_compose(make_cfg, name):
    cfg = make_cfg(f"trainer={name}")
    _resolve(cfg)
    expected = {"gpu": "16-mixed", "ddp": "16-mixed", "deepspeed": "16-mixed"}.get(name, "32-true")
    assert cfg.trainer.precision == expected
    if cfg.trainer.accelerator in ("cpu", "auto"):
        trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert isinstance(trainer, L.Trainer)
        assert trainer.num_devices == (2 if name == "ddp_sim" else 1)


@pytest.mark.parametrize("group", ["experiment", "debug", "hparams_search"])
def test_global_configs_compose(make_cfg, group):
    for name in _options(group):
        cfg = make_cfg(f"{group}={name}")
        # A recipe may choose the monitored metric; everything still reads the one name.
        callbacks = (cfg.get("callbacks") or {}).values()
        monitors = {c.monitor for c in callbacks if c and c.get("monitor")}  # last.ckpt's is null
        assert monitors <= {cfg.monitor} and cfg.optimized_metric == cfg.monitor
        check_run_config(cfg)  # e.g. val/best_f1 only with a calibrating model
        _resolve(cfg)


def test_monitored_metric_is_one_name(make_cfg):
    cfg = make_cfg("monitor=val/f1", "hparams_search=optuna")
    assert cfg.callbacks.model_checkpoint.monitor == "val/f1"
    assert cfg.callbacks.early_stopping.monitor == "val/f1"
    assert cfg.optimized_metric == "val/f1"
