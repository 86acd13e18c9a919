"""Build objects from configs read out of files (checkpoints, ONNX metadata) without
letting the file run code.

A stored config is plain data. Before anything is built, every `_target_` at every
depth must resolve to a class on an explicit allowlist: the real object is compared,
not its name, so a dotted chain through an allowed module (`wmseg.models.unet.torch.os.system`)
is refused. Only modules of the allowlist's own packages are ever imported while
resolving, interpolations (`${...}`, which OmegaConf would evaluate) are refused, and so
are `_partial_` factories and values that are not plain data. No Lightning.

Example:
    >>> net = safe_instantiate({"_target_": "wmseg.models.WatermarkUnet",
    ...     "encoder_name": "resnet18", "decoder_channels": [8, 8, 8, 8, 8]}, NETWORK, "x.ckpt")
    >>> safe_instantiate({"_target_": "os.system", "_args_": ["ls"]}, NETWORK, "x.ckpt")
    Traceback (most recent call last):
    ...
    wmseg.errors.CheckpointError: x.ckpt: _target_ 'os.system' (at the top level) ...
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from wmseg.errors import CheckpointError

# Hydra's keys that may appear in a stored config; `_partial_` would hand back a factory.
_HYDRA_KEYS = {"_target_", "_args_", "_convert_", "_recursive_"}
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_PLAIN = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Allowlist:
    """The classes a stored config may name, for one kind of object."""

    what: str  # "a network", "a data module": for messages
    packages: tuple[str, ...]  # the only top-level packages imported while resolving
    classes: Callable[[], Iterable[type]]  # imported on first use

    def allows(self, obj: object) -> bool:
        return any(obj is c for c in self.classes())


def _network_classes() -> tuple[type, ...]:
    from wmseg.models.unet import WatermarkUnet

    return (WatermarkUnet,)


def _data_classes() -> tuple[type, ...]:
    from wmseg.data.splits import FolderSplits, SyntheticSplits
    from wmseg.synth import SynthConfig

    return (SyntheticSplits, FolderSplits, SynthConfig)


NETWORK = Allowlist("a network", ("wmseg",), _network_classes)
# A stored data config is read as its splits (`wmseg.data.splits.splits_config`): the
# loader, cache and augmentation keys are dropped unbuilt, the data module is never built.
DATA = Allowlist("the splits of a data config or a synthesis config", ("wmseg",), _data_classes)


def _in_packages(module: ModuleType, packages: tuple[str, ...]) -> bool:
    return any(module.__name__ == p or module.__name__.startswith(p + ".") for p in packages)


def resolve_target(target: object, allowlist: Allowlist, source: str, where: str) -> object:
    """The object `target` names, if `allowlist` allows it; else CheckpointError."""

    def refuse(why: str) -> CheckpointError:
        allowed = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in allowlist.classes())
        return CheckpointError(
            f"{source}: _target_ {target!r} ({where}) {why}; a stored config may only name "
            f"{allowlist.what} ({allowed}). Refusing to build it: the file is not a wmseg model "
            "or was tampered with"
        )

    if not isinstance(target, str) or not _DOTTED.fullmatch(target):
        raise refuse("is not a dotted class name")
    parts = target.split(".")
    if parts[0] not in allowlist.packages:
        raise refuse(f"is outside {' and '.join(allowlist.packages)}")
    try:
        obj: object = importlib.import_module(parts[0])
        for i, part in enumerate(parts[1:], start=2):
            if isinstance(obj, ModuleType) and not hasattr(obj, part):
                # A submodule not imported yet: only ever one of the allowed packages'.
                obj = importlib.import_module(".".join(parts[:i]))
            else:
                obj = getattr(obj, part)
            if isinstance(obj, ModuleType) and not _in_packages(obj, allowlist.packages):
                raise refuse(f"reaches the module {obj.__name__}, outside the allowed packages")
    except (ImportError, AttributeError) as err:
        raise refuse(f"does not resolve ({err})") from err
    if not allowlist.allows(obj):
        raise refuse("is not on the allowlist")
    return obj


def check_config(config: object, allowlist: Allowlist, source: str, where: str = "") -> None:
    """Raise CheckpointError unless `config` is plain data whose every `_target_`, at every
    depth, names a class on `allowlist`."""
    here = where or "at the top level"
    if isinstance(config, dict):
        for key in config:
            if not isinstance(key, str):
                raise CheckpointError(f"{source}: stored config key {key!r} ({here}) is not a string")
            if key.startswith("_") and key.endswith("_") and key not in _HYDRA_KEYS:
                raise CheckpointError(
                    f"{source}: stored config key {key} ({here}) is not allowed in a stored config"
                )
        if "_target_" in config:
            resolve_target(config["_target_"], allowlist, source, here)
        for key, value in config.items():
            check_config(value, allowlist, source, f"{where}.{key}" if where else key)
    elif isinstance(config, list | tuple):
        for i, value in enumerate(config):
            check_config(value, allowlist, source, f"{where}[{i}]")
    elif isinstance(config, str):
        if "${" in config:
            raise CheckpointError(
                f"{source}: stored config value {config!r} ({here}) is an interpolation; stored "
                "configs are plain data (resolved when saved), so it is refused"
            )
    elif not isinstance(config, _PLAIN):
        raise CheckpointError(
            f"{source}: stored config value ({here}) is a {type(config).__name__}, not plain data"
        )


def safe_instantiate(config: dict[str, Any], allowlist: Allowlist, source: str, where: str = "") -> Any:
    """`hydra.utils.instantiate(config)` after `check_config` passed; the top-level
    `_target_` is required."""
    if not isinstance(config, dict) or "_target_" not in config:
        raise CheckpointError(f"{source}: stored config {where or ''} names no class (_target_) to build")
    check_config(config, allowlist, source, where)
    import hydra
    from omegaconf import OmegaConf

    return hydra.utils.instantiate(OmegaConf.create(config))
