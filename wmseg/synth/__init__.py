"""Synthetic watermarks: a sample is a pure function of (config, seed, index). No torch."""

from wmseg.synth.backgrounds import BackgroundBank, procedural_background
from wmseg.synth.render import Sample, SynthConfig, WatermarkSynth

__all__ = ["BackgroundBank", "Sample", "SynthConfig", "WatermarkSynth", "procedural_background"]
