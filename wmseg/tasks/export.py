"""The export task: checkpoint -> model.onnx (+ model.int8.onnx, model.fp16.onnx) + report."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from wmseg.atomic import check_writable, write_text_atomic
from wmseg.export.onnx import contract_metadata, convert_fp16, export_onnx
from wmseg.export.quantize import quantize_int8
from wmseg.inference import OnnxPredictor, load_model
from wmseg.tasks.checks import check_export_config
from wmseg.tasks.run_data import stored_data_module


def _batches(dataset, n_batches: int, batch_size: int, offset: int = 0) -> list[np.ndarray]:
    out = []
    for b in range(n_batches):
        idx = [(offset + b * batch_size + i) % len(dataset) for i in range(batch_size)]
        out.append(torch.stack([dataset[i]["image"] for i in idx]).numpy())
    return out


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _mean_mask_iou(masks: np.ndarray, reference: np.ndarray) -> float:
    """Mean over images of each mask's IoU with its reference mask."""
    return float(np.mean([_mask_iou(m, r) for m, r in zip(masks, reference, strict=True)]))


def _images_per_s(fn, batch: np.ndarray, seconds: float = 2.0) -> float:
    fn(batch)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(batch)
        n += 1
    return n * len(batch) / (time.perf_counter() - t0)


def export(cfg: DictConfig) -> dict[str, Any]:
    check_export_config(cfg)
    out_dir = check_writable(cfg.paths.output_dir, "paths.output_dir")
    loaded = load_model(cfg.ckpt)
    meta = contract_metadata(loaded.threshold, int(loaded.net.stride), loaded.config["model"]["net"])
    size = int(cfg.sample_size)
    # dynamic=false fixes the graph at (1, 3, sample_size, sample_size): the checks below then
    # run one image at a time, on the synthetic splits rendered at that size.
    dynamic = bool(cfg.dynamic)
    step = 8 if dynamic else 1
    opts = {"opset": cfg.opset, "sample_hw": (size, size), "dynamic": dynamic}
    # Built (and checked) before any file is written: calibration and the mask checks use it.
    dm = stored_data_module(
        loaded.config, loaded.path, "export (INT8 calibration and checks)", None if dynamic else size, True
    )
    dm.setup("fit")
    fp32_path = export_onnx(loaded.net, out_dir / "model.onnx", meta, **opts)
    files = {"model.onnx": fp32_path}
    if cfg.fp16:
        files["model.fp16.onnx"] = convert_fp16(fp32_path, out_dir / "model.fp16.onnx")

    if cfg.int8.enabled:
        calib = _batches(
            dm.datasets["train"],
            cfg.int8.calibration_batches * (1 if dynamic else cfg.int8.batch_size),
            cfg.int8.batch_size if dynamic else 1,
        )
        files["model.int8.onnx"] = quantize_int8(
            fp32_path,
            out_dir / "model.int8.onnx",
            calib,
            method=cfg.int8.method,
            per_channel=cfg.int8.per_channel,
            activation_type=cfg.int8.activation_type,
            weight_type=cfg.int8.weight_type,
            reduce_range=cfg.int8.reduce_range,
            exclude_ops=list(cfg.int8.exclude_ops),
            keep_float=list(cfg.int8.keep_float),
        )

    # Parity at a shape other than the export shape.
    stride = int(loaded.net.stride)
    ph, pw = (cfg.parity.height, cfg.parity.width) if dynamic else (size, size)
    if dynamic and (ph % stride or pw % stride or (ph, pw) == (size, size)):
        raise ValueError(f"parity.height/width must be multiples of {stride} and differ from sample_size")
    x = torch.rand(3 if dynamic else 1, 3, ph, pw, generator=torch.Generator().manual_seed(0)).numpy()
    with torch.inference_mode():
        ref = loaded.net(torch.from_numpy(x)).numpy()
    # A row per file, run as is; the INT8 file once more without U8S8 saturation (x86 CPUs
    # without VNNI): where that row agrees with fp32 better, this CPU's int8 kernels cost the rest.
    rows = {name: (path, False) for name, path in files.items()}
    if cfg.int8.enabled:
        rows[PRECISE] = (files["model.int8.onnx"], True)
    sessions = {
        name: OnnxPredictor(path, threads=cfg.threads, x64_quant_precision=precise)
        for name, (path, precise) in rows.items()
    }
    parity = {name: float(np.abs(s.logits(x) - ref).max()) for name, s in sessions.items()}

    # Masks on the synthetic validation split: each model against truth and against fp32.
    val = dm.datasets["val"]
    n = len(val) if cfg.parity.val_samples is None else min(int(cfg.parity.val_samples), len(val))
    items = [val[i] for i in range(n)]
    images = torch.stack([it["image"] for it in items]).numpy()
    truth = torch.stack([it["mask"] for it in items]).numpy()[:, 0] > 0.5
    masks = {"torch": ref_mask(loaded.net, images, loaded.threshold)}
    masks |= {
        name: np.concatenate([s.logits(images[i : i + step]) for i in range(0, n, step)])[:, 0]
        > _logit(loaded.threshold)
        for name, s in sessions.items()
    }
    val_iou = {name: _mask_iou(m, truth) for name, m in masks.items()}
    agreement = {
        name: _mean_mask_iou(m, masks["model.onnx"]) for name, m in masks.items() if name != "model.onnx"
    }

    batch = images[:1]
    speed = {"torch": _images_per_s(lambda b: ref_logits(loaded.net, b), batch)}
    speed |= {name: _images_per_s(s.logits, batch) for name, s in sessions.items()}

    report = {
        "checkpoint": str(loaded.path),
        "threshold": loaded.threshold,
        "files": {name: {"path": str(p), "bytes": p.stat().st_size} for name, p in files.items()},
        "parity_max_abs_logit_diff": parity,
        "parity_shape": list(x.shape),
        "dynamic": dynamic,
        "val_samples": n,
        "val_iou_vs_truth": val_iou,
        "mean_mask_iou_vs_fp32_onnx": agreement,
        "int8_val_iou_drop": val_iou["model.onnx"] - val_iou["model.int8.onnx"] if cfg.int8.enabled else None,
        "speed_img_per_s_batch1": {"size": [size, size], **speed},
        "int8": OmegaConf.to_container(cfg.int8),
    }
    write_text_atomic(out_dir / "export_report.json", json.dumps(report, indent=2))
    lines = [
        f"# Export of {loaded.path}",
        "",
        "| file | MB | max abs logit diff | val IoU | mask IoU vs fp32 | img/s (batch 1) |",
        "|---|---|---|---|---|---|",
        f"| torch eager | - | - | {val_iou['torch']:.4f} | - | {speed['torch']:.1f} |",
    ]
    for name, (p, _) in rows.items():
        lines.append(
            f"| {name} | {p.stat().st_size / 1e6:.1f} | {parity[name]:.2e} | {val_iou[name]:.4f} | "
            f"{agreement.get(name, 1.0):.4f} | {speed[name]:.1f} |"
        )
    table = "\n".join(lines) + "\n"
    write_text_atomic(out_dir / "export_report.md", table)
    print(table)
    return report


# The INT8 model run with ONNX Runtime's session.x64quantprecision (see OnnxPredictor).
PRECISE = "model.int8.onnx, x64_quant_precision"


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


@torch.inference_mode()
def ref_logits(net: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    return net(torch.from_numpy(batch)).numpy()


def ref_mask(net: torch.nn.Module, images: np.ndarray, threshold: float) -> np.ndarray:
    logits = np.concatenate([ref_logits(net, images[i : i + 8]) for i in range(0, len(images), 8)])
    return logits[:, 0] > _logit(threshold)
