"""wmseg-serve speed against the same model in-process, one run, ratios within it.

    python experiments/bench_serve.py [--images 48] [--size 512] [--threads 2] \
        [--out experiments/results/serve/serve_bench]

The bundled INT8 model on JPEG photos with synthetic marks. In-process baselines: the
model alone on decoded images (Remover.mask), and the whole request's work without HTTP
(decode, mask or clean, encode). Then a real `wmseg-serve` process on this machine: the
same images one request at a time, and from 4 clients at once; images/s, median and 95th
percentile latency, and the ratio to the baselines. The client runs on the same cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import cpu

from wmseg.atomic import write_text_atomic
from wmseg.predict import Remover
from wmseg.predict.image_io import encode_like, encode_png, read_source
from wmseg.synth import SynthConfig, WatermarkSynth

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"


def jpegs(n: int, size: int) -> list[bytes]:
    synth = WatermarkSynth(SynthConfig(size=size, clean_fraction=0.1, max_marks=2))
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(synth.render(17, i).image).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def timed(fn, items: list, workers: int = 1) -> dict:
    latencies: list[float] = []

    def one(item) -> None:
        t0 = time.perf_counter()
        fn(item)
        latencies.append(time.perf_counter() - t0)

    fn(items[0])  # warm
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, items))
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {
        "images_per_s": len(items) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
    }


def in_process(remover: Remover, data: list[bytes]) -> dict:
    decoded = [read_source("x.jpg", d).rgb for d in data]
    return {
        "model alone (Remover.mask, decoded images)": timed(remover.mask, decoded),
        "mask without HTTP (decode, mask, PNG)": timed(
            lambda d: encode_png(remover.mask(read_source("x.jpg", d).rgb).astype(np.uint8) * 255), data
        ),
        "clean without HTTP (decode, clean, JPEG)": timed(
            lambda d: encode_like(s := read_source("x.jpg", d), remover.clean(s.rgb)[0]), data
        ),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def over_http(data: list[bytes], threads: int) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as log:
        command = [
            sys.executable,
            "-c",
            "from wmseg.cli import serve; serve()",
            f"port={port}",
            "precision=int8",
            f"threads={threads}",
            "log_level=warning",
            f"hydra.run.dir={log}",
        ]
        server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            with httpx.Client(base_url=url, timeout=120) as client:

                def post(path: str):
                    def call(d: bytes) -> None:
                        r = client.post(path, files={"image": ("p.jpg", d, "image/jpeg")})
                        r.raise_for_status()

                    return call

                return {
                    "HTTP /v1/mask, 1 client": timed(post("/v1/mask"), data),
                    "HTTP /v1/mask, 4 clients": timed(post("/v1/mask"), data, workers=4),
                    "HTTP /v1/clean, 1 client": timed(post("/v1/clean"), data),
                }
        finally:
            server.terminate()
            server.wait(timeout=30)


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# wmseg-serve against the same model in-process",
        "",
        f"`{result['command']}`",
        "",
        f"CPU: {m['model']} ({', '.join(m['flags'])}), {m['cores']} cores; {result['images']} JPEG "
        f"images of {result['size']} px; bundled INT8 model, {result['threads']} threads; the client "
        "runs on the same cores.",
        "",
        "| run | images/s | p50 ms | p95 ms |",
        "|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | {row['images_per_s']:.2f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} |")
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in result["ratios"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve" / "serve_bench")
    args = parser.parse_args()
    data = jpegs(args.images, args.size)
    remover = Remover(None, precision="int8", threads=args.threads)
    rows = in_process(remover, data)
    del remover  # the server process gets the cores and the memory
    rows |= over_http(data, args.threads)
    speed = {k: v["images_per_s"] for k, v in rows.items()}
    ratios = {
        "HTTP mask, 1 client / model alone": speed["HTTP /v1/mask, 1 client"]
        / speed["model alone (Remover.mask, decoded images)"],
        "HTTP mask, 1 client / mask without HTTP": speed["HTTP /v1/mask, 1 client"]
        / speed["mask without HTTP (decode, mask, PNG)"],
        "HTTP mask, 4 clients / 1 client": speed["HTTP /v1/mask, 4 clients"]
        / speed["HTTP /v1/mask, 1 client"],
        "HTTP clean, 1 client / clean without HTTP": speed["HTTP /v1/clean, 1 client"]
        / speed["clean without HTTP (decode, clean, JPEG)"],
    }
    result = {
        "machine": cpu(),
        "command": "python experiments/bench_serve.py " + " ".join(sys.argv[1:]),
        "images": args.images,
        "size": args.size,
        "threads": args.threads,
        "rows": rows,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(result, indent=2))
    write_text_atomic(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
