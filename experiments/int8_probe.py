"""Which INT8 kernel path costs the mask agreement: one fp32 ONNX model quantized and run four ways.

    python experiments/int8_probe.py CKPT MODEL_ONNX --out experiments/results/int8_probe

Calibrates and quantizes with `export.py`'s own `quantize_int8` (32 x 8 images of the
checkpoint's train split, minmax, per-channel weights, QDQ) and measures the mean
per-image mask IoU of each INT8 model against the fp32 one on the synthetic val split, at
the checkpoint's threshold:
U8S8 (the export default), the same U8S8 model run without graph optimization (its Q/DQ
pairs then run in float: the quantization's own error, without this CPU's int8 kernels),
U8S8 with reduce_range (7-bit weights: no int16 saturation in AVX2's VPMADDUBSW), and
U8U8 (another kernel). A diagnosis, not a setting search.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from wmseg.export.quantize import quantize_int8
from wmseg.inference import load_model
from wmseg.tasks.export import _batches, _data_module, _logit, _mask_iou

VARIANTS = {
    "U8S8 (export default)": {},
    "U8S8, reduce_range": {"reduce_range": True},
    "U8U8": {"weight_type": "uint8"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("onnx", help="the fp32 model.onnx export.py wrote for CKPT")
    ap.add_argument("--out", required=True, help="path stem for .md and .json")
    args = ap.parse_args()

    loaded = load_model(args.ckpt)
    dm = _data_module(loaded.config, loaded.path)
    dm.setup("fit")
    calib = _batches(dm.datasets["train"], 32, 8)
    val = dm.datasets["val"]
    images = torch.stack([val[i]["image"] for i in range(len(val))]).numpy()
    cut = _logit(loaded.threshold)

    def masks(path: Path | str, fused: bool = True) -> np.ndarray:
        # fused=False: no graph optimization, so Q/DQ pairs run as float arithmetic (the
        # quantization's own error) instead of this CPU's fused int8 kernels.
        so = ort.SessionOptions()
        if not fused:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return (
            np.concatenate([s.run(None, {"image": images[i : i + 8]})[0] for i in range(0, len(images), 8)])[
                :, 0
            ]
            > cut
        )

    ref = masks(args.onnx)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in VARIANTS.items():
            out = quantize_int8(args.onnx, Path(tmp) / "int8.onnx", calib, **extra)
            runs = {name: masks(out)}
            if not extra:
                runs[f"{name}, Q/DQ simulated in float (no int8 kernels)"] = masks(out, fused=False)
            for key, m in runs.items():
                rows[key] = float(np.mean([_mask_iou(m[i], ref[i]) for i in range(len(m))]))
                print(f"{key}: mean mask IoU vs fp32 {rows[key]:.4f}", flush=True)

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
        "val_images": len(images),
        "cpu_flags": isa,
        "machine": platform.machine(),
        "mean_mask_iou_vs_fp32": rows,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# INT8 kernel probe: {loaded.path.name}",
        "",
        f"{len(images)} synthetic val images; CPU flags: {', '.join(isa) or 'none of interest'}; "
        f"ORT {ort.__version__}. Command: "
        f"`python experiments/int8_probe.py <ckpt> <model.onnx> --out {args.out}`",
        "",
        "| INT8 variant | mean mask IoU vs fp32 |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in rows.items()],
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
