"""One interface over a PyTorch network and an ONNX Runtime session: batch in, logits out.

A model with a restoration head (`model.net.restore=true`) also has `restores` true and
`restore(batch)`: the logits, the photo un-blended from the mark and the mark's opacity,
stacked as (N, 5, H, W) (wmseg.export.onnx documents the outputs)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import yaml

from wmseg.models.checkpoint import CheckpointError, load_model
from wmseg.models.restoration import has_restore_head, restoration_outputs
from wmseg.safe_build import NETWORK, check_config


class Predictor(Protocol):
    threshold: float
    stride: int
    name: str

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) RGB in [0, 1], H and W multiples of `stride` -> (N, 1, H, W)."""
        ...


# The channels of `restore(batch)`: logits, the restored photo (RGB in [0, 1]), opacity.
RESTORE_CHANNELS = 5


def restores(predictor: object) -> bool:
    """Whether `predictor` has the restoration outputs (`restore(batch)`)."""
    return bool(getattr(predictor, "restores", False))


class TorchPredictor:
    def __init__(
        self, ckpt: str | Path, device: str = "cpu", net_config: dict | None = None, fp16: bool = False
    ) -> None:
        """`fp16`: autocast to float16 on a CUDA device (outputs stay float32)."""
        loaded = load_model(ckpt, net_config)
        self.net = loaded.net.to(device)
        self.device = device
        self.fp16 = fp16 and str(device).startswith("cuda")
        self.threshold = loaded.threshold
        self.stride = int(getattr(loaded.net, "stride", 32))
        self.config = loaded.config
        self.name = f"torch:{loaded.path}"
        self.restores = has_restore_head(loaded.net)

    @torch.inference_mode()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        with torch.autocast("cuda", torch.float16, enabled=self.fp16):
            return self.net(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    @torch.inference_mode()
    def restore(self, batch: np.ndarray) -> np.ndarray:
        """(N, 5, H, W): logits, the restored photo (RGB), the mark's opacity."""
        image = torch.from_numpy(batch).to(self.device)
        with torch.autocast("cuda", torch.float16, enabled=self.fp16):
            outputs = restoration_outputs(self.net, image)
        return torch.cat([o.float() for o in outputs], 1).cpu().numpy()


class OnnxPredictor:
    """An exported model; threshold and stride come from its metadata."""

    def __init__(
        self,
        path: str | Path,
        providers: list[str] | None = None,
        threads: int = 0,
        x64_quant_precision: bool = False,
    ) -> None:
        """`x64_quant_precision`: ONNX Runtime's `session.x64quantprecision`. On x86 CPUs
        without VNNI its U8S8 int8 kernels can saturate (int16 pair sums); this runs the
        affected layers as U8U8 instead: INT8 masks as accurate as the quantization
        allows, at about fp32 speed (experiments/records/export_int8.md)."""
        import onnxruntime as ort

        path = Path(path).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"ONNX model {path} not found: pass onnx=<path to a model.onnx from export.py>"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        if x64_quant_precision:
            options.add_session_config_entry("session.x64quantprecision", "1")
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=providers or ort.get_available_providers()
            )
        except Exception as err:
            raise CheckpointError(f"cannot load ONNX model {path} (truncated or not ONNX?): {err}") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        self.threshold, self.stride, self.model_config = read_contract(meta, path)
        self.metadata = meta
        self.name = f"onnx:{path}"
        names = {o.name for o in self.session.get_outputs()}
        self.restores = {"restored", "opacity"} <= names

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"image": np.ascontiguousarray(batch, np.float32)})[0]

    def restore(self, batch: np.ndarray) -> np.ndarray:
        """(N, 5, H, W): logits, the restored photo (RGB), the mark's opacity."""
        outputs = self.session.run(
            ["logits", "restored", "opacity"], {"image": np.ascontiguousarray(batch, np.float32)}
        )
        return np.concatenate(outputs, axis=1)


def read_contract(meta: dict[str, str], path: Path) -> tuple[float, int, dict | None]:
    """(threshold, stride, model config) from an ONNX file's wmseg metadata, each checked:
    CheckpointError naming the file and the key otherwise. The model config is data only:
    parsed as plain YAML and checked against the network allowlist, never built."""
    if "threshold" not in meta:
        raise CheckpointError(f"{path} has no wmseg metadata (threshold, stride): export it with export.py")
    try:
        threshold = float(meta["threshold"])
    except ValueError:
        threshold = float("nan")
    if not 0.0 < threshold < 1.0:  # also false for NaN
        raise CheckpointError(
            f"{path}: metadata threshold={meta['threshold']!r} is not a number between 0 and 1; "
            "re-export the model with export.py"
        )
    raw_stride = meta.get("stride", "32")
    stride = int(raw_stride) if raw_stride.isdigit() else 0
    if stride < 1 or stride & (stride - 1):
        raise CheckpointError(
            f"{path}: metadata stride={raw_stride!r} is not a power of two >= 1 (the network's "
            "input size multiple); re-export the model with export.py"
        )
    model_config = None
    if "model_config" in meta:
        try:
            model_config = yaml.safe_load(meta["model_config"])
        except yaml.YAMLError as err:
            raise CheckpointError(f"{path}: metadata model_config is not YAML ({err})") from err
        check_config(model_config, NETWORK, str(path), "model_config")
    return threshold, stride, model_config


class FlipAveraged:
    """Test-time augmentation around any predictor: the mean logits of each image and its
    left-right mirror (mirrored back). Marks read left to right, scenes mostly do not, so
    a response that holds under the flip is more likely a mark. Twice the compute."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.threshold, self.stride = predictor.threshold, predictor.stride
        self.name = f"{predictor.name} (flip-averaged)"
        self.restores = restores(predictor)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        # Two calls, not one doubled batch: the caller sized `batch` to its pixel budget.
        mirrored = self.predictor.logits(np.ascontiguousarray(batch[..., ::-1]))
        return 0.5 * (self.predictor.logits(batch) + mirrored[..., ::-1])

    def restore(self, batch: np.ndarray) -> np.ndarray:
        mirrored = self.predictor.restore(np.ascontiguousarray(batch[..., ::-1]))
        return 0.5 * (self.predictor.restore(batch) + mirrored[..., ::-1])
