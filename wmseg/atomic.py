"""Write files atomically: to a temporary file beside the target, fsync, then rename.

The temporary file sits in the target's own folder, so the rename never crosses a
filesystem (a tmpfs `/tmp` would make it a copy that truncates the target first). It is
created with the umask applied, like any ordinary write, and a leftover of a killed
write to the same target is removed by the next successful one.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def _create_exclusive(path: Path) -> None:
    """Create the empty file `path`, failing if it exists; 0o666 less the umask, as open() gives."""
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))


def _orphans(path: Path) -> list[Path]:
    """Temporary files of earlier, killed writes to `path` (named as `_temp_name` names them)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp")
    try:
        return [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return []


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a folder; the rename is still atomic
        if not directory:
            raise
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)`, then rename onto `path`: readers never see half a file.

    Example:
        >>> write_atomic("out/report.json", lambda tmp: Path(tmp).write_text("{}"))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temp_name(path)
        try:
            _create_exclusive(tmp)
            break
        except FileExistsError:
            continue
    try:
        write(str(tmp))
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)
    for orphan in _orphans(path):
        orphan.unlink(missing_ok=True)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def save_npy_atomic(path: str | Path, array: np.ndarray) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a name
            np.save(f, array)

    return write_atomic(path, write)


def file_record(path: str | Path) -> dict[str, int | str]:
    """A file's size and SHA-256: what a manifest pins a written shard to."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return {"bytes": Path(path).stat().st_size, "sha256": h.hexdigest()}


def save_png_atomic(array: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    return write_atomic(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def check_writable(folder: str | Path, key: str) -> Path:
    """Create `folder` if needed and prove a file can be written there, before any work;
    ConfigError naming `key` otherwise."""
    from wmseg.errors import ConfigError

    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _temp_name(folder / ".write-check")
        _create_exclusive(probe)
        probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"{key}={folder} is not a writable folder ({err.strerror or err}): "
            f"set {key} to a folder you can write to"
        ) from err
    return folder
