"""A held-out-source proxy for "marks from another generator": one folder a mark style,
each of `--count` marked crops of photos, in fonts and artwork, that no recipe trains on.

    python experiments/generalisation_proxy.py /tmp/proxy
    python evaluate.py ckpt=<best> data=folder \
        data.root='[/tmp/proxy/text,/tmp/proxy/tiled,/tmp/proxy/cjk,/tmp/proxy/artwork,/tmp/proxy/filled,/tmp/proxy/signature,/tmp/proxy/clean]'
    python experiments/compare_reports.py A/report.json B/report.json   # per style, paired, SE

What is held out (whole sources, not single images):
- photos: scikit-learn's two sample photos (a temple, a flower) and the five photos
  mvtb-data itself sets apart (`campus/holdout`); the training photo sources are
  scikit-image and the other mvtb photos;
- fonts: the families caladea, amatic_sc, manrope and source_serif_pro (no recipe trains on
  them; `cpu_generalise` trains on the other seven);
- artwork: Noto Color Emoji (Debian `fonts-noto-color-emoji`), in its colours or as
  silhouettes; recipes draw Tux Paint's clip art, procedural logos and icon fonts.
CJK text has no held-out font (five CJK faces exist; all train), so `cjk` holds out only
photos and the mark layout. Masks are the visible footprint as the recipes define it
(6/255, 1.5 px band).

`--clean-real DIR` writes the nature photos of Debian's `mate-backgrounds` (sand, wood,
grass, flowers, water drops: fine texture) at most `--clean-side` px as clean pairs: the
false-positive check on real photos no recipe trains on. Those wallpapers are kept for
independent checks: never training, never selection.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from wmseg.synth import BackgroundBank, SynthConfig, WatermarkSynth
from wmseg.synth.backgrounds import mvtb_photos
from wmseg.synth.fonts import FAMILIES

HELDOUT_FONTS = ("caladea", "amatic_sc", "manrope", "source_serif_pro")
CAMPUS_HOLDOUT = tuple(f"campus/holdout/P1070{n}.png" for n in (492, 502, 508, 511, 513))
MATE_NATURE = Path("/usr/share/backgrounds/mate/nature")
SEED = 4242

# What every style shares: the definitions and ranges of the CPU recipes, other sources.
BASE = SynthConfig(
    size=384,
    clean_fraction=0.0,
    tiled_fraction=0.0,
    max_marks=2,
    opacity=(0.15, 1.0),
    font_size=(0.05, 0.35),
    blend_probs=(0.55, 0.15, 0.15, 0.15),
    visibility_threshold=6.0,
    footprint_blur=1.5,
    font_sources=HELDOUT_FONTS,
    artwork_sources=("emoji",),
    artwork_mono_prob=0.4,
)
STYLES = {
    "text": {},
    "tiled": {"tiled_fraction": 1.0},
    "cjk": {"cjk_prob": 1.0},
    "artwork": {"artwork_prob": 1.0, "max_marks": 1},
    "filled": {"plate_prob": 1.0, "plate_alone_prob": 0.3, "artwork_prob": 0.3, "max_marks": 1},
    "signature": {"signature_prob": 1.0, "max_marks": 1},
    "clean": {"clean_fraction": 1.0},
}


def _write_pair(out: Path, stem: str, image: np.ndarray, mask: np.ndarray) -> None:
    Image.fromarray(image).save(out / "images" / f"{stem}.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{stem}.png")


def held_out_photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return [*load_sample_images().images, *mvtb_photos(CAMPUS_HOLDOUT)]


def write_proxy(out: Path, count: int, size: int) -> None:
    assert set(HELDOUT_FONTS) <= set(FAMILIES)
    with tempfile.TemporaryDirectory() as tmp:
        # The bank reads the photos at full size from a folder of their own.
        for i, photo in enumerate(held_out_photos()):
            Image.fromarray(photo).save(Path(tmp) / f"photo_{i}.png")
        bank = BackgroundBank(tmp, procedural_fraction=0.0)
        for k, (style, changes) in enumerate(STYLES.items()):
            folder = out / style
            for sub in ("images", "masks"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            synth = WatermarkSynth(dataclasses.replace(BASE, size=size, **changes), bank)
            for i in range(count):
                sample = synth.render(seed=SEED + k, index=i)
                _write_pair(folder, f"{style}_{i:03d}", sample.image, sample.mask)
            print(f"{count} {style} crops ({size} px) in {folder}")


def write_clean_real(out: Path, side: int) -> None:
    if not MATE_NATURE.is_dir():
        raise SystemExit(f"{MATE_NATURE} is missing: sudo apt-get install mate-backgrounds")
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    paths = sorted(MATE_NATURE.glob("*.jpg"))
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((side, side), Image.Resampling.LANCZOS)
            image = np.asarray(im)
        _write_pair(out, path.stem, image, np.zeros(image.shape[:2], bool))
    print(f"{len(paths)} clean textured photos (at most {side} px) in {out}")


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=40, help="crops a style")
    parser.add_argument("--size", type=int, default=BASE.size, help="side of the crops")
    parser.add_argument(
        "--clean-real", type=Path, default=None, help="also write mate-backgrounds' nature photos"
    )
    parser.add_argument("--clean-side", type=int, default=1280)
    args = parser.parse_args()
    write_proxy(args.out, args.count, args.size)
    if args.clean_real:
        write_clean_real(args.clean_real, args.clean_side)


if __name__ == "__main__":
    main()
