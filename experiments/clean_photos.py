"""Write a folder of clean real photos (no watermark, empty masks) that the synthesis
never uses as backgrounds, for measuring how often a model fires on real photo content:

    python experiments/clean_photos.py /tmp/clean_real
    python evaluate.py ckpt=<best> data=folder data.root=/tmp/clean_real   # empty_fp_rate

Sources ship inside installed packages: scikit-image's stereo motorcycle pair and
matplotlib's Grace Hopper portrait. Not an evaluation set of watermarks: a false-positive
check that may guide recipes without touching ../shared/eval.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
import skimage.data
from PIL import Image


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    left, right, _ = skimage.data.stereo_motorcycle()
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photos = {
        "motorcycle_left": left,
        "motorcycle_right": right,
        "grace_hopper": np.asarray(Image.open(hopper).convert("RGB")),
    }
    for name, image in photos.items():
        Image.fromarray(image).save(out / "images" / f"{name}.png")
        Image.fromarray(np.zeros(image.shape[:2], np.uint8)).save(out / "masks" / f"{name}.png")
    print(f"{len(photos)} clean photos with empty masks in {out}")


if __name__ == "__main__":
    main()
