"""Detection for prediction: batches of similar images under a pixel budget, halved on
out-of-memory and grown back, large images in overlapping tiles. No Lightning."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from wmseg.errors import UserError
from wmseg.inference.batching import pad_batch, padded_shape, predict_tiled, sigmoid
from wmseg.inference.predictor import Predictor, restores

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# What ONNX Runtime says when an allocation fails (it raises a plain RuntimeException).
_ORT_OOM = ("failed to allocate memory", "bad_alloc", "bad allocation", "out of memory")


def is_out_of_memory(err: BaseException) -> bool:
    """torch's OutOfMemoryError, ONNX Runtime's allocation failures, MemoryError."""
    if isinstance(err, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return type(err).__name__ in ("RuntimeException", "RuntimeError", "Fail") and any(
        s in str(err).lower() for s in _ORT_OOM
    )


def _release_cached_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class AdaptiveBatch:
    """Runs a function over items in chunks of at most `limit`: on out-of-memory the chunk
    is halved and the same items retried (none is dropped); after `grow_after` chunks in a
    row succeed, the limit doubles again, up to `max_items`."""

    def __init__(self, max_items: int, grow_after: int = 8) -> None:
        if max_items < 1 or grow_after < 1:
            raise ValueError(f"batch sizes must be >= 1, got {max_items} and {grow_after}")
        self.max_items, self.grow_after = max_items, grow_after
        self.limit, self.successes, self.halvings = max_items, 0, 0
        self.sizes: list[int] = []  # every chunk size that ran, for reports and tests

    def run(self, fn: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T]) -> list[R]:
        out: list[R] = []
        i = 0
        while i < len(items):
            n = min(self.limit, len(items) - i)
            try:
                results = fn(items[i : i + n])
            except Exception as err:
                if not is_out_of_memory(err) or n == 1:
                    raise
                _release_cached_memory()
                self.limit, self.successes = max(1, n // 2), 0
                self.halvings += 1
                log.warning("out of memory at batch %d: retrying the same images at %d", n, self.limit)
                continue
            self.sizes.append(n)
            out.extend(results)
            i += n
            self.successes += 1
            if self.successes >= self.grow_after and self.limit < self.max_items:
                self.limit, self.successes = min(self.max_items, self.limit * 2), 0
        return out


@dataclass
class DetectOptions:
    batch_pixels: int = 8_000_000  # padded pixels per batch
    batch_images: int = 16  # images per batch at most (before any halving)
    grow_after: int = 8
    tile_pixels: int = 4_000_000  # larger images run in tiles
    tile: int = 1024
    overlap: int = 128


class Detector:
    """Watermark probabilities for uint8 RGB images, batched and tiled; with `restore`,
    also the restoration outputs of a model that has them (`maps`).

    Example:
        >>> detector = Detector(OnnxPredictor("model.int8.onnx"))  # doctest: +SKIP
        >>> probs = detector.probabilities([image_a, image_b])  # doctest: +SKIP
    """

    def __init__(
        self, predictor: Predictor, options: DetectOptions | None = None, restore: bool = False
    ) -> None:
        if restore and not restores(predictor):
            raise UserError(
                f"remover=restore: {predictor.name} has no restoration outputs; use remover=inpaint, "
                "or a model trained with a restoration head (experiment=cpu_restore) and exported"
            )
        self.predictor, self.options, self.restore = predictor, options or DetectOptions(), restore
        self.batch = AdaptiveBatch(self.options.batch_images, self.options.grow_after)

    def _same_shape(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        stack = pad_batch(images, self.predictor.stride)
        # (N, C, ph, pw): C = 1 (logits), or 5 with the restoration outputs
        outputs = self.predictor.restore(stack) if self.restore else self.predictor.logits(stack)  # type: ignore[attr-defined]
        maps = []
        for im, out in zip(images, outputs, strict=True):
            out = np.array(out[:, : im.shape[0], : im.shape[1]], np.float32)
            out[0] = sigmoid(out[0])
            maps.append(out)
        return maps

    def tiled(self, image: np.ndarray) -> np.ndarray:
        o = self.options
        out = predict_tiled(self.predictor, image, tile=o.tile, overlap=o.overlap, restore=self.restore)
        return out if self.restore else out[None]

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(H, W) float32 probabilities per image, in order (see `maps`)."""
        return [m[0] for m in self.maps(images)]

    def maps(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(C, H, W) float32 per image, in order: channel 0 the probabilities; with
        `restore`, channels 1-3 the restored photo (RGB in [0, 1]) and 4 the mark's
        opacity. Images of one padded shape share batches of at most `batch_pixels`;
        larger images than `tile_pixels` run in tiles. Callers group images by shape for
        full batches (`group_key`)."""
        out: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            if image.shape[0] * image.shape[1] > self.options.tile_pixels:
                out[i] = self.tiled(image)
            else:
                groups.setdefault(padded_shape(image.shape, self.predictor.stride), []).append(i)
        for (ph, pw), members in groups.items():
            per_batch = max(1, self.options.batch_pixels // (ph * pw))
            for start in range(0, len(members), per_batch):
                chunk = members[start : start + per_batch]
                probs = self.batch.run(self._same_shape, [images[i] for i in chunk])
                for i, prob in zip(chunk, probs, strict=True):
                    out[i] = prob
        return [p for p in out if p is not None]

    def group_key(self, image: np.ndarray) -> tuple[int, int]:
        if image.shape[0] * image.shape[1] > self.options.tile_pixels:
            return (0, 0)  # tiled alone
        return padded_shape(image.shape, self.predictor.stride)
