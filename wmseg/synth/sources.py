"""Artwork and photos that ship inside installed packages: where a package lives, and
the check of a config's source names."""

from __future__ import annotations

import importlib.util
from collections.abc import Collection, Sequence
from pathlib import Path


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (importing some
    font packages restyles matplotlib, and qtawesome would need Qt)."""
    spec = importlib.util.find_spec(package)
    return None if spec is None or spec.origin is None else Path(spec.origin).parent


def check_sources(key: str, sources: Sequence[str], known: Collection[str]) -> tuple[str, ...]:
    """`sources` as a tuple, or a ValueError naming the config `key` and the known names."""
    sources = tuple(sources)
    unknown = [s for s in sources if s not in known]
    if unknown or not sources:
        raise ValueError(f"{key}={list(sources)}: use one or more of {', '.join(known)}")
    return sources
