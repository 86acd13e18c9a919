"""Export a network to ONNX under the wmseg contract. No Lightning.

Contract: input `image` float32 (N, 3, H, W) RGB in [0, 1] (N, H, W dynamic; H, W
multiples of the stride); output `logits` float32 (N, 1, H, W) before the sigmoid;
normalisation inside the graph; metadata_props `threshold`, `stride`,
`wmseg_version`, `model_config` (YAML).

A network with a restoration head (`model.net.restore=true`) adds two outputs after
`logits`: `restored` float32 (N, 3, H, W) in [0, 1], the photo with the mark un-blended
(meaningful inside the mask only), and `opacity` float32 (N, 1, H, W) in [0, 0.95], the
mark's opacity (where it is near the top, nothing is left to recover: inpaint there);
metadata_props `outputs` lists them all. Readers that ask for `logits` by name work on
both kinds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir
import torch
import yaml
from torch import nn

import wmseg
from wmseg.atomic import write_atomic
from wmseg.models.restoration import has_restore_head, restoration_outputs

log = logging.getLogger(__name__)


def contract_metadata(threshold: float, stride: int, model_config: dict[str, Any]) -> dict[str, str]:
    return {
        "threshold": f"{threshold:.6g}",
        "stride": str(stride),
        "wmseg_version": wmseg.__version__,
        "model_config": yaml.safe_dump(model_config, sort_keys=False),
    }


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)


RESTORE_OUTPUTS = ("logits", "restored", "opacity")


class RestoringGraph(nn.Module):
    """A restoration network as the exported graph: image -> (logits, restored, opacity)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return restoration_outputs(self.net, image)


def output_names(net: nn.Module) -> tuple[str, ...]:
    """The graph outputs `net` exports to."""
    return RESTORE_OUTPUTS if has_restore_head(net) else ("logits",)


def export_onnx(
    net: nn.Module,
    path: str | Path,
    metadata: dict[str, str],
    opset: int = 18,
    sample_hw: tuple[int, int] = (256, 256),
    dynamic: bool = True,
) -> Path:
    """Write `net` to `path` (atomically) and check it; returns the path."""
    net = net.eval().float().cpu()
    stride = int(metadata.get("stride", 32))
    if sample_hw[0] % stride or sample_hw[1] % stride:
        raise ValueError(f"export sample size {sample_hw} must be a multiple of the stride {stride}")
    sample = torch.rand(2 if dynamic else 1, 3, *sample_hw)
    outputs = output_names(net)
    if len(outputs) > 1:
        net = RestoringGraph(net).eval()
        metadata = {**metadata, "outputs": ",".join(outputs)}
    dims = None
    if dynamic:
        auto = torch.export.Dim.AUTO
        dims = {"image": {0: auto, 2: auto, 3: auto}}
    program = torch.onnx.export(
        net,
        (sample,),
        input_names=["image"],
        output_names=list(outputs),
        opset_version=opset,
        dynamo=True,
        dynamic_shapes=dims,
        optimize=True,
        verify=False,
    )
    model = program.model_proto
    set_metadata(model, metadata)
    onnx.checker.check_model(model)
    return write_atomic(path, lambda tmp: onnx.save(model, tmp))


def convert_fp16(fp32_path: str | Path, fp16_path: str | Path) -> Path:
    """Write an fp16 copy of an exported fp32 model (for GPUs), keeping its metadata.

    Converting the graph, rather than tracing the network again, halves the export time
    and guarantees both files describe the same graph.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    metadata = {p.key: p.value for p in model.metadata_props}
    # fp16 inside, float32 at the edges: the contract's dtypes hold.
    model = convert_float_to_float16(model, keep_io_types=True)
    # The converter adds its input Casts after the nodes that read them: re-sort.
    graph = ir.from_proto(model)
    graph.graph.sort()
    model = ir.to_proto(graph)
    set_metadata(model, metadata)
    onnx.checker.check_model(model)
    return write_atomic(fp16_path, lambda tmp: onnx.save(model, tmp))


def read_metadata(path: str | Path) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
