"""A batch run: one cleaner (a `Remover`, or anything with its `Cleaner` interface) over
the images, folders, .txt lists and videos of an input, into an output folder: resume
(done files skipped), one bad file never stops the rest, foreign files never replaced,
shared marks, a progress bar and `summary.json`. No Lightning.
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
from wmseg.image_files import image_size
from wmseg.inference.overlay import tint
from wmseg.predict.cleaner import Cleaner
from wmseg.predict.image_io import SourceImage, encode_jpeg, encode_png, read_source, write_like
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


def failure_reason(err: Exception) -> str:
    """Why a file failed, for the summary: a bad file's own reason, else the error."""
    if isinstance(err, DataError):
        return err.reason
    return str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"


def _peak_gpu_mb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


MARKS = ("auto", "own", "shared")


class BatchRun:
    """One run of a cleaner over the images, folders, lists and videos of `input`:
    resume, failures named, shared marks, progress and the summary."""

    def __init__(self, remover: Cleaner, input: str | Path, output: str | Path, options: RunOptions) -> None:
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
                    self.fail(job, failure_reason(err))
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
            self.fail(job, failure_reason(err))
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
            self.fail(job, failure_reason(err))
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
