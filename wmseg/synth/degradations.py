"""What happens to a watermarked photo after the marks: colour shift, blur, resizing,
noise and JPEG, drawn from the sample's own stream."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from wmseg.synth.config import SynthConfig


def degrade(rng: np.random.Generator, image: np.ndarray, cfg: SynthConfig) -> np.ndarray:
    """`image` (float 0-255) as a photo that was passed around: a colour shift, blur, a
    lower resolution shown at full size, sensor noise and JPEG, each drawn per `cfg`;
    uint8 out. The same draws on the same stream give the same result."""
    if cfg.color_shift_prob > 0 and rng.random() < cfg.color_shift_prob:
        gain = rng.uniform(0.9, 1.1, 3).astype(np.float32)
        image = image * gain + rng.uniform(-12, 12, 3).astype(np.float32)
    if cfg.blur_prob > 0 and rng.random() < cfg.blur_prob:
        sigma = float(rng.uniform(*cfg.blur_sigma))
        image = gaussian_filter(image, (sigma, sigma, 0), mode="nearest")
    if cfg.resize_prob > 0 and rng.random() < cfg.resize_prob:
        # As a photo shared at a lower resolution and shown at the original size.
        h, w = image.shape[:2]
        f = float(rng.uniform(*cfg.resize_scale))
        small = Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8))
        small = small.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR)
        image = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), np.float32)
    std = rng.uniform(*cfg.noise_std)
    if std > 0:
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(std)
    out = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_prob:
        buf = io.BytesIO()
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        Image.fromarray(out).save(buf, format="JPEG", quality=quality)
        out = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out
