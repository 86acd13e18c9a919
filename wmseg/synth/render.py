"""Render a watermarked image and its ground-truth mask from (config, seed, index): the
photo (`backgrounds`, `scene`), the marks (`layers`) laid over it (`composition`), then the
photo's degradations (`degradations`)."""

from __future__ import annotations

import numpy as np

from wmseg.synth.artwork import check_artwork_sources
from wmseg.synth.backgrounds import BackgroundBank
from wmseg.synth.composition import (
    MarkTargets,
    Sample,
    composite,
    footprint,
    layer_targets,
    new_layer,
    texture,
)
from wmseg.synth.config import SynthConfig
from wmseg.synth.degradations import degrade
from wmseg.synth.fonts import latin_fonts
from wmseg.synth.layers import MarkLayers, MarkSpec
from wmseg.synth.logos import icon_glyphs
from wmseg.synth.scene import draw_scene_object, draw_sign

__all__ = ["MarkTargets", "Sample", "SynthConfig", "WatermarkSynth"]


class WatermarkSynth:
    """Text watermarks composited over clean backgrounds; a pure function of (seed, index).

    Example:
        >>> synth = WatermarkSynth(SynthConfig(size=64))
        >>> s = synth.render(seed=0, index=3)
        >>> s.image.shape, s.mask.shape
        ((64, 64, 3), (64, 64))
    """

    def __init__(self, config: SynthConfig | None = None, backgrounds: BackgroundBank | None = None):
        self.config = config or SynthConfig()
        self.backgrounds = backgrounds or BackgroundBank()
        self.fonts = latin_fonts(tuple(self.config.font_sources))
        icon_glyphs(tuple(self.config.icon_sources))  # a bad source fails here, not in a worker
        if self.config.artwork_prob > 0:
            check_artwork_sources(self.config.artwork_sources)
        self.marks = MarkLayers(self.config, self.fonts, self.backgrounds)

    def render(self, seed: int, index: int) -> Sample:
        """Sample `index` of stream `seed`."""
        return self._render(seed, index, with_clean=False)[0]

    def render_with_clean(self, seed: int, index: int) -> tuple[Sample, np.ndarray]:
        """Sample `index` of stream `seed` (the same as `render`'s) and its photo without
        the marks, (H, W, 3) uint8, degraded exactly as the image: the restoration target."""
        sample, clean, _ = self._render(seed, index, with_clean=True)
        assert clean is not None
        return sample, clean

    def render_targets(self, seed: int, index: int) -> tuple[Sample, np.ndarray, MarkTargets]:
        """`render_with_clean`'s sample and clean photo, and the marks' opacity and colour
        (`MarkTargets`): what a restoration head learns directly."""
        sample, clean, targets = self._render(seed, index, with_clean=True, track=True)
        assert clean is not None and targets is not None
        return sample, clean, targets

    def clean_background(
        self, rng: np.random.Generator, texture_pick: bool = True
    ) -> tuple[np.ndarray, bool | None]:
        """The photo before any mark, float32 (size, size, 3), with the scene's own signs
        and objects drawn in; and whether the image gets marks when that was drawn first
        (texture-leaning clean images choose their background by it), else None.
        `texture_pick=False` leaves that choice out (a layer bank makes it at compose time)."""
        cfg = self.config
        marked = None
        if cfg.texture_clean_prob > 0 and texture_pick:
            # Whether the image stays clean is drawn first: it chooses the background.
            marked = rng.random() >= cfg.clean_fraction
            if not marked and rng.random() < cfg.texture_clean_prob:
                crops = [self.backgrounds.sample(rng, cfg.size) for _ in range(cfg.texture_candidates)]
                clean = max(crops, key=texture).astype(np.float32)
            else:
                clean = self.backgrounds.sample(rng, cfg.size).astype(np.float32)
        else:
            clean = self.backgrounds.sample(rng, cfg.size).astype(np.float32)
        if cfg.scene_text_prob > 0 and rng.random() < cfg.scene_text_prob:
            draw_sign(rng, clean, self.fonts, cfg.scene_large_prob)
        if cfg.scene_object_prob > 0 and rng.random() < cfg.scene_object_prob:
            for _ in range(int(rng.integers(1, cfg.max_scene_objects + 1))):
                other = self.backgrounds.sample(rng, cfg.size)
                large = cfg.scene_large_prob > 0 and rng.random() < cfg.scene_large_prob
                draw_scene_object(rng, clean, cfg.scene_objects, self.fonts, other, large)
        return clean, marked

    def _render(
        self, seed: int, index: int, with_clean: bool, track: bool = False
    ) -> tuple[Sample, np.ndarray | None, MarkTargets | None]:
        cfg = self.config
        rng = np.random.default_rng([seed, index])
        clean, marked = self.clean_background(rng)
        image = clean.copy()
        size = cfg.size
        # The marks as one layer: premultiplied colour and opacity laid over in order.
        layer = new_layer(size) if track else None
        if marked is None:
            marked = rng.random() >= cfg.clean_fraction
        if marked:
            if rng.random() < cfg.tiled_fraction:
                composite(rng, image, self.marks, tiled=True, layer=layer)
            else:
                for _ in range(int(rng.integers(1, cfg.max_marks + 1))):
                    composite(rng, image, self.marks, tiled=False, layer=layer)
        targets = None if layer is None else layer_targets(layer)
        mask = footprint(image, clean, cfg)  # ground truth before degradation
        if not with_clean:
            return Sample(degrade(rng, image, cfg), mask), None, None
        # The clean photo through the very same degradations (colour shift, blur, resize,
        # noise, JPEG quality): a copy of the stream replays every draw.
        replay = np.random.Generator(type(rng.bit_generator)())
        replay.bit_generator.state = rng.bit_generator.state
        return Sample(degrade(rng, image, cfg), mask), degrade(replay, clean, cfg), targets

    def mark_spec(self, rng: np.random.Generator, tiled: bool) -> MarkSpec:
        """What one mark is, before it is placed (`MarkLayers.spec`); `tiled`: the unit of
        a tiled grid."""
        return self.marks.spec(rng, tiled)
