"""Deployment speed: torch eager fp32 vs ONNX Runtime fp32 vs ONNX Runtime INT8, one run.

    python experiments/bench_export.py [--ckpt best.ckpt] [--threads 2]

For the CPU default model (`model=unet_lite0`, from --ckpt if given) and the GPU model
config (`model=unet_resnet34`, random init: speed does not depend on the weights), at
batch 1 and 8, 256x256 and 512x512. Also GFLOPs per image, achieved GFLOP/s, and the
CPU's fp32 peak measured in the same run by a large matmul. INT8 variants are
calibrated on the synthetic training split. Writes experiments/results/export_int8/export_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import onnxruntime as ort
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before compose)
from wmseg.export.onnx import contract_metadata, export_onnx
from wmseg.export.quantize import quantize_int8
from wmseg.inference import load_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
CL = torch.channels_last

INT8_VARIANTS = {
    "int8_u8s8_pc": {"activation_type": "uint8", "per_channel": True},
    "int8_s8s8_pc": {"activation_type": "int8", "per_channel": True},
    "int8_u8s8_pt": {"activation_type": "uint8", "per_channel": False},
}


def rate(fn, x: np.ndarray, min_seconds: float = 3.0, min_iters: int = 3) -> float:
    fn(x)  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < min_seconds:
        fn(x)
        n += 1
    return n * len(x) / (time.perf_counter() - t0)


def peak_gflops(threads: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 3:
        a @ b
        n += 1
    return n * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9


def gflops_per_image(net: torch.nn.Module, size: int) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def net_for(model: str, ckpt: Path | None) -> torch.nn.Module:
    if ckpt is not None and model == "unet_lite0":
        return load_model(ckpt).net
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="train", overrides=[f"model={model}", "model.net.encoder_weights=null"])
    return instantiate(cfg.model.net).eval()


def calibration(size: int, batches: int = 8) -> list[np.ndarray]:
    from wmseg.data.splits import SyntheticSplits
    from wmseg.synth import SynthConfig

    ds = SyntheticSplits(SynthConfig(size=size)).dataset("train")
    return [torch.stack([ds[b * 8 + i]["image"] for i in range(8)]).numpy() for b in range(batches)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["unet_lite0", "unet_resnet34"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--out", type=Path, default=RESULTS / "export_int8" / "export_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads

    peak = peak_gflops(args.threads)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s ({args.threads} threads)")
    rows = []
    calib = calibration(256)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            net = net_for(model, args.ckpt)
            meta = contract_metadata(0.5, net.stride, {"model": model})
            fp32 = export_onnx(net, Path(tmp) / f"{model}.onnx", meta, sample_hw=(256, 256))
            paths = {"ort_fp32": fp32}
            for name, kw in INT8_VARIANTS.items():
                paths[name] = quantize_int8(fp32, Path(tmp) / f"{model}.{name}.onnx", calib, **kw)
            sessions = {
                k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for k, p in paths.items()
            }
            for size in args.sizes:
                gf = gflops_per_image(net, size)
                for batch in args.batches:
                    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
                    with torch.inference_mode():
                        speeds = {"torch_fp32": rate(lambda b, net=net: net(torch.from_numpy(b)), x)}
                        # channels-last is how wmseg trains on CPU; often faster in eager too.
                        net_cl = net.to(memory_format=torch.channels_last)
                        speeds["torch_fp32_cl"] = rate(
                            lambda b, n=net_cl: n(torch.from_numpy(b).contiguous(memory_format=CL)), x
                        )
                        net.to(memory_format=torch.contiguous_format)
                    for k, s in sessions.items():
                        speeds[k] = rate(lambda b, s=s: s.run(None, {"image": b}), x)
                    row = {
                        "model": model,
                        "size": size,
                        "batch": batch,
                        "gflops_per_image": gf,
                        "img_per_s": speeds,
                    }
                    row["gflop_per_s"] = {k: v * gf for k, v in speeds.items()}
                    rows.append(row)
                    print(model, size, batch, {k: round(v, 2) for k, v in speeds.items()}, flush=True)

    result = {
        "command": "python experiments/bench_export.py" + (f" --ckpt {args.ckpt}" if args.ckpt else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}",
        "threads": args.threads,
        "fp32_matmul_peak_gflop_per_s": peak,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Export speed ({result['machine']}, {args.threads} threads; fp32 matmul peak {peak:.1f} GFLOP/s)",
        "",
        "| model | size | batch | GFLOPs/img | torch fp32 | torch fp32 CL | ORT fp32 | "
        + " | ".join(INT8_VARIANTS)
        + " | best INT8 / torch | best INT8 / ORT fp32 | ORT fp32 % of peak |",
        "|---" * (9 + len(INT8_VARIANTS)) + "|",
    ]
    for r in rows:
        s = r["img_per_s"]
        best = max(s[k] for k in INT8_VARIANTS)
        torch_best = max(s["torch_fp32"], s["torch_fp32_cl"])
        lines.append(
            f"| {r['model']} | {r['size']} | {r['batch']} | {r['gflops_per_image']:.2f} | "
            f"{s['torch_fp32']:.2f} | {s['torch_fp32_cl']:.2f} | "
            f"{s['ort_fp32']:.2f} | "
            + " | ".join(f"{s[k]:.2f}" for k in INT8_VARIANTS)
            + f" | {best / torch_best:.2f}x | {best / s['ort_fp32']:.2f}x | "
            f"{100 * r['gflop_per_s']['ort_fp32'] / peak:.0f}% |"
        )
    args.out.with_suffix(".md").write_text(
        "\n".join(lines)
        + "\n\nimages/s; GFLOPs counted by torch FlopCounterMode (2 per MAC). CL = channels-last. "
        "Ratios are against the faster torch column.\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
