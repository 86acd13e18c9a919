"""Checks of single config values, shared by every command: each raises a ConfigError
naming the key and what to use. No Hydra, no Lightning."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from wmseg.errors import ConfigError


def config_value(cfg: DictConfig, key: str) -> object:
    """The value at dotted `key`, or None when absent."""
    return OmegaConf.select(cfg, key, default=None)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def require_bool(cfg: DictConfig, key: str) -> None:
    value = config_value(cfg, key)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: use true or false")


def require_int(cfg: DictConfig, key: str, minimum: int, nullable: bool = True) -> None:
    value = config_value(cfg, key)
    if value is None and nullable:
        return
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        also = " or null" if nullable else ""
        raise ConfigError(f"{key}={value!r}: use a whole number >= {minimum}{also}")


def require_probability(cfg: DictConfig, key: str) -> None:
    value = config_value(cfg, key)
    if value is not None and not (is_number(value) and 0.0 < value < 1.0):
        raise ConfigError(f"{key}={value!r}: use a number between 0 and 1 (exclusive), or null")


def require_device(cfg: DictConfig, key: str = "device") -> None:
    import torch

    value = config_value(cfg, key)
    if value is None or value == "cpu":
        return
    text = str(value)
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={text}: no CUDA GPU is available here; use {key}=cpu or {key}=null")
        if ":" in text and int(text[5:]) >= torch.cuda.device_count():
            raise ConfigError(f"{key}={text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return
    raise ConfigError(f"{key}={text}: use cpu, cuda, cuda:<index>, or null (cuda when available)")
