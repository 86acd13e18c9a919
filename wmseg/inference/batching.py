"""Run a predictor over images of any size: batches of similar size, tiles for large ones."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from wmseg.inference.predictor import Predictor


def to_chw(image: np.ndarray) -> np.ndarray:
    return image.transpose(2, 0, 1).astype(np.float32) / 255.0  # (3, H, W) in [0, 1]


def padded_shape(shape: tuple[int, ...], stride: int) -> tuple[int, int]:
    h, w = shape[:2]
    return h + (-h % stride), w + (-w % stride)


def pad_batch(images: Sequence[np.ndarray], stride: int) -> np.ndarray:
    """uint8 (H, W, 3) images of one padded shape -> float32 (N, 3, H', W'), each
    edge-padded to the stride (crop each output back to its image's own size)."""
    ph, pw = padded_shape(images[0].shape, stride)
    pads = [((0, 0), (0, ph - im.shape[0]), (0, pw - im.shape[1])) for im in images]
    return np.stack([np.pad(to_chw(im), pad, mode="edge") for im, pad in zip(images, pads, strict=True)])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: float) -> float:
    """The logit a probability threshold `p` stands for: `sigmoid(x) >= p` iff `x >= logit(p)`."""
    return float(np.log(p / (1 - p)))


def _shrink(image: np.ndarray, long_side: int | None) -> np.ndarray:
    """`image` resized (antialiased) so its long side is `long_side`; as it is if already
    that small or `long_side` is None."""
    if long_side is None or max(image.shape[:2]) <= long_side:
        return image
    im = Image.fromarray(image)
    # One plain bilinear resize: no draft/reduce shortcut, so the result is exact.
    im.thumbnail((long_side, long_side), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(im)


def _enlarge(prob: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if prob.shape == tuple(shape[:2]):
        return prob
    size = (shape[1], shape[0])
    return np.array(Image.fromarray(prob.astype(np.float32)).resize(size, Image.Resampling.BILINEAR))


def _feather(n: int, at_start: bool, at_end: bool, overlap: int) -> np.ndarray:
    """Weights along one side of a tile: a ramp over `overlap` px at each edge that lies
    inside the image (where another tile takes over), 1 elsewhere and at the image's edge."""
    weights = np.ones(n, np.float32)
    r = min(overlap, n // 2)
    if r > 0:
        ramp = (np.arange(r, dtype=np.float32) + 0.5) / r
        if not at_start:
            weights[:r] = ramp
        if not at_end:
            weights[-r:] = np.minimum(weights[-r:], ramp[::-1])
    return weights


def predict_tiled(
    predictor: Predictor, image: np.ndarray, tile: int = 1024, overlap: int = 128, restore: bool = False
) -> np.ndarray:
    """Probabilities (H, W) for one large uint8 image, from overlapping tiles; with
    `restore`, all of the predictor's `restore` outputs (C, H, W), channel 0 the
    probabilities.

    Where tiles overlap, their outputs (logits, not probabilities) are blended with
    weights that fall off towards each tile's inner edges (where it lacks context), so no
    seam shows; memory stays that of one tile.
    """
    s = predictor.stride
    run = predictor.restore if restore else predictor.logits  # type: ignore[attr-defined]
    tile = max(s, tile - tile % s)
    h, w = image.shape[:2]
    chw = to_chw(image)
    total: np.ndarray | None = None
    count = np.zeros((h, w), np.float32)
    step = max(s, tile - overlap)
    ys = sorted({*range(0, max(h - tile, 0) + 1, step), max(h - tile, 0)})
    xs = sorted({*range(0, max(w - tile, 0) + 1, step), max(w - tile, 0)})
    for y in ys:
        for x in xs:
            crop = chw[:, y : y + tile, x : x + tile]
            ch, cw = crop.shape[1:]
            ph, pw = padded_shape((ch, cw), s)
            padded = np.pad(crop, ((0, 0), (0, ph - ch), (0, pw - cw)), mode="edge")[None]
            weight = np.outer(
                _feather(ch, y == 0, y + ch >= h, overlap), _feather(cw, x == 0, x + cw >= w, overlap)
            )
            out = run(padded)[0, :, :ch, :cw]
            if total is None:
                total = np.zeros((out.shape[0], h, w), np.float32)
            total[:, y : y + ch, x : x + cw] += out * weight
            count[y : y + ch, x : x + cw] += weight
    assert total is not None
    total /= count
    total[0] = sigmoid(total[0])
    return total if restore else total[0]


def predict_items(
    predictor: Predictor,
    images: Iterable[tuple[object, np.ndarray]],
    max_pixels: int = 4_000_000,
    long_side: int | Sequence[int | None] | None = None,
) -> Iterator[tuple[object, np.ndarray]]:
    """Yield (key, probabilities (H, W)) for each (key, uint8 image (H, W, 3)).

    With `long_side`, larger images run at that size (the scale a model was trained to
    see marks at) and their probabilities are resized back to the image's own size. A
    sequence of sizes (None = full size) averages the probabilities over them: multi-scale
    test-time augmentation, one image at a time.

    Consecutive images with the same padded shape share a batch of at most
    `max_pixels` pixels (sort them by size first for full batches); each is
    edge-padded to the network stride and its output cropped back to its own size.
    Images larger than `max_pixels` run tile by tile.
    """
    if isinstance(long_side, Sequence):
        yield from _multiscale(predictor, images, max_pixels, long_side)
        return
    s = predictor.stride
    batch: list[tuple[object, np.ndarray]] = []

    def flush() -> Iterator[tuple[object, np.ndarray]]:
        stack = pad_batch([img for _, img, _ in batch], s)
        logits = predictor.logits(stack)
        for (key, img, shape), out in zip(batch, logits, strict=True):
            yield key, _enlarge(sigmoid(out[0, : img.shape[0], : img.shape[1]]), shape)
        batch.clear()

    for key, original in images:
        image = _shrink(original, long_side)
        if image.shape[0] * image.shape[1] > max_pixels:
            prob = predict_tiled(predictor, image, tile=int(np.sqrt(max_pixels)))
            yield key, _enlarge(prob, original.shape)
            continue
        padded = padded_shape(image.shape, s)
        if batch and (
            padded != padded_shape(batch[0][1].shape, s)
            or (len(batch) + 1) * padded[0] * padded[1] > max_pixels
        ):
            yield from flush()
        batch.append((key, image, original.shape))
    if batch:
        yield from flush()


def _multiscale(
    predictor: Predictor,
    images: Iterable[tuple[object, np.ndarray]],
    max_pixels: int,
    sizes: Sequence[int | None],
) -> Iterator[tuple[object, np.ndarray]]:
    if not sizes:
        raise ValueError("long_side: give at least one size (None = full size)")
    for key, image in images:
        probs = [next(predict_items(predictor, [(key, image)], max_pixels, size))[1] for size in sizes]
        yield key, np.mean(probs, axis=0, dtype=np.float32)
