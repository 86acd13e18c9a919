"""The errors wmseg raises for bad input: each message names the key or file and the fix.

The entry points print a `UserError` as one line (no traceback; `HYDRA_FULL_ERROR=1`
shows it) and exit with status 1.
"""

from __future__ import annotations

from pathlib import Path


class UserError(ValueError):
    """Bad input from the user or a file they passed; the message says what to change."""


class ConfigError(UserError):
    """A config value that cannot work; the message names the key and the fix."""


class CheckpointError(UserError):
    """A model file (checkpoint or ONNX) that cannot be used; the message names the file."""


class DataError(UserError):
    """A data file that cannot be used; `path` names it, `reason` says why (without it)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason
