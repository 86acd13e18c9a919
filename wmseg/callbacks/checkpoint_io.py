"""Checkpoints written atomically on local disks, whatever filesystem `$TMPDIR` is on."""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from wmseg.atomic import write_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but the temporary file sits beside the checkpoint
    and is fsynced before the rename (`wmseg.atomic`).

    Lightning's own writer stages the file in `$TMPDIR`; when that is another filesystem
    (a tmpfs `/tmp`) the final move is a copy that truncates `last.ckpt` first, so a kill
    mid-save loses the checkpoint. Remote paths (`s3://...`) keep Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomic(path, lambda tmp: torch.save(checkpoint, tmp))
