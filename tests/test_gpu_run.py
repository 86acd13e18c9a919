"""experiments/gpu_run.sh end to end on the CPU, tiny: what a lent GPU machine would run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import ROOT
from wmseg.models.checkpoint import load_model
from wmseg.synth import procedural_background

TINY = [
    "trainer=cpu", "trainer.precision=32-true", "data.synth.size=64", "data.batch_size=4",
    "data.num_workers=0", "data.persistent_workers=false", "data.pin_memory=false", "data.val_size=8",
    "data.test_size=8", "data.bank_layers=24", "data.bank_backgrounds=8", "trainer.max_steps=4",
    "trainer.max_time=null", "trainer.val_check_interval=2", "model.net.encoder_weights=null",
    "callbacks.rich_progress_bar=null",
]  # fmt: skip


@pytest.mark.slow
def test_device_stage_trains_measures_and_brings_back_a_slim_model(tmp_path, pairs_folder):
    carry = tmp_path / "carry"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        (carry / "photos" / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(procedural_background(rng, 96)).save(carry / "photos" / split / f"{i}.jpg")
    shutil.copytree(pairs_folder, carry / "eval" / "tiny_set")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env |= {
        "OUT": str(out),
        "GPU_DIR": str(carry),
        "GPU_RUN_ROOT": str(tmp_path / "run"),
        "PYTHON": sys.executable,
        "GPU_RUN_OVERRIDES": " ".join(TINY),
        "FEED_BATCHES": "2",
        "CUDA_VISIBLE_DEVICES": "",  # the CPU path, also where a GPU exists
    }
    done = subprocess.run(
        ["bash", "experiments/gpu_run.sh", "device"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "train rc 0" in log, (out / "train.log").read_text()[-3000:]
    feed = json.loads((out / "feed.json").read_text())
    assert set(feed["engines"]) == {"render", "compose_cpu", "compose_gpu"}
    assert all(e["samples_per_s"] > 0 for e in feed["engines"].values())
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["val/best_f1"] <= 1.0 and summary["step"] >= 3
    assert summary["eval"]["sets"], summary.get("eval")  # measured on the carried eval sets
    slim = out / "model_slim.ckpt"
    assert slim.stat().st_size < 16 * 2**20
    model = load_model(slim)
    assert all(p.dtype == torch.float32 for p in model.net.parameters())  # fp16 on disk, fp32 loaded
    with torch.no_grad():
        assert model.net(torch.rand(1, 3, 64, 64)).shape == (1, 1, 64, 64)
