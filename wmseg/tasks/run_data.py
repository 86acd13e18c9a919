"""The data a model is measured on, built as splits (`wmseg.data.splits`), never as a
LightningDataModule: from the user's data config, or from a checkpoint's stored one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wmseg.data.splits import FolderSplits, SyntheticSplits, class_path, splits_config
from wmseg.errors import CheckpointError, ConfigError
from wmseg.safe_build import DATA, safe_instantiate


def data_splits(data: dict[str, Any], source: str) -> SyntheticSplits | FolderSplits:
    """The splits of data config `data` (plain data: a resolved `cfg.data`, or a stored
    one), every class in it checked against wmseg's data allowlist; `source` names where
    it came from in messages."""
    return safe_instantiate(splits_config(data), DATA, source, "data")


def stored_splits(
    config: dict[str, Any], source: str | Path, why: str, size: int | None = None, folders: bool = False
) -> SyntheticSplits | FolderSplits:
    """The splits of a run's stored data config (`config["data"]`): synthetic ones, or with
    `folders` also real-folder ones (whose stored folders must exist here).

    Synthetic data is rendered on the fly, as rendered (no cache, no augmentation), and
    the real pairs a mixed run trained on (train split only) need not be here. `size`
    fixes the crop size (a static-shape model takes only its own).
    """
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: the checkpoint stores no data config ({why} needs one)")
    splits = splits_config(data, f"{source}: data")
    if splits["_target_"] == class_path(FolderSplits):
        if not folders:
            raise ConfigError(
                f"{why}: {source} was not trained on synthetic data (data=watermark); "
                "evaluate its data with data=folder data.root=<dir> instead"
            )
        return safe_instantiate({**splits, **({"size": size} if size else {})}, DATA, str(source), "data")
    if size is not None:
        synth = splits.get("synth")
        if not isinstance(synth, dict):
            raise CheckpointError(f"{source}: the stored data config has no synth section")
        splits["synth"] = {**synth, "size": size}
    return safe_instantiate(splits, DATA, str(source), "data")
