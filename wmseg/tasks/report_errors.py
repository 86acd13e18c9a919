"""Run a task so that bad input ends it with one line naming the key or file, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig

from wmseg.errors import UserError

T = TypeVar("T")


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """`task(cfg)`; a `UserError` prints as `Error: <message>` and exits with status 1
    (`HYDRA_FULL_ERROR=1` raises it with its traceback instead)."""
    try:
        return task(cfg)
    except UserError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
