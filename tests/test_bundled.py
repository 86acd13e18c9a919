"""The model shipped inside the package: it loads, describes itself, and finds a mark."""

import numpy as np
import pytest

from wmseg.inference import OnnxPredictor
from wmseg.inference.loading import bundled_model
from wmseg.predict import Remover
from wmseg.synth import SynthConfig, WatermarkSynth


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_the_bundled_model_loads_and_carries_its_metadata(precision):
    path = bundled_model(precision)
    assert path.parent.name == "bundled" and (path.parent / "MODEL_CARD.md").is_file()
    predictor = OnnxPredictor(path, threads=2)
    meta = predictor.metadata
    assert {"threshold", "stride", "wmseg_version", "model_config"} <= set(meta)
    assert 0 < predictor.threshold < 1 and predictor.stride == 32
    assert predictor.model_config["_target_"] == "wmseg.models.WatermarkUnet"


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_the_bundled_model_finds_a_mark_on_a_synthetic_sample(precision):
    synth = WatermarkSynth(SynthConfig(size=256, clean_fraction=0.0, opacity=(0.7, 1.0), max_marks=1))
    remover = Remover(None, precision=precision, threads=2)
    ious = []
    for i in range(4):
        sample = synth.render(2026, i)
        mask = remover.mask(sample.image)
        truth = sample.mask.astype(bool)
        ious.append((mask & truth).sum() / max(1, (mask | truth).sum()))
    assert np.mean(ious) > 0.3, ious
    # A photo without a mark: little is marked.
    clean = WatermarkSynth(SynthConfig(size=256, clean_fraction=1.0)).render(2026, 0)
    assert not clean.mask.any() and remover.mask(clean.image).mean() < 0.05
