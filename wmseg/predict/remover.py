"""Detect -> mask -> remove, for one image in memory or for whole folders, lists and videos.

Example:
    >>> from wmseg.predict import Remover
    >>> remover = Remover("model.int8.onnx")  # doctest: +SKIP
    >>> clean, mask = remover.clean(image)  # uint8 (H, W, 3) -> same, bool (H, W)  # doctest: +SKIP
    >>> summary = remover.run("photos/", "cleaned/", remove=True)  # doctest: +SKIP

No Lightning.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wmseg.atomic import check_writable, write_bytes_atomic, write_text_atomic
from wmseg.errors import DataError, UserError
from wmseg.image_files import image_size, pixel_limit
from wmseg.inference.loading import load_predictor
from wmseg.inference.overlay import tint
from wmseg.inference.predictor import Predictor, restores
from wmseg.predict.detect import DetectOptions, Detector
from wmseg.predict.image_io import SourceImage, encode_jpeg, encode_png, read_source, write_like
from wmseg.predict.inpaint import Inpainter, OpenCVInpainter, dilate, fill
from wmseg.predict.jobs import Job, find_jobs
from wmseg.predict.shared_mark import (
    MIN_IMAGES,
    MarkEstimate,
    SharedMark,
    estimate_shared,
    find_mark,
    own_estimate,
    sample_limit,
)

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    remove: bool = False  # also write the cleaned image or video
    overlay: bool = True  # also write <name>.overlay.jpg (the mask tinted red on the image)
    overwrite: bool = False  # false: inputs whose outputs all exist are skipped (resume)
    decode_workers: int = 2
    encode_workers: int = 2
    queue: int = 16  # images decoded ahead of the model, and finished images being written
    # own: each image its own estimate of its mark | shared: one mark estimated from all the
    # images of a size that carry it (wmseg.predict.shared_mark) | auto: shared for a
    # video's frames (a static mark), own for images
    mark: str = "auto"
    progress: bool | None = None  # a progress bar; None: when stderr is a terminal
    video: dict[str, Any] = field(default_factory=dict)  # wmseg.predict.video.VideoOptions


@dataclass
class Summary:
    input: str
    output: str
    model: str
    threshold: float
    processed: int = 0
    skipped_existing: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    images: int = 0
    videos: int = 0
    frames: int = 0
    seconds: float = 0.0
    image_seconds: float = 0.0
    video_seconds: float = 0.0
    batch_halvings: int = 0
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None
    mark: str = "auto"
    shared_marks: list[dict[str, Any]] = field(default_factory=list)  # per image size / video
    shared_used: int = 0  # images (and videos) cleaned with a shared mark
    own_estimate: list[str] = field(default_factory=list)  # mark=shared: kept their own

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["images_per_s"] = self.images / self.image_seconds if self.images and self.image_seconds else None
        d["frames_per_s"] = self.frames / self.video_seconds if self.frames and self.video_seconds else None
        return d

    def screen(self) -> str:
        d = self.as_dict()
        rate = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines = [
            f"wmseg-predict: {self.processed} processed, {self.skipped_existing} skipped (done before), "
            f"{len(self.failed)} failed, in {self.seconds:.1f} s",
            f"  {self.images} images ({rate(d['images_per_s'])} images/s), {self.videos} videos, "
            f"{self.frames} frames ({rate(d['frames_per_s'])} frames/s)",
            f"  peak RAM {self.peak_rss_mb:.0f} MB"
            + ("" if self.peak_gpu_mb is None else f", peak GPU memory {self.peak_gpu_mb:.0f} MB"),
        ]
        if self.shared_marks or self.own_estimate:
            sizes = ", ".join(
                f"{m['size'][1]}x{m['size'][0]} from {m['images']} images" for m in self.shared_marks
            )
            lines.append(
                f"  shared marks: {len(self.shared_marks)} ({sizes or 'none'}); used for {self.shared_used}, "
                f"{len(self.own_estimate)} kept their own estimate"
                + (f": {', '.join(self.own_estimate[:5])}" if self.own_estimate else "")
                + (" ..." if len(self.own_estimate) > 5 else "")
            )
        lines += [f"  failed: {f['file']}: {f['reason']}" for f in self.failed[:20]]
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more in summary.json")
        return "\n".join(lines)


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which starts anew at exec
    (ru_maxrss keeps the parent's peak across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _reason(err: Exception) -> str:
    """Why a file failed, for the summary: a bad file's own reason, else the error."""
    if isinstance(err, DataError):
        return err.reason
    return str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"


def _peak_gpu_mb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


class Remover:
    """A detector (and an inpainter) loaded once, for any number of images and runs.

    `model`: a .onnx or .ckpt path, a Predictor, or None for the bundled model.
    `threshold`: None takes the model's own. `margin`: px the mask grows by before
    inpainting. `inpainter`: None is OpenCV's Telea. `remover`: `inpaint` paints over the
    mask; `restore` (a model with a restoration head) un-blends the mark from the photo
    under the mask and inpaints only where the mark's opacity is at least `opaque`
    (nothing left there to recover), handing over from one to the other across the
    opacity band `opaque - 0.1 .. opaque`; `auto` restores with a model that has the head
    and inpaints with one that has not. `max_pixels`: the largest image `run` reads
    (width x height; None: the default limit), a guard against decompression bombs."""

    def __init__(
        self,
        model: str | Path | Predictor | None = None,
        *,
        threshold: float | None = None,
        margin: int = 5,
        inpainter: Inpainter | None = None,
        detect: DetectOptions | None = None,
        device: str | None = None,
        threads: int = 0,
        precision: str = "int8",
        remover: str = "auto",
        opaque: float = 0.9,
        max_pixels: int | None = None,
    ) -> None:
        if remover not in REMOVERS:
            raise UserError(f"remover={remover}: use one of {', '.join(REMOVERS)}")
        if not 0.0 < opaque <= 1.0:
            raise UserError(f"opaque={opaque}: give the mark opacity (0, 1] above which to inpaint")
        try:
            self.max_pixels = pixel_limit(max_pixels)
        except ValueError as err:
            raise UserError(str(err)) from None
        if model is None or isinstance(model, str | Path):
            self.predictor = load_predictor(model, device=device, threads=threads, precision=precision)
        else:
            self.predictor = model
        self.threshold = float(self.predictor.threshold if threshold is None else threshold)
        self.margin, self.opaque = margin, opaque
        self.restore = remover == "restore" or (remover == "auto" and restores(self.predictor))
        self.detector = Detector(self.predictor, detect, restore=self.restore)
        self._inpainter = inpainter

    @property
    def inpainter(self) -> Inpainter:
        if self._inpainter is None:
            self._inpainter = OpenCVInpainter()
        return self._inpainter

    def probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.detector.probabilities(images)

    def maps(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """(C, H, W) per image: the probabilities, then (remover=restore) the restored
        photo and the mark's opacity (Detector.maps)."""
        return self.detector.maps(images)

    def mask(self, image: np.ndarray) -> np.ndarray:
        """bool (H, W): where `image` (uint8 (H, W, 3) RGB) holds a watermark."""
        return self.probabilities([image])[0] >= self.threshold

    def remove(self, image: np.ndarray, mask: np.ndarray, maps: np.ndarray | None = None) -> np.ndarray:
        """`image` with the watermark under `mask` (grown by `margin`) removed; every other
        pixel exactly as it was. remover=restore takes the restored photo from `maps` (this
        image's `maps`; computed when None) and inpaints only its opaque part."""
        region = dilate(mask, self.margin)
        if not self.restore:
            return fill(self.inpainter, image, region)
        if maps is None:
            maps = self.maps([image])[0]
        return restore(image, region, maps, self.opaque, self.inpainter)

    def clean(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cleaned image, detected mask) for one uint8 (H, W, 3) RGB image."""
        maps = self.maps([image])[0]
        mask = maps[0] >= self.threshold
        return self.remove(image, mask, maps), mask

    def run(self, input: str | Path, output: str | Path, **options: Any) -> dict[str, Any]:
        """Process `input` (image, video, folder, or .txt list) into `output`; see RunOptions.
        Returns the summary also written to `<output>/summary.json`."""
        return _Run(self, input, output, RunOptions(**options)).execute()


REMOVERS = ("auto", "inpaint", "restore")
# The opacity band below `opaque` across which removal hands over from un-blending to
# inpainting (a hard switch leaves a seam where the predicted opacity crosses it).
HANDOVER = 0.1


def restore(
    image: np.ndarray, region: np.ndarray, maps: np.ndarray, opaque: float, inpainter: Inpainter
) -> np.ndarray:
    """`image` (uint8 (H, W, 3)) with the restored photo of `maps` ((5, H, W): probability,
    RGB in [0, 1], opacity) inside `region` (bool (H, W)), the inpainter's fill where the
    opacity there is at least `opaque`, and the input bit for bit outside `region`."""
    if maps.shape[0] < 4 or maps.shape[1:] != image.shape[:2]:
        raise ValueError(f"restoration maps {maps.shape} do not fit the image {image.shape}")
    if not region.any():
        return image.copy()
    restored = np.clip(maps[1:4].transpose(1, 2, 0), 0.0, 1.0) * 255.0
    out = np.where(region[..., None], np.rint(restored).astype(np.uint8), image)
    if opaque >= 1.0:  # never inpaint
        return out
    # 0 below the band (un-blend), 1 from `opaque` up (inpaint), linear between.
    low = max(0.0, opaque - HANDOVER)
    share = np.clip((maps[4] - low) / max(opaque - low, 1e-6), 0.0, 1.0) * region
    if not share.any():
        return out
    painted = fill(inpainter, out, share > 0).astype(np.float32)
    mixed = (1.0 - share[..., None]) * restored + share[..., None] * painted
    return np.where(region[..., None], np.rint(mixed).astype(np.uint8), image)


MARKS = ("auto", "own", "shared")


class _Run:
    def __init__(self, remover: Remover, input: str | Path, output: str | Path, options: RunOptions) -> None:
        if options.mark not in MARKS:
            raise UserError(
                f"mark={options.mark}: use own (each image its own estimate), shared (one mark "
                "estimated from all the images that carry it) or auto (shared for videos)"
            )
        self.remover, self.options = remover, options
        self.jobs = find_jobs(input, output)  # a missing input is named before output is made
        self.out = check_writable(output, "output")
        self.summary = Summary(str(input), str(self.out), remover.predictor.name, remover.threshold)
        self.summary.mark = options.mark
        self._advance: Callable[[], None] = lambda: None
        self.shared: dict[tuple[int, int], SharedMark] = {}  # by (height, width)
        self._count = threading.Lock()

    def fail(self, job: Job, reason: str) -> None:
        log.info("failed: %s: %s", job.source, reason)
        self.summary.failed.append({"file": str(job.source), "reason": reason})
        self._advance()

    def finished(self, job: Job) -> None:
        self.summary.processed += 1
        self._advance()

    def execute(self) -> dict[str, Any]:
        start = time.perf_counter()
        o = self.options
        todo = [j for j in self.jobs if o.overwrite or not j.done(o.remove, o.overlay)]
        self.summary.skipped_existing = len(self.jobs) - len(todo)
        # A cleaned file is written after its mask: one without its mask is not this tool's
        # (an output folder above the input, say) and is never replaced.
        foreign = (
            [] if o.overwrite else [j for j in todo if o.remove and j.clean.exists() and not j.mask.exists()]
        )
        kept = {id(j) for j in foreign}
        todo = [j for j in todo if id(j) not in kept]
        show = sys.stderr.isatty() if o.progress is None else o.progress
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, disable=not show, transient=False) as progress:
            task = progress.add_task("wmseg-predict", total=len(todo) + len(foreign), rate="")

            def advance() -> None:
                speed = progress.tasks[0].speed
                progress.update(task, advance=1, rate=f"{speed:.1f} files/s" if speed else "")

            self._advance = advance
            for job in foreign:
                self.fail(
                    job,
                    f"{job.clean} exists and was not written by wmseg-predict: it is kept; choose "
                    "another output folder, or overwrite=true to replace it",
                )
            images = [j for j in todo if j.kind == "image"]
            t0 = time.perf_counter()
            if o.mark == "shared" and images:
                # From every image, done before or not: a resumed run un-blends with the same mark.
                self._estimate_shared([j for j in self.jobs if j.kind == "image"])
            self._images(images)
            self.summary.image_seconds = time.perf_counter() - t0 if images else 0.0
            t0 = time.perf_counter()
            for job in (j for j in todo if j.kind == "video"):
                self._video(job)
            self.summary.video_seconds = time.perf_counter() - t0 if self.summary.videos else 0.0
        self.summary.seconds = time.perf_counter() - start
        self.summary.batch_halvings = self.remover.detector.batch.halvings
        self.summary.peak_rss_mb = peak_rss_mb()
        self.summary.peak_gpu_mb = _peak_gpu_mb()
        result = self.summary.as_dict()
        write_text_atomic(self.out / "summary.json", json.dumps(result, indent=2))
        print(self.summary.screen())
        return result

    # --- images -------------------------------------------------------------------

    def _images(self, jobs: list[Job]) -> None:
        o, detector = self.options, self.remover.detector
        limit, pixels_max = detector.options, self.remover.max_pixels
        with ThreadPoolExecutor(o.decode_workers) as decode, ThreadPoolExecutor(o.encode_workers) as encode:
            decoding: deque[tuple[Job, Future]] = deque()
            writing: deque[tuple[Job, Future]] = deque()
            groups: dict[tuple[int, int], list[tuple[Job, SourceImage]]] = {}
            pending = iter(jobs)

            def refill() -> None:
                while len(decoding) < o.queue and (job := next(pending, None)) is not None:
                    decoding.append((job, decode.submit(read_source, job.source, None, pixels_max)))

            def collect(block_above: int) -> None:
                while len(writing) > block_above:
                    job, future = writing.popleft()
                    self._settle(job, future)

            def run_group(key: tuple[int, int]) -> None:
                members = groups.pop(key)
                try:
                    maps = detector.maps([src.rgb for _, src in members])
                except Exception as err:  # one bad batch never stops the rest
                    for job, _ in members:
                        self.fail(job, f"detection failed: {type(err).__name__}: {err}")
                    return
                for (job, src), image_maps in zip(members, maps, strict=True):
                    collect(o.queue - 1)
                    writing.append((job, encode.submit(self._write_image, job, src, image_maps)))

            refill()
            while decoding:
                job, future = decoding.popleft()
                refill()
                try:
                    src = future.result()
                except Exception as err:
                    self.fail(job, _reason(err))
                    continue
                key = detector.group_key(src.rgb)
                group = groups.setdefault(key, [])
                group.append((job, src))
                pixels = len(group) * max(1, key[0] * key[1])
                if key == (0, 0) or pixels >= limit.batch_pixels or len(group) >= limit.batch_images:
                    run_group(key)
                elif sum(len(g) for g in groups.values()) >= o.queue:  # bounded memory
                    run_group(max(groups, key=lambda k: len(groups[k])))
            for key in list(groups):
                run_group(key)
            collect(0)

    def _estimate_shared(self, jobs: list[Job]) -> None:
        """A first pass, one image size at a time (memory: one size's estimates): sizes
        read from the headers; for each size with at least MIN_IMAGES images, the own
        estimates of up to `sample_limit` of them, evenly spread, then the mark they share.
        Unreadable images and failed batches are left to the main pass to report."""
        detector, threshold = self.remover.detector, self.remover.threshold
        pixels_max = self.remover.max_pixels
        by_size: dict[tuple[int, int], list[Job]] = {}
        for job in jobs:
            try:
                by_size.setdefault(image_size(job.source, pixels_max), []).append(job)
            except Exception:  # reported by the main pass
                continue
        for size, members in by_size.items():
            if len(members) < MIN_IMAGES:
                continue
            limit = sample_limit(*size)
            if len(members) > limit:
                members = [members[i] for i in np.linspace(0, len(members) - 1, limit).round().astype(int)]
            estimates: list[MarkEstimate] = []
            batch = max(1, detector.options.batch_images)
            with ThreadPoolExecutor(self.options.decode_workers) as decode:
                for start in range(0, len(members), batch):
                    chunk = [j.source for j in members[start : start + batch]]
                    images = []
                    for future in [decode.submit(read_source, path, None, pixels_max) for path in chunk]:
                        try:
                            images.append(future.result().rgb)
                        except Exception:
                            continue
                    try:
                        maps = detector.maps(images)
                    except Exception as err:  # the main pass reports these images
                        log.warning("mark=shared: a batch of the first pass failed (%s)", err)
                        continue
                    estimates += [own_estimate(im, m, threshold) for im, m in zip(images, maps, strict=True)]
            mark = estimate_shared(estimates)
            if mark is not None:
                self.shared[mark.size] = mark
                self.summary.shared_marks.append(mark.describe())
        log.info("mark=shared: %d shared marks from %d image sizes", len(self.shared), len(by_size))

    def _settle(self, job: Job, future: Future) -> None:
        try:
            future.result()
        except Exception as err:
            self.fail(job, _reason(err))
        else:
            self.summary.images += 1
            self.finished(job)

    def _write_image(self, job: Job, src: SourceImage, maps: np.ndarray) -> None:
        mask = maps[0] >= self.remover.threshold
        if self.options.mark == "shared":
            mark = find_mark(self.shared, mask)
            with self._count:  # encode threads write images side by side
                if mark is not None:
                    self.summary.shared_used += 1
                else:
                    self.summary.own_estimate.append(str(job.source))
            if mark is not None:
                maps, mask = mark.maps(src.rgb, maps), mark.mask
        # The cleaned file is written last: a job counts as done when all its files exist.
        write_bytes_atomic(job.mask, encode_png(mask.astype(np.uint8) * 255))
        if self.options.overlay:
            write_bytes_atomic(job.overlay, encode_jpeg(tint(src.rgb, mask)))
        if self.options.remove:
            write_like(src, self.remover.remove(src.rgb, mask, maps), job.clean)

    # --- videos -------------------------------------------------------------------

    def _video(self, job: Job) -> None:
        from wmseg.predict.video import VideoOptions, process_video

        try:
            frames = process_video(
                self.remover,
                job,
                VideoOptions(**self.options.video),
                self.options.remove,
                self.options.overlay,
                shared=self.options.mark != "own",
            )
        except Exception as err:
            self.fail(job, _reason(err))
            return
        frames, mark = frames
        if mark is not None:
            self.summary.shared_marks.append({"video": str(job.source), **mark.describe()})
            self.summary.shared_used += 1
        elif self.options.mark != "own":
            self.summary.own_estimate.append(str(job.source))
        self.summary.videos += 1
        self.summary.frames += frames
        self.finished(job)
