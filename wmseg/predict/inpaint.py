"""Removal: fill the masked pixels of an image. One small interface, chosen by `_target_`.

An inpainter maps (uint8 (H, W, 3) image, bool (H, W) mask) to a uint8 (H, W, 3) image.
`fill` then keeps every pixel outside the mask bit-identical to the input, whatever the
inpainter did there. No Lightning, no torch.

Example:
    >>> painter = OpenCVInpainter("telea", radius=5)  # doctest: +SKIP
    >>> clean = fill(painter, image, dilate(mask, 4))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from wmseg.errors import CheckpointError, ConfigError


class Inpainter(Protocol):
    name: str

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray: ...


def dilate(mask: np.ndarray, margin: int) -> np.ndarray:
    """`mask` (bool (H, W)) grown by `margin` px in every direction (a disc), so the fill
    also covers a mark's soft edge and shadow."""
    if margin <= 0 or not mask.any():
        return mask.astype(bool)
    import cv2

    size = 2 * margin + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def fill(inpainter: Inpainter, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`image` with its `mask` pixels inpainted; all others exactly as they were."""
    if not mask.any():
        return image.copy()
    painted = inpainter(image, mask)
    if painted.shape != image.shape or painted.dtype != np.uint8:
        raise ValueError(
            f"{inpainter.name} returned {painted.shape} {painted.dtype}, not {image.shape} uint8"
        )
    return np.where(mask[..., None], painted, image)


class OpenCVInpainter:
    """OpenCV's fast inpainting: `telea` (fast marching) or `ns` (Navier-Stokes).
    Smooth fills: right for flat and gradient backgrounds, blurry on texture."""

    def __init__(self, method: str = "telea", radius: int = 5) -> None:
        import cv2

        flags = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
        if method not in flags:
            raise ConfigError(f"inpainter.method={method}: use telea or ns")
        if not isinstance(radius, int) or radius < 1:
            raise ConfigError(f"inpainter.radius={radius!r}: use a whole number of pixels >= 1")
        self.flag, self.radius, self.name = flags[method], radius, f"opencv-{method}"

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8) * 255, self.radius, self.flag)


class PatchMatchInpainter:
    """PatchMatch (the `pypatchmatch` package): copies texture from elsewhere in the image,
    for textured backgrounds where a smooth fill shows. Slower than OpenCV."""

    def __init__(self, patch_size: int = 7) -> None:
        try:
            from patchmatch import patch_match
        except ImportError as err:
            raise ConfigError(
                "inpainter=patchmatch needs the pypatchmatch package: pip install pypatchmatch "
                "(or choose inpainter=telea)"
            ) from err
        if not patch_match.patchmatch_available:
            raise ConfigError("pypatchmatch is installed but its compiled library did not load")
        if not isinstance(patch_size, int) or patch_size < 3:
            raise ConfigError(f"inpainter.patch_size={patch_size!r}: use a whole number >= 3")
        self.patch_match, self.patch_size, self.name = patch_match, patch_size, "patchmatch"

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.patch_match.inpaint(
            np.ascontiguousarray(image), mask.astype(np.uint8) * 255, patch_size=self.patch_size
        )


class OnnxInpainter:
    """Any inpainting network exported to ONNX by its user (LaMa, MI-GAN, ...): inputs an
    RGB image (N, 3, H, W) and a mask (N, 1, H, W) with 1 = fill, output (N, 3, H, W).
    wmseg never downloads one.

    `size`: the side the model runs at (None: the model's own when its input size is
    fixed, else any multiple of `multiple`); the region
    around the mask (its bounding box plus `context` on each side) is cut out, resized to
    fit, inpainted and pasted back. `scale`: 1 when the model's pixels are in [0, 1], 255
    when in [0, 255] (inputs and outputs alike)."""

    def __init__(
        self,
        path: str | Path,
        size: int | None = None,
        multiple: int = 8,
        context: float = 0.5,
        scale: float = 1.0,
        providers: list[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"inpainter.path={path} not found: pass an inpainting model (.onnx) of your own"
            )
        try:
            self.session = ort.InferenceSession(
                str(path), providers=providers or ort.get_available_providers()
            )
        except Exception as err:
            raise CheckpointError(f"cannot load inpainting model {path}: {err}") from err
        inputs = self.session.get_inputs()
        if len(inputs) != 2:
            raise CheckpointError(
                f"{path}: an inpainting model takes 2 inputs (image, mask), this has {len(inputs)}"
            )
        # The image input has 3 channels, the mask 1; names vary between exports.
        by_channels = {inp.shape[1]: inp.name for inp in inputs if len(inp.shape) == 4}
        if set(by_channels) != {1, 3}:
            raise CheckpointError(f"{path}: inputs must be (N, 3, H, W) and (N, 1, H, W)")
        self.image_name, self.mask_name = by_channels[3], by_channels[1]
        if size is None:  # a fixed-size export runs at its own size
            h, w = next(inp.shape[2:] for inp in inputs if inp.name == self.image_name)
            size = h if isinstance(h, int) and h == w else None
        self.size, self.multiple, self.context, self.scale = size, multiple, context, scale
        self.name = f"onnx:{path.name}"

    def _run(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        x = image.transpose(2, 0, 1)[None].astype(np.float32) * (self.scale / 255.0)
        m = mask[None, None].astype(np.float32)
        out = self.session.run(None, {self.image_name: x, self.mask_name: m})[0][0]
        return np.clip(out.transpose(1, 2, 0) * (255.0 / self.scale) + 0.5, 0, 255).astype(np.uint8)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from PIL import Image

        ys, xs = np.nonzero(mask)
        h, w = mask.shape
        pad_y = int((ys.max() - ys.min() + 1) * self.context) + 8
        pad_x = int((xs.max() - xs.min() + 1) * self.context) + 8
        y0, y1 = max(0, ys.min() - pad_y), min(h, ys.max() + 1 + pad_y)
        x0, x1 = max(0, xs.min() - pad_x), min(w, xs.max() + 1 + pad_x)
        crop, crop_mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        ch, cw = crop_mask.shape
        if self.size is None:
            m = self.multiple
            th, tw = ch + (-ch % m), cw + (-cw % m)
            run_in = np.pad(crop, ((0, th - ch), (0, tw - cw), (0, 0)), mode="edge")
            run_mask = np.pad(crop_mask, ((0, th - ch), (0, tw - cw)))
            painted = self._run(run_in, run_mask)[:ch, :cw]
        else:
            side = (self.size, self.size)
            run_in = np.asarray(Image.fromarray(crop).resize(side, Image.Resampling.BICUBIC))
            run_mask = np.asarray(Image.fromarray(crop_mask.astype(np.uint8) * 255).resize(side)) > 0
            small = self._run(run_in, run_mask)
            painted = np.asarray(Image.fromarray(small).resize((cw, ch), Image.Resampling.BICUBIC))
        out = image.copy()
        out[y0:y1, x0:x1] = painted
        return out
