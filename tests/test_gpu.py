"""GPU paths: 16-mixed AMP, DDP and DeepSpeed. Skipped without CUDA (and DeepSpeed)."""

import importlib.util

import pytest
import torch

from tests.conftest import requires_gpu
from wmseg.tasks.train import train

pytestmark = [pytest.mark.gpu, requires_gpu]


def test_gpu_16_mixed_fit(make_cfg):
    cfg = make_cfg("trainer=gpu", "+trainer.fast_dev_run=true")
    assert cfg.trainer.precision == "16-mixed"
    assert 0.0 <= train(cfg)["val/iou"] <= 1.0


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs `pip install -e .[gpu]`")
def test_deepspeed_stage2_fit(make_cfg):
    cfg = make_cfg("trainer=deepspeed", "trainer.devices=1", "+trainer.fast_dev_run=true")
    assert 0.0 <= train(cfg)["val/iou"] <= 1.0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_ddp_two_gpus(tmp_path):
    from tests.conftest import run_script

    out = run_script(
        ["train.py", "trainer=ddp", "trainer.devices=2", "+trainer.fast_dev_run=true", "data.num_workers=0"],
        tmp_path,
        timeout=400,
    )
    assert out.returncode == 0, out.stderr[-3000:]
