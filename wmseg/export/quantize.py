"""Static INT8 quantization (QDQ) of an exported model with ONNX Runtime. No Lightning."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from wmseg.atomic import write_atomic
from wmseg.export.onnx import set_metadata

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}


def _quant_type(name: str, key: str) -> QuantType:
    if name not in TYPES:
        raise ValueError(f"export.int8.{key}={name!r}: use one of {sorted(TYPES)}")
    return TYPES[name]


# Layers that `keep_float` can name: the first and the last convolution of the graph.
KEEP_FLOAT = ("stem", "head")


def float_nodes(model: onnx.ModelProto, keep_float: Sequence[str]) -> list[str]:
    """Names of the nodes `keep_float` names ("stem": the first Conv, which sees the raw
    image; "head": the last Conv, which writes the logits), in graph order."""
    unknown = sorted(set(keep_float) - set(KEEP_FLOAT))
    if unknown:
        raise ValueError(f"export.int8.keep_float={list(keep_float)}: use any of {list(KEEP_FLOAT)}")
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    if keep_float and not convs:
        raise ValueError("export.int8.keep_float names convolutions, but the model has none")
    picked = {"stem": convs[:1], "head": convs[-1:]}
    return sorted({name for key in keep_float for name in picked[key]}, key=convs.index)


class _Batches(CalibrationDataReader):
    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {"image": np.ascontiguousarray(batch, np.float32)}


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration: Iterable[np.ndarray],
    method: str = "minmax",
    per_channel: bool = True,
    activation_type: str = "uint8",
    exclude_ops: Sequence[str] = (),
    exclude_nodes: Sequence[str] = (),
    weight_type: str = "int8",
    reduce_range: bool = False,
    keep_float: Sequence[str] = (),
) -> Path:
    """Write a static-INT8 QDQ copy of `fp32_path`, calibrated on `calibration` batches.

    U8 activations with S8 per-channel weights ran fastest on AVX2 CPUs (see
    experiments/); `exclude_ops` keeps op types (e.g. "Resize") in float. `reduce_range`
    (7-bit weights) and U8 weights are ONNX Runtime's advice against U8S8's int16
    saturation on CPUs without VNNI. `keep_float` keeps the stem and/or head convolution
    in float (see `float_nodes`).
    """
    if method not in METHODS:
        raise ValueError(f"export.int8.method={method!r}: use one of {sorted(METHODS)}")
    activations, weights = (
        _quant_type(activation_type, "activation_type"),
        _quant_type(weight_type, "weight_type"),
    )
    fp32 = onnx.load(str(fp32_path))
    metadata = {p.key: p.value for p in fp32.metadata_props}
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre))
        ops = sorted({n.op_type for n in graph.graph.node} - set(exclude_ops))
        excluded = list(exclude_nodes) + float_nodes(graph, keep_float)
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(pre),
            str(out),
            _Batches(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=activations,
            weight_type=weights,
            per_channel=per_channel,
            reduce_range=reduce_range,
            calibrate_method=METHODS[method],
            op_types_to_quantize=ops,
            nodes_to_exclude=excluded,
            extra_options={"ActivationSymmetric": activation_type == "int8"},
        )
        model = onnx.load(str(out))
    settings = f"int8 static QDQ, {method}, per_channel={per_channel}, {activation_type}/{weight_type}"
    settings += f", reduce_range={reduce_range}, float={','.join(keep_float) or 'none'}"
    set_metadata(model, {**metadata, "quantization": settings})
    onnx.checker.check_model(model)
    return write_atomic(int8_path, lambda t: onnx.save(model, t))
