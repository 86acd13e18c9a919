"""Where the synthesis renderer spends its time, per stage, for one recipe's train split.

    python experiments/profile_render.py [--experiment cpu_long] [--samples 300]

Renders `--samples` samples of the recipe's train split in this one process under
cProfile and sums the time spent inside each stage's functions (inclusive time of the
outermost call of a stage, so nested stages are not counted twice): photo crops and
collages, scene signs and objects, text and glyph rendering, logos, artwork, plates,
placement and blending, the footprint (mask), degradations and JPEG. Writes
experiments/results/fast_synthesis/render_profile_<experiment>.{json,md}.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from machine import cpu_name
from omegaconf import OmegaConf

import wmseg.tasks  # noqa: F401  (its resolvers and config nodes, before compose)
from wmseg.data.splits import split_seed, splits_config

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "fast_synthesis"

# stage -> (file suffix, function name) whose inclusive time it counts; listed outer first.
STAGES = {
    "background (photo crop, collage, shading)": [("backgrounds.py", "sample")],
    "scene signs and objects": [("scene.py", "draw_sign"), ("scene.py", "draw_scene_object")],
    "text glyphs (fonts)": [("layers.py", "_text_tile")],
    "logos and QR codes": [("layers.py", "_logo_layers")],
    "artwork (clip art, emoji, procedural)": [("layers.py", "_artwork_layers")],
    "emboss": [("layers.py", "_emboss_layers")],
    "plates and banners": [("layers.py", "_plate_layers")],
    "line grids": [("layers.py", "line_grid")],
    "mark fills (gradient, photo)": [("layers.py", "_fill")],
    "degradations + JPEG": [("degradations.py", "degrade")],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="cpu_long")
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="train", overrides=[f"experiment={args.experiment}"])
    data = OmegaConf.to_container(cfg.data, resolve=False)
    splits = hydra.utils.instantiate(splits_config(data), _convert_="all")
    synth, seed = splits.synths()["train"], split_seed(splits.seed, "train")
    synth.render(seed, 10**6)  # warm the font and photo caches outside the measurement
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    for i in range(args.samples):
        synth.render(seed, i)
    profile.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    stages = {}
    for stage, functions in STAGES.items():
        ct = sum(
            v[3]
            for (file, _, name), v in stats.items()
            if any(file.endswith(suffix) and name == fn for suffix, fn in functions)
        )
        stages[stage] = ct / args.samples * 1000
    render_ms = total / args.samples * 1000
    # The rest of composite(): placement (paste, rotate), blending, the footprint.
    composite = sum(
        v[3] for (f, _, n), v in stats.items() if f.endswith("composition.py") and n == "composite"
    )
    nested = (
        "_text_tile",
        "_logo_layers",
        "_artwork_layers",
        "_emboss_layers",
        "_plate_layers",
        "line_grid",
        "_fill",
    )
    inner = sum(v[3] for (f, _, n), v in stats.items() if f.endswith("layers.py") and n in nested)
    stages["placement + blending (rest of composite)"] = max(0.0, composite - inner) / args.samples * 1000
    stages["footprint, conversions, rest"] = render_ms - sum(stages.values())
    record = {
        "command": "python experiments/profile_render.py "
        f"--experiment {args.experiment} --samples {args.samples}",
        "experiment": args.experiment,
        "samples": args.samples,
        "size": synth.config.size,
        "cpu": cpu_name(),
        "ms_per_sample_profiled": render_ms,
        "note": "cProfile adds overhead: shares, not absolute speed, are the point",
        "stages_ms_per_sample": stages,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"render_profile_{args.experiment}.json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# Renderer profile: experiment={args.experiment}, {args.samples} train samples "
        f"at {synth.config.size} px",
        "",
        f"CPU: {record['cpu']}; one process; {render_ms:.1f} ms a sample under cProfile.",
        "",
        "| stage | ms / sample | share |",
        "|---|---:|---:|",
    ]
    for stage, ms in sorted(stages.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {stage} | {ms:.2f} | {ms / render_ms:.0%} |")
    (OUT / f"render_profile_{args.experiment}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
