"""The overlay-versus-scene proxy: real photos with scene text and emblems and no mark
(what a detector must leave alone), real clean photos, and the held-out-source marked
styles with the look-alike marks (banners with a URL, '#ID' corners, plain logos, line
grids), all on photos no recipe trains on.

    python experiments/overlay_proxy.py /tmp/overlay
    python evaluate.py ckpt=<best> data=folder \\
        data.root='[/tmp/overlay/scene_text,/tmp/overlay/clean_bank,/tmp/overlay/text,...]'
    python experiments/compare_reports.py A/report.json B/report.json   # paired, per folder

Held out (whole sources):
- `scene_text`: mvtb-data's photos with legible scene text that its photo source leaves
  out (coffee umbrellas, a warning sign, tourist signs, a street with a car, a lab with
  printed fiducials, a lettered ball) and the photo bank's `proxy` split photos, all at
  most `--side` px: no mark, an empty mask; the share of pixels flagged is the measure;
- `clean_bank`: the same bank proxy photos are also the backgrounds of the marked styles;
- marked styles: as `generalisation_proxy.py` (held-out fonts, emoji artwork, scikit-learn's
  and mvtb's `campus/holdout` photos) plus the bank proxy photos, with `banner`, `id`,
  `plain_logo` and `lines` styles.
Nothing here is ever a training or selection set.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from generalisation_proxy import BASE, SEED, STYLES, _write_pair, held_out_photos
from PIL import Image

from wmseg.synth import BackgroundBank, WatermarkSynth
from wmseg.synth.backgrounds import mvtb_photos
from wmseg.synth.photo_bank import PhotoBank

# mvtb-data photos with legible scene text (left out of its photo source for that reason).
MVTB_SCENE_TEXT = (
    "campus/P1070498.png",
    "campus/P1070499.png",
    "campus/P1070503.png",
    "lab-scene.png",
    "image3.jpg",
    "penguins.png",
    "castle.png",
    "greenscreen.png",
)
LOOK_ALIKE_STYLES = {
    "banner": {"banner_prob": 1.0, "max_marks": 1},
    "id": {"id_text_prob": 1.0, "max_marks": 1},
    "plain_logo": {"plain_logo_prob": 1.0, "max_marks": 1},
    "lines": {"tiled_fraction": 1.0, "line_grid_prob": 1.0},
}


def _shrink(photo: np.ndarray, side: int) -> np.ndarray:
    im = Image.fromarray(np.ascontiguousarray(photo))
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(im)


def write_clean(out: Path, photos: list[np.ndarray], stem: str, side: int) -> None:
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, photo in enumerate(photos):
        image = _shrink(photo, side)
        _write_pair(out, f"{stem}_{i:04d}", image, np.zeros(image.shape[:2], bool))
    print(f"{len(photos)} clean photos (at most {side} px) in {out}")


def write_marked(out: Path, photos: list[np.ndarray], count: int, size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, photo in enumerate(photos):
            Image.fromarray(np.ascontiguousarray(photo)).save(Path(tmp) / f"photo_{i:04d}.png")
        bank = BackgroundBank(tmp, procedural_fraction=0.0)
        styles = {k: v for k, v in STYLES.items() if k != "clean"} | LOOK_ALIKE_STYLES
        for k, (style, changes) in enumerate(styles.items()):
            folder = out / style
            for sub in ("images", "masks"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            synth = WatermarkSynth(dataclasses.replace(BASE, size=size, **changes), bank)
            for i in range(count):
                sample = synth.render(seed=SEED + 100 + k, index=i)
                _write_pair(folder, f"{style}_{i:03d}", sample.image, sample.mask)
            print(f"{count} {style} crops ({size} px) in {folder}")


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=40, help="crops a marked style")
    parser.add_argument("--size", type=int, default=BASE.size, help="side of the marked crops")
    parser.add_argument("--side", type=int, default=1024, help="longest side of the clean photos")
    parser.add_argument("--bank", default=None, help="photo bank folder (default: the installed one)")
    args = parser.parse_args()
    bank_proxy = list(PhotoBank(args.bank).photos("proxy"))
    write_clean(args.out / "scene_text", mvtb_photos(MVTB_SCENE_TEXT), "mvtb", args.side)
    write_clean(args.out / "clean_bank", bank_proxy, "bank", args.side)
    write_marked(args.out, [*held_out_photos(), *bank_proxy], args.count, args.size)


if __name__ == "__main__":
    main()
