"""Golden digests: the bytes of a few synthetic samples, pinned.

A sample is a pure function of (config, seed, index), and runs rely on old samples
staying the same when new options default to drawing nothing. These digests make that
checked: a change to `wmseg/synth/` or the data module that alters what a recipe
renders fails here. When the data is meant to change, rewrite the file on purpose:

    python tests/test_golden_samples.py --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import compose_config

GOLDEN = Path(__file__).resolve().parent / "golden" / "synth_digests.json"

# (name, overrides): the default data and the cpu_long recipe's, at a small crop size so
# the test stays fast; indices cover clean, tiled and single-mark samples of each split.
RECIPES = {
    "default": ["data.synth.size=64"],
    "cpu_long": ["experiment=cpu_long", "data.synth.size=64"],
}
SPLITS = {"train": 6, "val": 3}


def sample_digests(tmp_path: Path, overrides: list[str]) -> dict[str, list[str]]:
    """SHA-256 of image and mask bytes for the first samples of each split."""
    cfg = compose_config(tmp_path, [*overrides, "data.num_workers=0"])
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    digests = {}
    for split, n in SPLITS.items():
        rows = []
        for index in range(n):
            image, mask = datamodule.datasets[split].pair(index)
            h = hashlib.sha256()
            for array in (image, mask):
                h.update(repr((array.dtype.str, array.shape)).encode())
                h.update(array.tobytes())
            rows.append(h.hexdigest())
        digests[split] = rows
    return digests


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_samples_match_their_golden_digests(recipe: str, tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())[recipe]
    got = sample_digests(tmp_path, RECIPES[recipe])
    for split, rows in golden.items():
        changed = [i for i, (a, b) in enumerate(zip(rows, got[split], strict=True)) if a != b]
        assert not changed, (
            f"{recipe}: {split} samples {changed} render different bytes than before; if the "
            f"change to the data is intended, rewrite {GOLDEN.name} (see this file's docstring)"
        )


def test_synthesis_defaults_live_in_the_dataclass_alone(tmp_path: Path) -> None:
    """conf/data/watermark.yaml states no synthesis value: the composed `data.synth` is
    every SynthConfig field at the dataclass's default, each one overridable."""
    import dataclasses

    import yaml

    from wmseg.synth import SynthConfig

    conf = Path(__file__).resolve().parents[1] / "conf" / "data" / "watermark.yaml"
    assert "synth" not in yaml.safe_load(conf.read_text()), "watermark.yaml restates synthesis values"
    synth = OmegaConf.to_container(compose_config(tmp_path, []).data.synth)
    assert synth.pop("_target_") == "wmseg.synth.SynthConfig"
    assert synth.pop("_convert_") == "all"
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(SynthConfig()).items()}
    assert synth == want
    overridden = compose_config(tmp_path, ["data.synth.blur_prob=0.2"]).data.synth
    assert overridden.blur_prob == 0.2 and overridden.size == SynthConfig().size


if __name__ == "__main__":
    import tempfile

    if "--write" not in sys.argv:
        sys.exit("usage: python tests/test_golden_samples.py --write")
    with tempfile.TemporaryDirectory() as tmp:
        table = {name: sample_digests(Path(tmp), o) for name, o in sorted(RECIPES.items())}
    GOLDEN.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {GOLDEN}")
