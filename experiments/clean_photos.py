"""Write a folder of clean real photos (no watermark, empty masks) that the synthesis
never uses as backgrounds, for measuring how often a model fires on real photo content:

    python experiments/clean_photos.py /tmp/clean_real
    python evaluate.py ckpt=<best> data=folder data.root=/tmp/clean_real   # empty_fp_rate

Sources ship inside installed packages: scikit-image's stereo motorcycle pair and
matplotlib's Grace Hopper portrait. Not an evaluation set of watermarks: a false-positive
check that may guide recipes without touching ../shared/eval.

`--marked DIR` also writes `--count` `--size` px (384) crops of the same photos with
synthetic marks of every style (one fixed synthesis setting, whatever the recipe): IoU
there measures how marks are found on real photo content that training never saw.
Marks are sized relative to the crop, so `--size 1024` stands for a full-size photo
(the photo upsampled, the marks sharp), for choosing evaluate's `long_side`.

    python experiments/clean_photos.py /tmp/clean_real --marked /tmp/marked_real
    python evaluate.py ckpt=<best> data=folder data.root=/tmp/marked_real

`--scene-text DIR` also writes, as clean pairs, the Machine Vision Toolbox photos with
legible scene text (signs, a lettered robot base, a labelled ball, a card) that the
`mvtb` photo source leaves out: how often a model fires on text that belongs to a scene.

    python experiments/clean_photos.py /tmp/clean_real --scene-text /tmp/scene_text_real
    python evaluate.py ckpt=<best> data=folder data.root=/tmp/scene_text_real

`--campus DIR` writes, in one folder, the five photos of mvtb-data's own `campus/holdout`
(never training backgrounds) as clean pairs and `--count` marked crops of them: a second
marked proxy on other scenes (buildings, palms, a lawn) than the motorcycle and portrait.
They are frames of the same campus walk as the training `campus/` photos, so they are
unseen views of seen places, not unseen places.

    python experiments/clean_photos.py /tmp/clean_real --campus /tmp/campus_real
    python evaluate.py ckpt=<best> data=folder data.root=/tmp/campus_real   # mean_iou, empty_fp_rate
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from wmseg.synth import BackgroundBank, SynthConfig, WatermarkSynth
from wmseg.synth.backgrounds import heldout_photos, mvtb_photos

# Every style, masks defined like difference-derived real masks (1.5 px band, 6/255).
MARKED = SynthConfig(
    size=384,
    clean_fraction=0.1,
    tiled_fraction=0.3,
    max_marks=3,
    opacity=(0.15, 1.0),
    font_size=(0.05, 0.35),
    blend_probs=(0.55, 0.15, 0.15, 0.15),
    logo_prob=0.25,
    qr_prob=0.15,
    corner_prob=0.15,
    cjk_prob=0.25,
    visibility_threshold=6.0,
    footprint_blur=1.5,
)


def make_layout(out: Path) -> None:
    """The folder-dataset layout: <out>/images and <out>/masks."""
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)


def write_clean(out: Path, stem: str, image: np.ndarray) -> None:
    """`image` and an empty mask as the pair `stem` of the folder dataset at `out`."""
    Image.fromarray(image).save(out / "images" / f"{stem}.png")
    Image.fromarray(np.zeros(image.shape[:2], np.uint8)).save(out / "masks" / f"{stem}.png")


def write_marked(
    photos: Path, out: Path, count: int, size: int = MARKED.size, footprint_channels: str = "max"
) -> None:
    make_layout(out)
    config = dataclasses.replace(MARKED, size=size, footprint_channels=footprint_channels)
    synth = WatermarkSynth(config, BackgroundBank(photos, procedural_fraction=0.0))
    for i in range(count):
        sample = synth.render(seed=2024, index=i)
        Image.fromarray(sample.image).save(out / "images" / f"marked_{i:03d}.png")
        Image.fromarray(sample.mask * 255).save(out / "masks" / f"marked_{i:03d}.png")
    print(f"{count} marked {size} px crops of those photos in {out}")


# mvtb-data photos with legible text that belongs to the scene; never training backgrounds
# (wmseg.synth.backgrounds leaves them out of the mvtb source).
SCENE_TEXT = ("castle.png", "penguins.png", "lab-scene.png", "greenscreen.png", "seq/im.001.png")


def write_scene_text(out: Path) -> None:
    make_layout(out)
    for name, image in zip(SCENE_TEXT, mvtb_photos(SCENE_TEXT), strict=True):
        write_clean(out, Path(name).stem.replace(".", "_"), image)
    print(f"{len(SCENE_TEXT)} clean photos with scene text and empty masks in {out}")


CAMPUS_HOLDOUT = tuple(f"campus/holdout/P1070{n}.png" for n in (492, 502, 508, 511, 513))


def write_campus(out: Path, count: int, size: int = MARKED.size) -> None:
    make_layout(out)
    photos = dict(zip(CAMPUS_HOLDOUT, mvtb_photos(CAMPUS_HOLDOUT), strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        # The bank reads the photos from a folder of their own, not from `out`, so the
        # marked crops never become backgrounds.
        for name, image in photos.items():
            Image.fromarray(image).save(Path(tmp) / f"{Path(name).stem}.png")
            write_clean(out, Path(name).stem, image)
        write_marked(Path(tmp), out, count, size)
    print(f"{len(photos)} clean campus/holdout photos with empty masks in {out}")


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("out", type=Path)
    parser.add_argument("--marked", type=Path, default=None, help="also write marked crops here")
    parser.add_argument("--scene-text", type=Path, default=None, help="also write the scene-text photos here")
    parser.add_argument(
        "--campus", type=Path, default=None, help="also write mvtb's campus/holdout photos, clean and marked"
    )
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--size", type=int, default=MARKED.size, help="side of the marked crops")
    parser.add_argument(
        "--footprint-channels",
        choices=("max", "mean"),
        default="max",
        help="mask from the largest channel difference or the mean one (as ../shared/eval's masks); "
        "the images are the same either way",
    )
    args = parser.parse_args()
    out = args.out
    make_layout(out)
    photos = heldout_photos(max_side=None)  # full size, as a user's photos would be
    for name, image in photos.items():
        write_clean(out, name, image)
    print(f"{len(photos)} clean photos with empty masks in {out}")
    if args.marked:
        write_marked(out / "images", args.marked, args.count, args.size, args.footprint_channels)
    if args.scene_text:
        write_scene_text(args.scene_text)
    if args.campus:
        write_campus(args.campus, args.count, args.size)


if __name__ == "__main__":
    main()
