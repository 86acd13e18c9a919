"""The machine a measurement ran on, for its record: CPU model and SIMD flags."""

from __future__ import annotations

import os
import subprocess


def cpu_name() -> str:
    """'<model> (<simd flags>), <n> cores', from lscpu."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"unknown CPU, {os.cpu_count()} cores"
    model = next((x.split(":", 1)[1].strip() for x in out.splitlines() if x.startswith("Model name")), "?")
    flags = next((x.split(":", 1)[1].split() for x in out.splitlines() if x.startswith("Flags")), [])
    wanted = [f for f in flags if f.startswith(("avx512f", "avx512_vnni", "avx512_bf16", "amx", "avx2"))]
    return f"{model} ({', '.join(wanted)}), {os.cpu_count()} cores"
