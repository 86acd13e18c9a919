"""One mark on many images: stock agencies, listing sites and video channels put the same
mark at the same place on every picture. Its footprint, opacity and colour are estimated
once from all the images that carry it, as per-pixel medians of each image's own estimate
(a photo's detail leaks into one image's guess, rarely into the median of many: the idea
of multi-image matting, Dekel et al., CVPR 2017), and every such image is then un-blended
with the shared estimate. Images of one size are aligned by position; an image whose own
mask does not match the shared footprint keeps its own estimate; images of another size
take the mark anchored at a corner or the centre when their own mask fits it there. No
Lightning.

Example:
    >>> estimates = [own_estimate(image, maps, threshold) for image, maps in ...]  # doctest: +SKIP
    >>> mark = estimate_shared(estimates)  # None: no mark common to enough of them  # doctest: +SKIP
    >>> if mark is not None and mark.fits(estimates[0].mask): maps = mark.maps(image, maps)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Images of one size needed before a mark counts as shared (two could be a coincidence).
MIN_IMAGES = 3
# A pixel belongs to the shared footprint when this share of the images' masks hold it.
AGREE = 0.5
# An image carries the shared mark when its own mask overlaps the shared footprint at
# least this much (IoU); below it (another mark, size or place) it keeps its own estimate.
FIT_IOU = 0.5
# Images per size the estimate is taken from, and their pixels in all: bound memory
# (9 bytes a pixel an image) and time.
MAX_IMAGES = 48
MAX_PIXELS = 50_000_000


def sample_limit(height: int, width: int) -> int:
    """How many images of this size the estimate is taken from."""
    return max(MIN_IMAGES, min(MAX_IMAGES, MAX_PIXELS // max(1, height * width)))


@dataclass
class MarkEstimate:
    """One image's own view of its mark: the detected mask, and (a restoration model) the
    predicted opacity and premultiplied colour (opacity x colour, in [0, 1])."""

    mask: np.ndarray  # bool (H, W)
    opacity: np.ndarray | None = None  # float16 (H, W)
    premult: np.ndarray | None = None  # float16 (H, W, 3)


# Where a mark is anchored when an image of another size carries it: (vertical,
# horizontal) share of the size difference (0: top / left, 1: bottom / right).
ANCHORS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5))


def _move(array: np.ndarray, size: tuple[int, int], offset: tuple[int, int]) -> np.ndarray:
    """`array` (H, W, ...) on a canvas of `size`, shifted by `offset` (rows, columns) and
    cropped to it; zeros where it does not reach."""
    (h, w), (sh, sw), (dy, dx) = size, array.shape[:2], offset
    out = np.zeros((h, w, *array.shape[2:]), array.dtype)
    ys, xs = slice(max(0, dy), min(h, sh + dy)), slice(max(0, dx), min(w, sw + dx))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys, xs] = array[ys.start - dy : ys.stop - dy, xs.start - dx : xs.stop - dx]
    return out


def own_estimate(image: np.ndarray, maps: np.ndarray, threshold: float) -> MarkEstimate:
    """The estimate in one image's `maps` (Detector.maps: probability, then with a
    restoration model the restored photo and the opacity). The premultiplied colour
    follows from the un-blend: `a c = i - (1 - a) p`."""
    mask = maps[0] >= threshold
    if maps.shape[0] < 5:
        return MarkEstimate(mask)
    opacity = np.clip(maps[4], 0.0, 1.0)
    photo = maps[1:4].transpose(1, 2, 0)
    premult = image.astype(np.float32) / 255.0 - (1.0 - opacity[..., None]) * photo
    premult = np.clip(premult, 0.0, opacity[..., None])  # a colour in [0, 1]: 0 <= a c <= a
    return MarkEstimate(mask, opacity.astype(np.float16), premult.astype(np.float16))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


@dataclass
class SharedMark:
    """The mark common to `images` images of one size."""

    mask: np.ndarray  # bool (H, W): the shared footprint
    opacity: np.ndarray | None  # float32 (H, W), 0 off the footprint's neighbourhood
    premult: np.ndarray | None  # float32 (H, W, 3)
    images: int

    @property
    def size(self) -> tuple[int, int]:
        return self.mask.shape  # type: ignore[return-value]

    def fits(self, mask: np.ndarray) -> bool:
        """Whether an image whose own mask is `mask` carries this mark."""
        return mask.shape == self.mask.shape and iou(mask, self.mask) >= FIT_IOU

    def maps(self, image: np.ndarray, maps: np.ndarray) -> np.ndarray:
        """`maps` of `image` with the shared estimate in place of its own: probability 1 on
        the footprint (0 off it) and, with a restoration model, the photo un-blended with
        the shared opacity and colour."""
        out = maps.copy()
        out[0] = self.mask.astype(out.dtype)
        if self.opacity is None or self.premult is None or maps.shape[0] < 5:
            return out
        # The head's opacity stops at 0.95 (wmseg.models.restoration.MAX_OPACITY).
        keep = np.maximum(1.0 - self.opacity, 0.05)[..., None]
        photo = (image.astype(np.float32) / 255.0 - self.premult) / keep
        out[1:4] = np.clip(photo, 0.0, 1.0).transpose(2, 0, 1)
        out[4] = self.opacity
        return out

    def placed(self, mask: np.ndarray) -> SharedMark | None:
        """This mark on an image whose own mask is `mask`: as estimated when the sizes
        match, else moved with one of the image's corners or its centre (where a stock
        agency or a listing site anchors its mark) and cropped to it; None when the image's
        mask fits none of these places."""
        if mask.shape == self.mask.shape:
            return self if self.fits(mask) else None
        score, anchor = self._best_anchor(mask)
        return self._moved(mask.shape, anchor) if score >= FIT_IOU else None

    def _best_anchor(self, mask: np.ndarray) -> tuple[float, tuple[float, float]]:
        """(IoU, anchor) of the place where this mark best fits `mask` (masks only: the
        opacity and colour are moved once, for the winner)."""
        return max((iou(mask, _move(self.mask, mask.shape, self._offset(mask.shape, a))), a) for a in ANCHORS)

    def _offset(self, size: tuple[int, int], anchor: tuple[float, float]) -> tuple[int, int]:
        (h, w), (sh, sw) = size, self.mask.shape
        return round((h - sh) * anchor[0]), round((w - sw) * anchor[1])

    def _moved(self, size: tuple[int, int], anchor: tuple[float, float]) -> SharedMark:
        offset = self._offset(size, anchor)
        opacity = None if self.opacity is None else _move(self.opacity, size, offset)
        premult = None if self.premult is None else _move(self.premult, size, offset)
        return SharedMark(_move(self.mask, size, offset), opacity, premult, self.images)

    def describe(self) -> dict:
        return {
            "size": list(self.size),
            "images": self.images,
            "pixels": int(self.mask.sum()),
            "max_opacity": None if self.opacity is None else round(float(self.opacity.max()), 3),
        }


def estimate_shared(estimates: list[MarkEstimate]) -> SharedMark | None:
    """The mark shared by images of one size, or None when fewer than MIN_IMAGES carry a
    common one. Its footprint: the pixels most carriers' masks hold; its opacity and
    colour: per-pixel medians over the carriers (all of them, also where one image's mask
    missed the mark), kept on the footprint grown by a few pixels (soft edges)."""
    if len(estimates) < MIN_IMAGES or len({e.mask.shape for e in estimates}) != 1:
        return None
    footprint = np.mean([e.mask for e in estimates], axis=0) >= AGREE
    if not footprint.any():
        return None
    carriers = [e for e in estimates if iou(e.mask, footprint) >= FIT_IOU]
    if len(carriers) < MIN_IMAGES:
        return None
    footprint = np.mean([e.mask for e in carriers], axis=0) >= AGREE
    if not footprint.any():
        return None
    if any(e.opacity is None or e.premult is None for e in carriers):
        return SharedMark(footprint, None, None, len(carriers))
    from wmseg.predict.inpaint import dilate

    near = dilate(footprint, 3)
    opacity = np.median(np.stack([e.opacity for e in carriers]).astype(np.float32), axis=0) * near
    premult = np.median(np.stack([e.premult for e in carriers]).astype(np.float32), axis=0) * near[..., None]
    return SharedMark(footprint, opacity.astype(np.float32), premult.astype(np.float32), len(carriers))


def find_mark(marks: dict[tuple[int, int], SharedMark], mask: np.ndarray) -> SharedMark | None:
    """The shared mark an image whose own mask is `mask` carries: the one estimated on its
    size first, else the best placed one of another size (`SharedMark.placed`)."""
    same = marks.get(mask.shape)  # type: ignore[arg-type]
    if same is not None and same.fits(mask):
        return same
    best, best_score = None, FIT_IOU
    for size, mark in marks.items():
        if size == mask.shape:
            continue
        score, anchor = mark._best_anchor(mask)
        if score >= best_score:
            best, best_score = (mark, anchor), score
    return None if best is None else best[0]._moved(mask.shape, best[1])
