"""wmseg-predict speed, memory and removal quality, one run, ratios within it.

    python experiments/bench_predict.py --models wmseg/bundled --ckpt <best.ckpt> \
        [--eval ../shared/eval/aucourde] [--threads 2] [--out experiments/results/predict/predict_bench]

- a folder of 200 512x512 photos with synthetic marks: images/s end to end (decode +
  detect + write) against the model alone on the same decoded images; batch 1 against
  the adaptive batch; INT8 ONNX, fp32 ONNX and the checkpoint;
- remove=true: images/s with each inpainter;
- one 4K and one 8K image: peak RSS with tiles and without (a fresh process each);
- a generated 720p video with audio, 20 s and 40 s: frames/s detect-only and
  detect+remove, peak RSS of each (fresh processes), the output's audio against the
  input's, and flicker (mean absolute change between consecutive cleaned frames inside
  the mark) with and without temporal smoothing;
- removal on a real set with clean originals (`--eval`): PSNR over the whole image and
  inside the true mask, for doing nothing, each inpainter with the predicted mask and
  with the true mask. Evaluation only: nothing is tuned on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import av
import numpy as np
from PIL import Image

from wmseg.atomic import write_text_atomic
from wmseg.image_files import read_mask, read_rgb
from wmseg.inference import OnnxPredictor, TorchPredictor
from wmseg.predict import DetectOptions, Detector, OpenCVInpainter, PatchMatchInpainter, Remover
from wmseg.predict.inpaint import dilate, fill
from wmseg.predict.video import video_info
from wmseg.synth import SynthConfig, WatermarkSynth

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"


def cpu() -> dict:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return {
        "model": fields.get("Model name", "?").strip(),
        "cores": os.cpu_count(),
        "flags": [f for f in wanted if f in flags],
        "python": platform.python_version(),
    }


def photos(folder: Path, n: int, size: int = 512) -> list[np.ndarray]:
    synth = WatermarkSynth(SynthConfig(size=size, clean_fraction=0.1, max_marks=2))
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n):
        image = synth.render(11, i).image
        Image.fromarray(image).save(folder / f"p{i:04d}.jpg", quality=90)
        images.append(read_rgb(folder / f"p{i:04d}.jpg"))
    return images


def model_only(predictor, images: list[np.ndarray], batch: int) -> float:
    detector = Detector(predictor, DetectOptions(batch_images=batch))
    detector.probabilities(images[:batch])  # warm
    t0 = time.perf_counter()
    detector.probabilities(images)
    return len(images) / (time.perf_counter() - t0)


def end_to_end(predictor, folder: Path, out: Path, batch: int, **run) -> float:
    remover = Remover(
        predictor, detect=DetectOptions(batch_images=batch), inpainter=run.pop("inpainter", None)
    )
    summary = remover.run(folder, out, overwrite=True, progress=False, **run)
    assert not summary["failed"], summary["failed"][:3]
    return summary["images_per_s"]


CHILD = """
import json, sys, numpy as np
from wmseg.inference import OnnxPredictor
from wmseg.predict.batch_run import peak_rss_mb
from wmseg.predict import DetectOptions, Detector
model, w, h, tiles, detect, threads = sys.argv[1:7]
w, h, tiles, detect = int(w), int(h), tiles == "1", detect == "1"
predictor = OnnxPredictor(model, threads=int(threads))
image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
if detect:
    options = DetectOptions(tile_pixels=4_000_000 if tiles else 10**12, batch_images=1)
    Detector(predictor, options).probabilities([image])
print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
"""

VIDEO_CHILD = """
import json, sys
from wmseg.predict import DetectOptions, Remover
from wmseg.predict.batch_run import peak_rss_mb
model, source, out, remove, window, threads = sys.argv[1:7]
remover = Remover(model, detect=DetectOptions(batch_images=8), threads=int(threads))
summary = remover.run(source, out, remove=remove == "1", overlay=False, overwrite=True, progress=False,
                      video={"window": int(window), "preset": "veryfast"})
keys = ("frames_per_s", "frames", "failed")
peak = peak_rss_mb()
print(json.dumps({**{k: summary[k] for k in keys}, "peak_rss_mb": peak}))
"""


def child(code: str, *args: object) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_video(path: Path, seconds: int, fps: int = 10, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """A panning view of a photo with one static semi-transparent mark, and a tone; returns the
    mark's footprint (bool (H, W))."""
    w, h = size
    synth = WatermarkSynth(SynthConfig(size=1024, clean_fraction=0.0))
    scene = np.asarray(Image.fromarray(synth.render(5, 0).image).resize((w + 400, h + 200)))
    mark = np.zeros((h, w), bool)
    mark[h - 140 : h - 60, w - 520 : w - 80] = True
    letters = np.zeros((h, w), bool)
    for k in range(6):  # bars like a word: a footprint with structure
        letters[h - 130 : h - 70, w - 510 + 70 * k : w - 470 + 70 * k] = True
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "20"})
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = container.add_stream("aac", rate=44100)
        sound.layout = "stereo"
        for i in range(seconds * fps):
            x = int(200 + 150 * np.sin(i / 40))
            frame = scene[100 : 100 + h, x : x + w].astype(np.float32)
            frame[letters] = 0.55 * frame[letters] + 0.45 * 255
            vf = av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            for packet in video.encode(vf):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        n = 44100 * seconds
        t = np.arange(n) / 44100
        tone = np.stack([0.2 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)]).astype(
            np.float32
        )
        for k in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(tone[:, k : k + 1024]), format="fltp", layout="stereo"
            )
            af.sample_rate, af.pts = 44100, k
            for packet in sound.encode(af):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return letters


def flicker(path: Path, region: np.ndarray) -> float:
    with av.open(str(path)) as container:
        previous, changes = None, []
        for frame in container.decode(video=0):
            grey = frame.to_ndarray(format="gray").astype(np.float32)
            if previous is not None:
                changes.append(float(np.abs(grey - previous)[region].mean()))
            previous = grey
    return float(np.mean(changes))


def audio_check(source: Path, output: Path) -> dict:
    a, b = video_info(source), video_info(output)
    with av.open(str(source)) as s, av.open(str(output)) as o:
        sa, oa = s.streams.audio[0], o.streams.audio[0]
        dur = lambda st: float(st.duration * st.time_base) if st.duration else None  # noqa: E731
        frame = 1 / float(s.streams.video[0].average_rate)
        d_in, d_out = dur(sa), dur(oa)
    return {
        "codec": [a["audio"][0]["codec"], b["audio"][0]["codec"]],
        "packets_identical": a["audio"][0]["packets"] == b["audio"][0]["packets"],
        "duration_s": [d_in, d_out],
        "within_one_frame": d_in is not None and d_out is not None and abs(d_in - d_out) <= frame,
    }


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = diff[region].mean() if region is not None else diff.mean()
    return float(10 * np.log10(255**2 / mse)) if mse > 0 else float("inf")


def removal(predictor, eval_dir: Path, inpainters: dict) -> dict:
    remover = Remover(predictor)
    rows: dict[str, list[tuple[float, float]]] = {"nothing": []}
    names = sorted(p for p in (eval_dir / "images").iterdir())
    for path in names:
        image = read_rgb(path)
        clean = read_rgb(eval_dir / "clean" / f"{path.stem}.jpg")
        truth = read_mask(eval_dir / "masks" / f"{path.stem}.png", image.shape[:2]).astype(bool)
        predicted = remover.mask(image)
        rows["nothing"].append((psnr(image, clean), psnr(image, clean, truth)))
        for name, painter in inpainters.items():
            for which, mask in (("predicted", predicted), ("true", truth)):
                out = fill(painter, image, dilate(mask, remover.margin))
                rows.setdefault(f"{name}, {which} mask", []).append(
                    (psnr(out, clean), psnr(out, clean, truth))
                )
    return {
        k: {
            "images": len(v),
            "psnr_whole": float(np.mean([x[0] for x in v])),
            "psnr_in_mask": float(np.mean([x[1] for x in v])),
        }
        for k, v in rows.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", type=Path, required=True, help="folder with model.onnx and model.int8.onnx"
    )
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--eval", type=Path, default=None, help="a set with images/, masks/, clean/")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--remove-images", type=int, default=20, help="photos for the remove=true rows")
    parser.add_argument("--out", type=Path, default=RESULTS / "predict" / "predict_bench")
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="only the peak-RSS runs -> <out>_memory",
    )
    args = parser.parse_args()
    if args.memory_only:
        memory_only(args)
        return
    fp32, int8 = args.models / "model.onnx", args.models / "model.int8.onnx"
    result: dict = {"machine": cpu(), "threads": args.threads, "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = photos(tmp / "photos", args.images)
        onnx32 = OnnxPredictor(fp32, threads=args.threads)
        onnx8 = OnnxPredictor(int8, threads=args.threads)
        torch_ckpt = TorchPredictor(args.ckpt)
        folder = tmp / "photos"
        out = tmp / "out"
        rows = {}
        rows["model only, fp32 ONNX, batch 8"] = model_only(onnx32, images, 8)
        rows["end to end, fp32 ONNX, adaptive batch (8)"] = end_to_end(onnx32, folder, out, 8)
        rows["end to end, fp32 ONNX, batch 1"] = end_to_end(onnx32, folder, out, 1)
        rows["end to end, INT8 ONNX, adaptive batch (8)"] = end_to_end(onnx8, folder, out, 8)
        rows["end to end, checkpoint (torch fp32), adaptive batch (8)"] = end_to_end(
            torch_ckpt, folder, out, 8
        )
        result["folder_images_per_s"] = rows
        result["end_to_end_over_model_only"] = (
            rows["end to end, fp32 ONNX, adaptive batch (8)"] / rows["model only, fp32 ONNX, batch 8"]
        )
        print(json.dumps(rows, indent=1), flush=True)

        subset = tmp / "subset"
        subset.mkdir()
        for p in sorted(folder.iterdir())[: args.remove_images]:
            (subset / p.name).symlink_to(p)
        painters = {
            "opencv-telea": OpenCVInpainter("telea"),
            "opencv-ns": OpenCVInpainter("ns"),
            "patchmatch": PatchMatchInpainter(7),
        }
        result["remove_images_per_s"] = {
            name: end_to_end(onnx32, subset, tmp / f"rm_{name}", 8, remove=True, inpainter=p)
            for name, p in painters.items()
        }
        result["remove_photos"] = args.remove_images
        print(json.dumps(result["remove_images_per_s"], indent=1), flush=True)

        large = {}
        for name, (w, h) in {"4K": (3840, 2160), "8K": (7680, 4320)}.items():
            base = child(CHILD, fp32, w, h, 1, 0, args.threads)["peak_rss_mb"]
            tiled = child(CHILD, fp32, w, h, 1, 1, args.threads)["peak_rss_mb"]
            whole = child(CHILD, fp32, w, h, 0, 1, args.threads)["peak_rss_mb"]
            large[name] = {
                "loaded_only_mb": base,
                "tiles_mb": tiled,
                "no_tiles_mb": whole,
                "detection_mb_tiles": tiled - base,
                "detection_mb_no_tiles": whole - base,
            }
        result["large_images_peak_rss"] = large
        print(json.dumps(large, indent=1), flush=True)

        short, longer = tmp / "clip20s" / "clip.mp4", tmp / "clip40s" / "clip.mp4"
        short.parent.mkdir()
        longer.parent.mkdir()
        region = make_video(short, args.seconds)
        make_video(longer, 2 * args.seconds)
        video = {
            "detect_only": child(VIDEO_CHILD, fp32, short, tmp / "vo1", 0, 5, args.threads),
            "detect_remove": child(VIDEO_CHILD, fp32, short, tmp / "vo2", 1, 5, args.threads),
            "detect_remove_no_smoothing": child(VIDEO_CHILD, fp32, short, tmp / "vo3", 1, 1, args.threads),
            "detect_remove_twice_as_long": child(VIDEO_CHILD, fp32, longer, tmp / "vo4", 1, 5, args.threads),
        }
        video["rss_long_over_short"] = (
            video["detect_remove_twice_as_long"]["peak_rss_mb"] / video["detect_remove"]["peak_rss_mb"]
        )
        video["audio"] = audio_check(short, tmp / "vo2" / "clip.mp4")
        video["flicker_in_mark"] = {
            "input": flicker(short, region),
            "smoothed (window 5)": flicker(tmp / "vo2" / "clip.mp4", region),
            "no smoothing (window 1)": flicker(tmp / "vo3" / "clip.mp4", region),
        }
        video["spec"] = f"{args.seconds} s and {2 * args.seconds} s, 1280x720, 10 fps, H.264 + AAC stereo"
        result["video"] = video
        print(json.dumps(video, indent=1, default=str), flush=True)

    if args.eval is not None:
        result["removal_psnr"] = {"set": str(args.eval), **removal(onnx32, args.eval, painters)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(result, indent=2, default=str))
    write_text_atomic(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))


def large_images(fp32: Path, threads: int) -> dict:
    large = {}
    for name, (w, h) in {"4K": (3840, 2160), "8K": (7680, 4320)}.items():
        base = child(CHILD, fp32, w, h, 1, 0, threads)["peak_rss_mb"]
        tiled = child(CHILD, fp32, w, h, 1, 1, threads)["peak_rss_mb"]
        whole = child(CHILD, fp32, w, h, 0, 1, threads)["peak_rss_mb"]
        large[name] = {"loaded_only_mb": base, "tiles_mb": tiled, "no_tiles_mb": whole}
    return large


def memory_only(args: argparse.Namespace) -> None:
    """Peak RSS (VmHWM of a fresh process each) of large images and of videos."""
    fp32 = args.models / "model.onnx"
    result: dict = {"machine": cpu(), "threads": args.threads, "command": " ".join(sys.argv)}
    result["large_images_peak_rss"] = large_images(fp32, args.threads)
    print(json.dumps(result, indent=1), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {}
        for seconds in (args.seconds, 2 * args.seconds):
            source = tmp / f"v{seconds}" / "clip.mp4"
            source.parent.mkdir()
            make_video(source, seconds)
            runs[f"{seconds} s, detect + remove"] = child(
                VIDEO_CHILD, fp32, source, tmp / f"o{seconds}", 1, 5, args.threads
            )
        result["video_peak_rss"] = runs
        first, second = runs.values()
        result["video_rss_long_over_short"] = second["peak_rss_mb"] / first["peak_rss_mb"]
    lines = [
        "# wmseg-predict peak memory (VmHWM of a fresh process per run)",
        "",
        f"`{result['command']}`",
        "",
        f"CPU: {result['machine']['model']}, {result['machine']['cores']} cores, "
        f"flags {', '.join(result['machine']['flags'])}.",
        "",
        "| image | model loaded only | detection with tiles | without tiles |",
        "|---|---|---|---|",
        *[
            f"| {k} | {v['loaded_only_mb']:.0f} MB | {v['tiles_mb']:.0f} MB | {v['no_tiles_mb']:.0f} MB |"
            for k, v in result["large_images_peak_rss"].items()
        ],
        "",
        "| video (1280x720, 10 fps) | frames | frames/s | peak RSS |",
        "|---|---|---|---|",
        *[
            f"| {k} | {v['frames']} | {v['frames_per_s']:.2f} | {v['peak_rss_mb']:.0f} MB |"
            for k, v in runs.items()
        ],
        f"| twice as long / once | | | {result['video_rss_long_over_short']:.3f} (target within 1.10) |",
        "",
    ]
    out = args.out.with_name(args.out.name + "_memory")
    write_text_atomic(out.with_suffix(".json"), json.dumps(result, indent=2, default=str))
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# wmseg-predict benchmark",
        "",
        f"`{r['command']}`",
        "",
        f"CPU: {m['model']}, {m['cores']} cores, flags {', '.join(m['flags'])}; "
        f"ONNX Runtime threads {r['threads']}.",
        "",
        "| folder of 512x512 photos | images/s |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in r["folder_images_per_s"].items()],
        f"| end to end / model only | **{r['end_to_end_over_model_only']:.2f}** (target >= 0.8) |",
        "",
        f"| remove=true ({r['remove_photos']} photos, fp32) | images/s |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in r["remove_images_per_s"].items()],
        "",
        "| image | peak RSS, model loaded only | with tiles | without tiles |",
        "|---|---|---|---|",
        *[
            f"| {k} | {v['loaded_only_mb']:.0f} MB | {v['tiles_mb']:.0f} MB | {v['no_tiles_mb']:.0f} MB |"
            for k, v in r["large_images_peak_rss"].items()
        ],
        "",
    ]
    v = r["video"]
    lines += [
        f"Video: {v['spec']}.",
        "",
        "| run | frames | frames/s | peak RSS |",
        "|---|---|---|---|",
        *[
            f"| {k} | {v[k]['frames']} | {v[k]['frames_per_s']:.2f} | {v[k]['peak_rss_mb']:.0f} MB |"
            for k in (
                "detect_only",
                "detect_remove",
                "detect_remove_no_smoothing",
                "detect_remove_twice_as_long",
            )
        ],
        f"| peak RSS, twice as long / once | {v['rss_long_over_short']:.3f} (target within 1.10) | | |",
        "",
        f"Audio: codecs {v['audio']['codec']}, packets identical: {v['audio']['packets_identical']}, "
        f"durations {v['audio']['duration_s']} s, within one frame: {v['audio']['within_one_frame']}.",
        "",
        "Flicker (mean absolute change of grey level between consecutive frames inside the mark): "
        + ", ".join(f"{k} {x:.2f}" for k, x in v["flicker_in_mark"].items())
        + ".",
        "",
    ]
    if "removal_psnr" in r:
        p = r["removal_psnr"]
        lines += [
            f"Removal on `{p['set']}` against its clean originals (fp32 model, margin 5 px):",
            "",
            "| fill | images | PSNR whole image | PSNR inside the true mask |",
            "|---|---|---|---|",
            *[
                f"| {k} | {x['images']} | {x['psnr_whole']:.2f} | {x['psnr_in_mask']:.2f} |"
                for k, x in p.items()
                if k != "set"
            ],
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
