"""Synthetic watermarks: a sample is a pure function of (config, seed, index). No torch."""

from wmseg.synth.backgrounds import BackgroundBank, BackgroundOptions, procedural_background
from wmseg.synth.render import Sample, SynthConfig, WatermarkSynth

__all__ = [
    "BackgroundBank",
    "BackgroundOptions",
    "Sample",
    "SynthConfig",
    "WatermarkSynth",
    "procedural_background",
]
