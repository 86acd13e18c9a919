"""How visible is the ground truth in the image the model sees? Picks `visibility_threshold`.

    python experiments/label_noise.py [--samples 300]

A mask pixel is where the mark changes the clean photo by at least
`visibility_threshold` (0-255, largest channel), measured before JPEG and noise. Those
degradations change pixels by themselves; a threshold inside their range marks pixels
the model cannot tell from degradation. Measures, on the default generator:
- the degradation noise floor: |degraded - clean| on clean images (percentiles);
- an oracle that knows the clean photo and thresholds |degraded - clean| at t: its global
  IoU against the mask, for masks defined at several thresholds.
Writes experiments/results/default_recipe/label_noise.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from wmseg.synth import SynthConfig, WatermarkSynth

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"


def diff_and_mask(synth: WatermarkSynth, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    sample = synth.render(seed, index)
    # render() draws the background first from the same generator: the clean photo.
    clean = synth.backgrounds.sample(np.random.default_rng([seed, index]), synth.config.size)
    diff = np.abs(sample.image.astype(np.float32) - clean.astype(np.float32)).max(axis=2)
    return diff, sample.mask.astype(bool)


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--out", type=Path, default=RESULTS / "default_recipe" / "label_noise")
    args = parser.parse_args()

    clean_synth = WatermarkSynth(dataclasses.replace(SynthConfig(), clean_fraction=1.0))
    floor = np.concatenate([diff_and_mask(clean_synth, 2, i)[0].ravel() for i in range(args.samples)])
    percentiles = {p: float(np.percentile(floor, p)) for p in (50, 90, 95, 99, 99.9)}
    above = {t: float((floor >= t).mean()) for t in (10, 16, 20)}

    oracle: dict[int, dict[int, float]] = {}
    for vis in (10, 16):
        synth = WatermarkSynth(dataclasses.replace(SynthConfig(), visibility_threshold=float(vis)))
        counts = {t: np.zeros(3) for t in (6, 10, 12, 16, 20, 24)}
        for i in range(args.samples):
            diff, mask = diff_and_mask(synth, 1, i)
            for t, c in counts.items():
                pred = diff >= t
                c += [(pred & mask).sum(), (pred & ~mask).sum(), (~pred & mask).sum()]
        oracle[vis] = {t: float(c[0] / c.sum()) for t, c in counts.items()}

    result = {
        "command": f"python experiments/label_noise.py --samples {args.samples}",
        "noise_floor_percentiles": percentiles,
        "share_of_clean_pixels_at_or_above": above,
        "oracle_global_iou": oracle,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    thresholds = list(next(iter(oracle.values())))
    lines = [
        "# Label noise of the synthetic masks",
        "",
        f"`{result['command']}`",
        "",
        "Degradation alone on clean images, |degraded - clean| (max channel, 0-255): "
        + ", ".join(f"p{p:g} {v:.1f}" for p, v in percentiles.items())
        + "; share of pixels >= 10 / 16 / 20: "
        + " / ".join(f"{100 * v:.2f}%" for v in above.values())
        + ".",
        "",
        "Oracle that knows the clean photo (threshold t on |degraded - clean|), global IoU vs the mask:",
        "",
        "| mask visibility_threshold | " + " | ".join(f"t={t}" for t in thresholds) + " |",
        "|---" * (len(thresholds) + 1) + "|",
    ]
    for vis, r in oracle.items():
        lines.append(f"| {vis} | " + " | ".join(f"{r[t]:.3f}" for t in thresholds) + " |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
