"""The one way a model is opened for inference, whoever asks (evaluate, export, predict,
serve): an ONNX file, a checkpoint, or the bundled model, on the device one resolver picks."""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from wmseg.errors import CheckpointError, ConfigError
from wmseg.inference.predictor import OnnxPredictor, Predictor, TorchPredictor

log = logging.getLogger(__name__)

BUNDLED_NAMES = {"int8": "model.int8.onnx", "fp32": "model.onnx"}


def bundled_model(precision: str = "int8") -> Path:
    """The path of the model shipped inside the package (see its MODEL_CARD.md)."""
    if precision not in BUNDLED_NAMES:
        raise ConfigError(f"bundled precision {precision!r}: use int8 or fp32")
    path = Path(str(files("wmseg") / "bundled" / BUNDLED_NAMES[precision]))
    if not path.is_file():
        raise CheckpointError(
            f"this install of wmseg has no bundled model ({path} is missing): "
            "pass model=<model.onnx or best.ckpt>"
        )
    return path


def resolve_device(device: str | None) -> str:
    """`device` as torch names it: null or "auto" is the GPU when there is one, else the
    CPU; a CUDA device asked for where there is none is a ConfigError saying so."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: no CUDA GPU is available here; use device=cpu or device=null")
    return str(device)


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime's providers for a resolved `device`: CUDA first where it is asked for
    and the installed onnxruntime has it (a warning where it has not), the CPU always."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            log.warning("onnxruntime has no CUDA provider here (pip install onnxruntime-gpu): running on CPU")
    return providers


def load_predictor(
    model: str | Path | None,
    device: str | None = None,
    threads: int = 0,
    precision: str = "int8",
    fp16: bool = True,
    net_config: dict[str, Any] | None = None,
    x64_quant_precision: bool = False,
    warm_up: bool = True,
    key: str = "model",
) -> Predictor:
    """A predictor for `model` (.onnx or .ckpt; None: the bundled model at `precision`).

    ONNX runs on CUDA when `device` resolves to a GPU, else on the CPU with `threads`
    (0: all cores; `x64_quant_precision`: see OnnxPredictor). A checkpoint runs under
    torch `inference_mode` on the device, with fp16 autocast on a GPU when `fp16`;
    `net_config` (a `model.net` config) overrides the network stored in it. `warm_up`
    runs one tiny batch so the first real one is not the slow one. `key`: the config key
    that named the model, for messages."""
    path = bundled_model(precision) if model is None else Path(str(model)).expanduser()
    if not path.exists():
        raise ConfigError(f"{key}={path} not found: pass an exported model.onnx or a .ckpt from train.py")
    device = resolve_device(device)
    predictor: Predictor
    if path.suffix.lower() == ".onnx":
        predictor = OnnxPredictor(
            path, providers=onnx_providers(device), threads=threads, x64_quant_precision=x64_quant_precision
        )
    elif path.suffix.lower() == ".ckpt":
        predictor = TorchPredictor(path, device=device, net_config=net_config, fp16=fp16)
    else:
        raise CheckpointError(f"{key}={path} is not a wmseg model: give a .onnx from export.py or a .ckpt")
    if warm_up:
        stride = predictor.stride
        predictor.logits(np.zeros((1, 3, 2 * stride, 2 * stride), np.float32))
    return predictor
