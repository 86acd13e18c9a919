"""Shared fixtures: compose the real Hydra config once per test, shrunk to tiny runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before any test composes)

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Tiny, fast runs: 64 px crops, 4 images a batch, data in the main process.
TINY = [
    "data.synth.size=64",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.val_size=8",
    "data.test_size=8",
    "callbacks.rich_progress_bar=null",
]


def compose_config(tmp_path: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """The config `python train.py <overrides>` would run, with all outputs under tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.output_dir = str(tmp_path)
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        return compose_config(tmp_path, [*(TINY if tiny else []), *overrides])

    yield make
    GlobalHydra.instance().clear()


def run_script(
    args: list[str], cwd: Path, timeout: int = 300, env_extra: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run a root script as a user would, in a fresh process; outputs go under `cwd`."""
    # A clean environment: no pytest variables, as when a user runs the script.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k != "HYDRA_FULL_ERROR"}
    env |= {"WMSEG_ROOT": str(cwd), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        **kwargs,
    )


requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the default model, trained for a few steps on 64 px images."""
    from wmseg.tasks.train import train

    run = tmp_path_factory.mktemp("trained")
    cfg = compose_config(run, [*TINY, "debug=limit", "test=false"])
    metrics = train(cfg)
    GlobalHydra.instance().clear()
    return Path(metrics["best_model_path"])


@pytest.fixture(scope="session")
def exported(trained_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`python export.py ckpt=<trained_ckpt> fp16=true` (small calibration): its folder and report.

    One export serves every test that needs the files, since tracing costs ~40 s here."""
    from wmseg.tasks.export import export

    out = tmp_path_factory.mktemp("exported")
    overrides = [
        f"ckpt={trained_ckpt}",
        "sample_size=64",
        "parity.val_samples=8",
        "int8.calibration_batches=2",
        "fp16=true",
    ]
    report = export(compose_config(out, overrides, config_name="export"))
    GlobalHydra.instance().clear()
    return out, report


@pytest.fixture
def pairs_folder(tmp_path: Path) -> Path:
    """A folder of real-layout pairs of mixed sizes, rendered by the synthesis engine."""
    from PIL import Image

    from wmseg.synth import SynthConfig, WatermarkSynth

    root = tmp_path / "pairs"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, size in enumerate((64, 64, 96, 80)):
        s = WatermarkSynth(SynthConfig(size=size, clean_fraction=0.0)).render(5, i)
        Image.fromarray(s.image).save(root / "images" / f"img{i}.png")
        Image.fromarray(s.mask * 255).save(root / "masks" / f"img{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_photo_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo bank installed from three folders of scikit-image photos (train, val,
    proxy), as `make photos` installs the real one."""
    import numpy as np
    from PIL import Image

    from wmseg.synth.backgrounds import bundled_photos
    from wmseg.synth.photo_bank import BankSource, install

    root = tmp_path_factory.mktemp("photos")
    photos = bundled_photos(("skimage",), 256)
    sources = []
    for split, picked in (("train", photos[:6]), ("val", photos[6:9]), ("proxy", photos[9:11])):
        folder = root / split
        folder.mkdir()
        for i, photo in enumerate(picked):
            Image.fromarray(np.ascontiguousarray(photo)).save(folder / f"{i}.png")
        sources.append(BankSource(split, "folder", str(folder), split, "BSD-3-Clause", ("*.png",)))
    return install(root / "bank", sources, max_side=256)
