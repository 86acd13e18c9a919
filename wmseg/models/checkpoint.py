"""Rebuild a trained network from a checkpoint: its stored config + its state dict.

Loading never runs code from the file: `torch.load(weights_only=True)` reads tensors and
plain data only, and the stored network config is built by `wmseg.safe_build`, which
refuses any `_target_` (at any depth) that is not wmseg's own network class.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wmseg.errors import CheckpointError
from wmseg.models.compression import ARCHITECTURE, apply_architecture, check_architecture
from wmseg.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, input_statistics
from wmseg.safe_build import NETWORK, check_config, safe_instantiate

__all__ = [
    "CheckpointError",
    "LoadedModel",
    "build_net",
    "load_model",
    "load_weights",
    "read_checkpoint",
    "trained_net_config",
]


@dataclass
class LoadedModel:
    net: nn.Module
    threshold: float
    config: dict[str, Any]  # the training run's resolved config
    version: str
    path: Path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found: pass ckpt=<path to a .ckpt from train.py>")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or not a checkpoint?): {err}"
        ) from err
    if not isinstance(ckpt, dict) or "wmseg" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} is not a wmseg checkpoint (no 'wmseg' config inside): use one from train.py"
        )
    return ckpt


def trained_net_config(net_config: dict[str, Any], source: str | Path = "config") -> dict[str, Any]:
    """A stored network config as the one to rebuild the trained network from: checked
    against wmseg's network allowlist, no initial weights (the trained ones replace
    them), the input statistics it was trained with written out."""
    if not isinstance(net_config, dict) or "_target_" not in net_config:
        raise CheckpointError(f"{source}: the network config (model.net) names no class (_target_)")
    check_config(net_config, NETWORK, str(source), "model.net")
    # The input statistics the net was trained with, fixed before the initial weights'
    # name is dropped. A config without the keys predates them: ImageNet's, as then.
    if "mean" in net_config:
        weights, given_mean, given_std = (net_config.get(k) for k in ("encoder_weights", "mean", "std"))
        mean, std = input_statistics(weights, given_mean, given_std)
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    net_config = {**net_config, "encoder_weights": None, "mean": list(mean), "std": list(std)}
    if "freeze_encoder_bn" in net_config:
        net_config["freeze_encoder_bn"] = False  # a training option for pretrained weights
    return net_config


def build_net(net_config: dict[str, Any], source: str | Path = "config") -> nn.Module:
    """The network of `net_config` (a `model.net` config), built only if every `_target_`
    in it is on wmseg's network allowlist; no initial weights are loaded."""
    return safe_instantiate(trained_net_config(net_config, source), NETWORK, str(source), "model.net")


def load_weights(
    net: nn.Module,
    ckpt: dict[str, Any],
    path: str | Path,
    asked: str | None = None,
    new_heads: tuple[str, ...] = (),
) -> nn.Module:
    """Checkpoint `ckpt`'s network weights (read from `path`) loaded into `net`, in place:
    a channel-pruned checkpoint first gives its layers the stored channel counts. A
    mismatch raises CheckpointError naming the differing tensors; `asked` names the
    encoder of the config `net` was built from, for that message. Tensors of `net` under
    the prefixes `new_heads` may be missing from the checkpoint (they keep their initial
    values: a head added for fine-tuning)."""
    if ARCHITECTURE in ckpt:
        # Layers of another network (a model override): the comparison below names what differs.
        with contextlib.suppress(ValueError):
            apply_architecture(net, check_architecture(ckpt[ARCHITECTURE], str(path)), str(path))
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    own = net.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not (new_heads and k.startswith(new_heads)))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape differs", sorted(wrong)),
            )
            if keys
        )
        trained = ckpt.get("wmseg", {}).get("config", {}).get("model", {}).get("net", {})
        raise CheckpointError(
            f"checkpoint {path} does not match the model config "
            f"(trained as {trained.get('encoder_name')}, asked for {asked or trained.get('encoder_name')}): "
            f"{detail}. Drop the model override to use the config stored in the checkpoint."
        )
    net.load_state_dict(state, strict=not new_heads)
    return net


def load_model(path: str | Path, net_config: dict[str, Any] | None = None) -> LoadedModel:
    """The network of checkpoint `path` in eval mode, on the CPU.

    `net_config` (a `model.net` config) overrides the stored one; a mismatch with the
    weights raises CheckpointError naming the differing tensors.
    """
    path = Path(path).expanduser()
    ckpt = read_checkpoint(path)
    meta = ckpt["wmseg"]
    try:
        stored = meta["config"]["model"]["net"]
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path} holds no network config (wmseg.config.model.net)") from err
    net = build_net(net_config or stored, path)
    load_weights(net, ckpt, path, (net_config or stored).get("encoder_name"))
    threshold = float(ckpt.get("hyper_parameters", {}).get("threshold", 0.5))
    return LoadedModel(net.eval(), threshold, meta["config"], str(meta.get("version", "?")), path)


def slim_checkpoint(path: str | Path, out: str | Path) -> Path:
    """A copy of checkpoint `path` with only what inference and export read: the network's
    weights in fp16 (about half the size, and no optimizer, EMA or loop state), its
    architecture, the training config and the threshold. `load_model` and `export.py`
    take it like the full checkpoint; `ckpt_from` fine-tunes from it."""
    from wmseg.atomic import write_atomic

    path = Path(path).expanduser()
    ckpt = read_checkpoint(path)
    net = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.items()}
    slim = {"wmseg": ckpt["wmseg"], "state_dict": state}
    slim["hyper_parameters"] = {"threshold": float(ckpt.get("hyper_parameters", {}).get("threshold", 0.5))}
    if ARCHITECTURE in ckpt:
        slim[ARCHITECTURE] = ckpt[ARCHITECTURE]
    return write_atomic(out, lambda tmp: torch.save(slim, tmp))
