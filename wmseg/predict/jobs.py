"""What a prediction run reads and writes: inputs found under `input=`, their outputs
mirrored under `output=`. No Lightning, no torch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wmseg.errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
LIST_SUFFIXES = (".txt", ".lst")


@dataclass(frozen=True)
class Job:
    source: Path
    kind: str  # "image" or "video"
    mask: Path  # PNG, 255 = watermark; a video's: a lossless grey video, frame by frame
    overlay: Path
    clean: Path  # the cleaned image or video, same name and format as the source

    def outputs(self, remove: bool, overlay: bool) -> list[Path]:
        return [self.mask, *([self.overlay] if overlay else []), *([self.clean] if remove else [])]

    def done(self, remove: bool, overlay: bool) -> bool:
        return all(p.is_file() for p in self.outputs(remove, overlay))


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _walk(root: Path, skip: Path | None) -> list[Path]:
    """Image and video files under `root`, sorted, never inside `skip` (the output folder)."""
    found = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        found += [here / n for n in sorted(names) if kind_of(Path(n)) and not n.startswith(".")]
    return found


def _listed(list_file: Path) -> list[Path]:
    lines = [line.strip() for line in list_file.read_text().splitlines()]
    paths = [Path(line).expanduser() for line in lines if line and not line.startswith("#")]
    # Relative lines are relative to the list's own folder, as a user writing it expects.
    return [p if p.is_absolute() else list_file.parent / p for p in paths]


def find_jobs(input: str | Path, output: str | Path) -> list[Job]:
    """The jobs of `input` (an image, a video, a folder searched recursively, or a text
    file listing paths), their outputs mirroring the input's tree under `output`."""
    source = Path(str(input)).expanduser()
    out = Path(str(output)).expanduser().resolve()
    if not source.exists():
        raise ConfigError(f"input={source} does not exist: give an image, a video, a folder or a .txt list")
    if source.is_dir():
        root = source.resolve()
        if out == root:
            raise ConfigError(
                f"output={out} is the input folder: choose another folder (inputs are never overwritten)"
            )
        files, base = _walk(root, out), root
    elif source.suffix.lower() in LIST_SUFFIXES:
        files = _listed(source)
        # Mirrored below the listed files' common folder, so equal names stay apart.
        parents = [str(p.absolute().parent) for p in files]
        base = Path(os.path.commonpath(parents)) if parents else None
    elif kind_of(source):
        files, base = [source], source.resolve().parent
    else:
        raise ConfigError(
            f"input={source}: not an image ({', '.join(IMAGE_SUFFIXES)}), a video "
            f"({', '.join(VIDEO_SUFFIXES)}), a folder or a .txt list"
        )
    jobs: list[Job] = []
    taken: set[Path] = set()
    for path in files:
        kind = kind_of(path)
        if kind is None:  # a listed file of another type: reported by the run as failed
            kind = "image"
        resolved = path.resolve() if path.exists() else path.absolute()
        try:
            rel = resolved.relative_to(base) if base is not None else Path(resolved.name)
        except ValueError:  # a listed path behind a link
            rel = Path(path.absolute()).relative_to(base)
        stem = rel.with_suffix("")
        # a.jpg and a.png in one folder: the second keeps its suffix in its mask's name
        if out / stem in taken:
            stem = rel
        taken.add(out / stem)
        if kind == "video":  # the mask as a lossless grey video; the overlay as a video too
            mask, overlay = out / f"{stem}.mask.mkv", out / f"{stem}.overlay{rel.suffix}"
        else:
            mask, overlay = out / f"{stem}.mask.png", out / f"{stem}.overlay.jpg"
        clean = out / rel
        if clean.resolve() == resolved:
            raise ConfigError(f"output={out} would overwrite the input {path}: choose another folder")
        jobs.append(Job(path, kind, mask, overlay, clean))
    return jobs
