"""The export task: checkpoint -> model.onnx (+ model.int8.onnx, model.fp16.onnx) + report.

In steps: check the config and the model, build the files (INT8 calibrated on the run's
own training split), measure them against the torch model (parity, masks, speed),
report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from wmseg.atomic import check_writable, write_text_atomic
from wmseg.errors import ConfigError
from wmseg.export.onnx import contract_metadata, convert_fp16, export_onnx
from wmseg.export.quantize import quantize_int8
from wmseg.inference import LoadedModel, OnnxPredictor, load_model
from wmseg.inference.batching import logit
from wmseg.inference.loading import load_predictor
from wmseg.metrics import mask_iou, mean_mask_iou
from wmseg.models.restoration import has_restore_head, restoration_outputs
from wmseg.tasks.checks import check_export_config
from wmseg.tasks.run_data import stored_splits

# The INT8 model run with ONNX Runtime's session.x64quantprecision (see OnnxPredictor).
PRECISE = "model.int8.onnx, x64_quant_precision"


@dataclass(frozen=True)
class Shapes:
    """The export shape and the parity shape. A dynamic graph is checked at another shape
    than it was traced at, 3 images at a time; a static one (dynamic=false) at its own
    (1, 3, sample_size, sample_size), one image at a time."""

    size: int
    dynamic: bool
    parity: tuple[int, int, int, int]

    @property
    def step(self) -> int:
        return 8 if self.dynamic else 1


def check_shapes(cfg: DictConfig, stride: int) -> Shapes:
    size, dynamic = int(cfg.sample_size), bool(cfg.dynamic)
    if not dynamic:
        return Shapes(size, dynamic, (1, 3, size, size))
    ph, pw = int(cfg.parity.height), int(cfg.parity.width)
    if ph % stride or pw % stride or (ph, pw) == (size, size):
        raise ConfigError(
            f"parity.height/width={ph}x{pw}: give multiples of {stride} (the model's stride) that "
            f"differ from sample_size={size}, so parity is checked at another shape than traced"
        )
    return Shapes(size, dynamic, (3, 3, ph, pw))


def calibration_batches(dataset, n_batches: int, batch_size: int, offset: int = 0) -> list[np.ndarray]:
    """`n_batches` float batches of `batch_size` consecutive samples of `dataset` (wrapping)."""
    out = []
    for b in range(n_batches):
        idx = [(offset + b * batch_size + i) % len(dataset) for i in range(batch_size)]
        out.append(torch.stack([dataset[i]["image"] for i in idx]).numpy())
    return out


def build_files(cfg: DictConfig, loaded: LoadedModel, shapes: Shapes, train_split) -> dict[str, Path]:
    """model.onnx, with fp16=true model.fp16.onnx, with int8.enabled model.int8.onnx
    (static quantization calibrated on `train_split`)."""
    out_dir = Path(cfg.paths.output_dir)
    meta = contract_metadata(loaded.threshold, int(loaded.net.stride), loaded.config["model"]["net"])
    opts = {"opset": cfg.opset, "sample_hw": (shapes.size, shapes.size), "dynamic": shapes.dynamic}
    fp32_path = export_onnx(loaded.net, out_dir / "model.onnx", meta, **opts)
    files = {"model.onnx": fp32_path}
    if cfg.fp16:
        files["model.fp16.onnx"] = convert_fp16(fp32_path, out_dir / "model.fp16.onnx")
    if cfg.int8.enabled:
        int8 = cfg.int8
        # A static graph takes one image a batch: as many batches, as many images in all.
        n_batches = int8.calibration_batches * (1 if shapes.dynamic else int8.batch_size)
        calib = calibration_batches(train_split, n_batches, int8.batch_size if shapes.dynamic else 1)
        files["model.int8.onnx"] = quantize_int8(
            fp32_path,
            out_dir / "model.int8.onnx",
            calib,
            method=int8.method,
            per_channel=int8.per_channel,
            activation_type=int8.activation_type,
            weight_type=int8.weight_type,
            reduce_range=int8.reduce_range,
            exclude_ops=list(int8.exclude_ops),
            keep_float=list(int8.keep_float),
        )
    return files


def sessions_of(cfg: DictConfig, files: dict[str, Path]) -> dict[str, tuple[Path, OnnxPredictor]]:
    """A row per file, run as is; the INT8 file once more without U8S8 saturation (x86 CPUs
    without VNNI): where that row agrees with fp32 better, this CPU's int8 kernels cost the rest."""
    rows = {name: (path, False) for name, path in files.items()}
    if "model.int8.onnx" in files:
        rows[PRECISE] = (files["model.int8.onnx"], True)
    # Checked on the CPU, whatever GPU is here: the report's speeds are the CPU's.
    opened = {
        name: load_predictor(
            path, device="cpu", threads=cfg.threads, x64_quant_precision=precise, warm_up=False
        )
        for name, (path, precise) in rows.items()
    }
    return {name: (path, cast(OnnxPredictor, opened[name])) for name, (path, _) in rows.items()}


@torch.inference_mode()
def ref_logits(net: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    return net(torch.from_numpy(batch)).numpy()


@torch.inference_mode()
def ref_restore(net: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    """(N, 5, H, W) as the exported restoration outputs: logits, restored photo, opacity."""
    return torch.cat(restoration_outputs(net, torch.from_numpy(batch)), 1).numpy()


def ref_mask(net: torch.nn.Module, images: np.ndarray, threshold: float) -> np.ndarray:
    logits = np.concatenate([ref_logits(net, images[i : i + 8]) for i in range(0, len(images), 8)])
    return logits[:, 0] > logit(threshold)


def images_per_s(fn: Callable[[np.ndarray], Any], batch: np.ndarray, seconds: float = 2.0) -> float:
    """Throughput of `fn` on `batch` over about `seconds`, after one warm-up call."""
    fn(batch)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(batch)
        n += 1
    return n * len(batch) / (time.perf_counter() - t0)


def measure(
    cfg: DictConfig, loaded: LoadedModel, shapes: Shapes, sessions: dict[str, OnnxPredictor], val_split
) -> dict[str, Any]:
    """Each file against the torch model: largest logit difference on random input at the
    parity shape; masks on the synthetic validation split against truth and against fp32
    ONNX; images/s at batch 1."""
    x = torch.rand(*shapes.parity, generator=torch.Generator().manual_seed(0)).numpy()
    ref = ref_logits(loaded.net, x)
    parity = {name: float(np.abs(s.logits(x) - ref).max()) for name, s in sessions.items()}
    restoring = {}
    if has_restore_head(loaded.net):
        # The extra outputs of a restoration model (the photo in [0, 1], the opacity).
        ref_r = ref_restore(loaded.net, x)
        outs = {name: s.restore(x) for name, s in sessions.items()}
        diff = {n: np.abs(o - ref_r) for n, o in outs.items()}
        restoring = {
            "parity_max_abs_restored_diff": {n: float(d[:, 1:4].max()) for n, d in diff.items()},
            "parity_max_abs_opacity_diff": {n: float(d[:, 4:].max()) for n, d in diff.items()},
        }

    n = len(val_split) if cfg.parity.val_samples is None else min(int(cfg.parity.val_samples), len(val_split))
    items = [val_split[i] for i in range(n)]
    images = torch.stack([it["image"] for it in items]).numpy()
    truth = torch.stack([it["mask"] for it in items]).numpy()[:, 0] > 0.5
    cut, step = logit(loaded.threshold), shapes.step
    masks = {"torch": ref_mask(loaded.net, images, loaded.threshold)}
    masks |= {
        name: np.concatenate([s.logits(images[i : i + step]) for i in range(0, n, step)])[:, 0] > cut
        for name, s in sessions.items()
    }
    batch = images[:1]
    speed = {"torch": images_per_s(lambda b: ref_logits(loaded.net, b), batch)}
    speed |= {name: images_per_s(s.logits, batch) for name, s in sessions.items()}
    return {
        "parity_max_abs_logit_diff": parity,
        **restoring,
        "parity_shape": list(x.shape),
        "val_samples": n,
        "val_iou_vs_truth": {name: mask_iou(m, truth) for name, m in masks.items()},
        "mean_mask_iou_vs_fp32_onnx": {
            name: mean_mask_iou(m, masks["model.onnx"]) for name, m in masks.items() if name != "model.onnx"
        },
        "speed_img_per_s_batch1": {"size": [shapes.size, shapes.size], **speed},
    }


def report_markdown(report: dict[str, Any], rows: dict[str, Path]) -> str:
    val_iou, speed = report["val_iou_vs_truth"], report["speed_img_per_s_batch1"]
    parity, agreement = report["parity_max_abs_logit_diff"], report["mean_mask_iou_vs_fp32_onnx"]
    lines = [
        f"# Export of {report['checkpoint']}",
        "",
        "| file | MB | max abs logit diff | val IoU | mask IoU vs fp32 | img/s (batch 1) |",
        "|---|---|---|---|---|---|",
        f"| torch eager | - | - | {val_iou['torch']:.4f} | - | {speed['torch']:.1f} |",
    ]
    for name, path in rows.items():
        lines.append(
            f"| {name} | {path.stat().st_size / 1e6:.1f} | {parity[name]:.2e} | {val_iou[name]:.4f} | "
            f"{agreement.get(name, 1.0):.4f} | {speed[name]:.1f} |"
        )
    if "parity_max_abs_restored_diff" in report:
        restored, opacity = report["parity_max_abs_restored_diff"], report["parity_max_abs_opacity_diff"]
        lines += ["", "Restoration outputs against torch (max abs difference, values in [0, 1]):", ""]
        lines += [f"- {name}: restored {restored[name]:.2e}, opacity {opacity[name]:.2e}" for name in rows]
    return "\n".join(lines) + "\n"


def export(cfg: DictConfig) -> dict[str, Any]:
    # Check: the keys, the output folder, the checkpoint and the shapes, before any file is written.
    check_export_config(cfg)
    out_dir = check_writable(cfg.paths.output_dir, "paths.output_dir")
    loaded = load_model(cfg.ckpt)
    shapes = check_shapes(cfg, int(loaded.net.stride))
    # Build: the run's own splits (a static graph takes only its own size), then the files.
    why = "export (INT8 calibration and checks)"
    splits = stored_splits(loaded.config, loaded.path, why, None if shapes.dynamic else shapes.size, True)
    datasets = splits.datasets()
    files = build_files(cfg, loaded, shapes, datasets["train"])
    sessions = sessions_of(cfg, files)
    # Measure and report.
    measured = measure(cfg, loaded, shapes, {name: s for name, (_, s) in sessions.items()}, datasets["val"])
    val_iou = measured["val_iou_vs_truth"]
    report = {
        "checkpoint": str(loaded.path),
        "threshold": loaded.threshold,
        "files": {name: {"path": str(p), "bytes": p.stat().st_size} for name, p in files.items()},
        "dynamic": shapes.dynamic,
        **measured,
        "int8_val_iou_drop": val_iou["model.onnx"] - val_iou["model.int8.onnx"] if cfg.int8.enabled else None,
        "int8": OmegaConf.to_container(cfg.int8),
    }
    write_text_atomic(out_dir / "export_report.json", json.dumps(report, indent=2))
    table = report_markdown(report, {name: path for name, (path, _) in sessions.items()})
    write_text_atomic(out_dir / "export_report.md", table)
    print(table)
    return report
