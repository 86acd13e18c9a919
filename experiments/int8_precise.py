"""ONNX Runtime's `session.x64quantprecision` on an exported INT8 model: mask agreement and speed.

    python experiments/int8_precise.py CKPT EXPORT_DIR --out OUT [--split test]

EXPORT_DIR holds `model.onnx` and `model.int8.onnx` from `export.py ckpt=CKPT`. Runs the
INT8 model fused as usual and with the option (`OnnxPredictor(x64_quant_precision=True)`,
`evaluate.py x64_quant_precision=true`), and reports each one's mean per-image mask IoU
against the fp32 model on a synthetic split at the checkpoint's threshold, and images/s
at 512 px, batch 8 (median of 5 runs after a warm-up), with the fp32 model's in the same
process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

# A sibling script: run as `python experiments/int8_precise.py`, experiments/ is on the path.
from int8_probe import images_per_second

from wmseg.inference import OnnxPredictor, load_model
from wmseg.tasks.export import _data_module, _logit, _mean_mask_iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--out", required=True, help="path stem for .md and .json")
    ap.add_argument("--split", default="test", choices=("val", "test"))
    args = ap.parse_args()

    loaded = load_model(args.ckpt)
    dm = _data_module(loaded.config, loaded.path)
    dm.setup("fit")
    split = dm.datasets[args.split]
    images = torch.stack([split[i]["image"] for i in range(len(split))]).numpy()
    cut = _logit(loaded.threshold)
    cpu = ["CPUExecutionProvider"]

    def masks(model: OnnxPredictor) -> np.ndarray:
        return np.concatenate([model.logits(images[i : i + 8]) for i in range(0, len(images), 8)])[:, 0] > cut

    fp32 = OnnxPredictor(args.export_dir / "model.onnx", providers=cpu)
    ref = masks(fp32)
    rows = {"fp32": {"mask_iou_vs_fp32": 1.0, "images_per_s": images_per_second(fp32.logits)}}
    for name, precise in (("int8", False), ("int8, x64_quant_precision", True)):
        model = OnnxPredictor(args.export_dir / "model.int8.onnx", providers=cpu, x64_quant_precision=precise)
        iou = _mean_mask_iou(masks(model), ref)
        rows[name] = {"mask_iou_vs_fp32": iou, "images_per_s": images_per_second(model.logits)}
        print(name, rows[name], flush=True)

    report = {"checkpoint": str(loaded.path), "split": args.split, "images": len(images), "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# INT8 with x64_quant_precision: {loaded.path.name}",
        "",
        f"{len(images)} synthetic {args.split} images; ORT {ort.__version__}. Command: "
        f"`python experiments/int8_precise.py <ckpt> <export dir> --out {args.out} --split {args.split}`",
        "",
        "| model | mean mask IoU vs fp32 | images/s (512 px, batch 8) |",
        "|---|---|---|",
        *[f"| {k} | {v['mask_iou_vs_fp32']:.4f} | {v['images_per_s']:.2f} |" for k, v in rows.items()],
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
