"""The synthetic data a checkpoint's run was trained on, rebuilt from its stored config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wmseg.errors import CheckpointError, ConfigError
from wmseg.safe_build import DATA, safe_instantiate

SYNTHETIC = "wmseg.data.datamodule.WatermarkDataModule"
FOLDER = "wmseg.data.datamodule.FolderDataModule"


def stored_data_module(
    config: dict[str, Any], source: str | Path, why: str, size: int | None = None, folders: bool = False
):
    """The data module of a run's stored config (`config["data"]`), every class in it
    checked against wmseg's data allowlist: its `WatermarkDataModule`, or with `folders`
    also a `FolderDataModule` (whose stored folders must exist here).

    Synthetic data is rendered on the fly: no cache is read or written (the stored paths
    are another machine's), and the real pairs a mixed run trained on (train split only)
    need not be here. `size` fixes the crop size (a static-shape model takes only its own).
    """
    data = config.get("data") if isinstance(config, dict) else None
    target = data.get("_target_") if isinstance(data, dict) else None
    if folders and target == FOLDER:
        return safe_instantiate({**data, **({"size": size} if size else {})}, DATA, str(source), "data")
    if target != SYNTHETIC:
        raise ConfigError(
            f"{why}: {source} was not trained on synthetic data (data=watermark); "
            "evaluate its data with data=folder data.root=<dir> instead"
        )
    data = {**data, "cache": "none", "real_roots": None, "real_ratio": 0.0}
    if size is not None:
        synth = data.get("synth")
        if not isinstance(synth, dict):
            raise CheckpointError(f"{source}: the stored data config has no synth section")
        data["synth"] = {**synth, "size": size}
    return safe_instantiate(data, DATA, str(source), "data")
