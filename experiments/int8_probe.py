"""Which INT8 setting keeps the masks: one fp32 model quantized several ways, run fused and simulated.

    python experiments/int8_probe.py CKPT MODEL_ONNX --out OUT [--split test] [--speed]

Calibrates and quantizes with `export.py`'s own `quantize_int8` (32 x 8 images of the
checkpoint's train split, minmax, per-channel weights, QDQ) and measures the mean
per-image mask IoU of each INT8 model against the fp32 one on a synthetic split (`--split`,
val by default), at the checkpoint's threshold, two ways: fused (ONNX Runtime's int8
kernels on this CPU, what export.py reports) and simulated (no graph optimization, so the
Q/DQ pairs run as float arithmetic: the quantization's own error, what a CPU whose int8
kernels do not saturate would give). Variants: U8S8 (the export default), U8S8 with
reduce_range (7-bit weights: no int16 saturation in AVX2's VPMADDUBSW), U8U8, and the
stem / head convolution kept in float (`int8.keep_float`). `--speed` adds each fused
model's images/s at 512 x 512, batch 8, as a ratio to the fp32 ONNX model's in the same
process.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from wmseg.export.quantize import quantize_int8
from wmseg.inference import OnnxPredictor, load_model
from wmseg.tasks.export import _batches, _data_module, _logit, _mean_mask_iou

VARIANTS = {
    "U8S8 (export default)": {},
    "U8S8, reduce_range": {"reduce_range": True},
    "U8U8": {"weight_type": "uint8"},
    "U8S8, stem in float": {"keep_float": ["stem"]},
    "U8S8, stem and head in float": {"keep_float": ["stem", "head"]},
    "U8S8, reduce_range, stem in float": {"reduce_range": True, "keep_float": ["stem"]},
}


def session(path: Path | str, fused: bool = True) -> ort.InferenceSession:
    # fused=False: no graph optimization, so Q/DQ pairs run as float arithmetic (the
    # quantization's own error) instead of this CPU's fused int8 kernels.
    so = ort.SessionOptions()
    if not fused:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def images_per_second(logits: Callable[[np.ndarray], np.ndarray], reps: int = 5) -> float:
    """Median images/s of `logits` on batch-8 512 x 512 inputs after one warm-up."""
    x = np.random.default_rng(0).random((8, 3, 512, 512), dtype=np.float32)
    logits(x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        logits(x)
        times.append(time.perf_counter() - t)
    return 8 / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("onnx", help="the fp32 model.onnx export.py wrote for CKPT")
    ap.add_argument("--out", required=True, help="path stem for .md and .json")
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--speed", action="store_true", help="also images/s at 512 px, batch 8, vs fp32")
    args = ap.parse_args()

    loaded = load_model(args.ckpt)
    dm = _data_module(loaded.config, loaded.path)
    dm.setup("fit")
    calib = _batches(dm.datasets["train"], 32, 8)
    split = dm.datasets[args.split]
    images = torch.stack([split[i]["image"] for i in range(len(split))]).numpy()
    cut = _logit(loaded.threshold)

    def masks(path: Path | str, fused: bool = True) -> np.ndarray:
        s = session(path, fused)
        return (
            np.concatenate([s.run(None, {"image": images[i : i + 8]})[0] for i in range(0, len(images), 8)])[
                :, 0
            ]
            > cut
        )

    ref = masks(args.onnx)

    def speed(path: Path | str) -> float:
        return images_per_second(OnnxPredictor(path, providers=["CPUExecutionProvider"]).logits)

    fp32_speed = speed(args.onnx) if args.speed else None
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in VARIANTS.items():
            out = quantize_int8(args.onnx, Path(tmp) / "int8.onnx", calib, **extra)
            row = {}
            for key, fused in (("fused", True), ("simulated", False)):
                row[key] = _mean_mask_iou(masks(out, fused), ref)
            if fp32_speed:
                row["speed_vs_fp32"] = speed(out) / fp32_speed
            rows[name] = row
            print(name, {k: round(v, 4) for k, v in row.items()}, flush=True)

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("flags")
        ),
        "",
    )
    isa = sorted(f for f in cpu.split() if f.startswith(("avx512", "avx_vnni", "amx")) or f == "avx2")
    report = {
        "checkpoint": str(loaded.path),
        "split": args.split,
        "images": len(images),
        "fp32_images_per_s_512_batch8": fp32_speed,
        "cpu_flags": isa,
        "machine": platform.machine(),
        "mean_mask_iou_vs_fp32": rows,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# INT8 probe: {loaded.path.name}",
        "",
        f"{len(images)} synthetic {args.split} images; CPU flags: {', '.join(isa) or 'none of interest'}; "
        f"ORT {ort.__version__}. Command: `python experiments/int8_probe.py <ckpt> <model.onnx> "
        f"--out {args.out} --split {args.split}{' --speed' if args.speed else ''}`",
        "",
        "Mean mask IoU vs fp32: fused (this CPU's int8 kernels) and simulated (Q/DQ in float)."
        + (
            f" Speed: images/s at 512 px, batch 8, over the fp32 model's ({fp32_speed:.1f})."
            if fp32_speed
            else ""
        ),
        "",
        "| INT8 variant | fused | simulated |" + (" speed vs fp32 |" if fp32_speed else ""),
        "|---|---|---|" + ("---|" if fp32_speed else ""),
        *[
            f"| {k} | {v['fused']:.4f} | {v['simulated']:.4f} |"
            + (f" {v['speed_vs_fp32']:.2f} |" if fp32_speed else "")
            for k, v in rows.items()
        ],
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
