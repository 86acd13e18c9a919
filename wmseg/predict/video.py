"""Videos, decoded and encoded as a stream with PyAV: memory is a few frames, never the
video's length. Each frame's mask is the mean of its neighbours' probabilities (a
centred window), so a static mark does not flicker; timestamps (variable frame rate
too) and the rotation are kept, and audio packets are copied untouched. No Lightning."""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from glob import escape as glob_escape
from pathlib import Path

import numpy as np

from wmseg.atomic import write_atomic
from wmseg.errors import ConfigError, DataError
from wmseg.inference.overlay import tint
from wmseg.predict.cleaner import Cleaner
from wmseg.predict.jobs import Job
from wmseg.predict.shared_mark import SharedMark, estimate_shared, own_estimate, sample_limit

log = logging.getLogger(__name__)

# Container format by suffix (the temporary file's name says nothing).
FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
# Codec when `codec` is null: one every player of that container takes.
DEFAULT_CODECS = {"webm": "libvpx-vp9", "avi": "mpeg4"}
HARDWARE = {"libx264": "h264_nvenc", "libx265": "hevc_nvenc"}


@dataclass
class VideoOptions:
    window: int = 5  # frames whose probabilities make one frame's mask (odd; 1: none)
    batch: int = 8  # frames per detector call
    codec: str | None = None  # null: libx264 (libvpx-vp9 for .webm, mpeg4 for .avi)
    crf: int = 18
    preset: str = "medium"  # x264/x265 speed preset
    pix_fmt: str = "yuv420p"
    hardware: bool = True  # NVENC when the codec has one and it opens; else software

    def check(self) -> None:
        if not isinstance(self.window, int) or self.window < 1 or self.window % 2 == 0:
            raise ConfigError(f"video.window={self.window!r}: use an odd whole number of frames >= 1")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"video.batch={self.batch!r}: use a whole number >= 1")


def _upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Pixels as shown: FFmpeg's display rotation is counter-clockwise degrees."""
    return np.ascontiguousarray(np.rot90(frame, (rotation // 90) % 4)) if rotation % 360 else frame


def _stored(frame: np.ndarray, rotation: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(frame, -(rotation // 90) % 4)) if rotation % 360 else frame


def _hardware_works(name: str, width: int, height: int, pix_fmt: str) -> bool:
    """Whether encoder `name` opens here: present in the build is not a working GPU."""
    import av

    if name not in av.codecs_available:
        return False
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
        ctx.time_base = Fraction(1, 25)
        ctx.open()
        return True
    except Exception as err:
        log.info("%s does not open here (%s)", name, err)
        return False


class _Encoder:
    """One output video: the input's audio copied, video frames encoded with the input's
    timestamps and rotation, written to `tmp`."""

    def __init__(self, tmp: str, fmt: str, source, options: VideoOptions, rotation: int, gray: bool) -> None:
        import av

        self.container = av.open(tmp, mode="w", format=fmt)
        video = source.streams.video[0]
        width, height = video.codec_context.width, video.codec_context.height
        rate = video.average_rate or video.guessed_rate or 25
        codec = "ffv1" if gray else options.codec or DEFAULT_CODECS.get(fmt, "libx264")
        settings = (
            {}
            if gray or not codec.startswith("libx26")
            else {"crf": str(options.crf), "preset": options.preset}
        )
        if not gray and options.hardware and codec in HARDWARE:
            if _hardware_works(HARDWARE[codec], width, height, options.pix_fmt):
                codec, settings = HARDWARE[codec], {"preset": "p5", "cq": str(options.crf)}
            else:
                log.info("no working %s: encoding with %s", HARDWARE[codec], codec)
        self.stream = self.container.add_stream(codec, rate=rate, options=settings)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "gray" if gray else options.pix_fmt
        self.stream.time_base = video.time_base
        self.stream.codec_context.time_base = video.time_base
        if rotation % 360:
            self.stream.set_display_rotation(rotation)
        self.codec = codec
        self.audio = {}
        if not gray:
            for audio in source.streams.audio:
                self.audio[audio.index] = self.container.add_stream_from_template(audio)
        self.gray = gray

    def audio_packet(self, packet) -> None:
        out = self.audio.get(packet.stream.index)
        if out is not None and packet.dts is not None:
            packet.stream = out
            self.container.mux(packet)

    def frame(self, pixels: np.ndarray, template) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(pixels, format="gray" if self.gray else "rgb24")
        if not self.gray:
            frame = frame.reformat(format=self.stream.pix_fmt)
        frame.pts, frame.time_base = template.pts, template.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _frames(container) -> Iterator[tuple[object, object]]:
    """(kind, item) in file order: ("video", frame) decoded, ("audio", packet) as stored."""
    video = container.streams.video[0]
    for packet in container.demux(video, *container.streams.audio):
        if packet.stream.type == "audio":
            yield "audio", packet
        else:
            for frame in packet.decode():
                yield "video", frame


def process_video(
    remover: Cleaner, job: Job, options: VideoOptions, remove: bool, overlay: bool, shared: bool = False
) -> tuple[int, SharedMark | None]:
    """Write the mask video (and the overlay and cleaned videos) in one pass over the
    input; returns the frame count and, with `shared`, the video's static mark when it has
    one (estimated first from frames spread over the video: wmseg.predict.shared_mark),
    with which every frame that carries it is cleaned. Each output goes to a temporary file
    beside it and is renamed only when complete."""
    import av

    options.check()
    fmt = FORMATS[job.source.suffix.lower()]
    try:
        with av.open(str(job.source)) as probe:
            if not probe.streams.video:
                raise DataError(job.source, "holds no video stream")
            first = next(probe.decode(video=0), None)
    except av.FFmpegError as err:
        raise DataError(job.source, f"unreadable video ({err}); replace or remove the file") from err
    if first is None:
        raise DataError(job.source, "holds no decodable video frame")
    rotation = int(getattr(first, "rotation", 0) or 0)
    outputs = [("mask", job.mask, "matroska", True)]
    if overlay:
        outputs.append(("overlay", job.overlay, fmt, False))
    if remove:
        outputs.append(("clean", job.clean, fmt, False))
    for _, path, _, _ in outputs:  # what a killed run left behind (not a live one's)
        for leftover in path.parent.glob(f".{glob_escape(path.name)}.*.partial"):
            if not _alive(leftover.name.rsplit(".", 2)[-2]):
                leftover.unlink(missing_ok=True)
    tmps = {name: path.with_name(f".{path.name}.{os.getpid()}.partial") for name, path, _, _ in outputs}
    encoders: dict[str, _Encoder] = {}
    try:
        mark = _static_mark(remover, job, options) if shared else None
        with av.open(str(job.source)) as source:
            for name, _, container_format, gray in outputs:
                encoders[name] = _Encoder(str(tmps[name]), container_format, source, options, rotation, gray)
            expected = int(source.streams.video[0].frames or 0)  # 0: the header does not say
            count = _stream(remover, source, options, encoders, mark)
        # Headers of phone videos (edit lists) may count a frame or two more than decode.
        if count < expected - max(2, expected // 100):
            raise DataError(
                job.source,
                f"ended after {count} of the {expected} frames its header lists (truncated?); "
                "its outputs are not written",
            )
        for encoder in encoders.values():
            encoder.close()
        encoders.clear()
        for name, path, _, _ in outputs:
            write_atomic(path, lambda tmp, name=name: os.replace(tmps[name], tmp))
        return count, mark
    except av.FFmpegError as err:
        raise DataError(job.source, f"video could not be processed ({err})") from err
    finally:
        for encoder in encoders.values():
            with contextlib.suppress(Exception):  # already failing: keep the first error
                encoder.container.close()
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


def _alive(pid: str) -> bool:
    """Whether process `pid` (a .partial file's writer) still runs."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _static_mark(remover: Cleaner, job: Job, options: VideoOptions) -> SharedMark | None:
    """The mark shared by frames spread evenly over the video (a first decoding pass; the
    detector sees only the sampled frames), or None."""
    import av

    with av.open(str(job.source)) as source:
        video = source.streams.video[0]
        width, height = video.codec_context.width, video.codec_context.height
        limit = sample_limit(height, width)
        step = max(1, (video.frames or 0) // limit)  # frames unknown (0): the first ones
        picked: list[np.ndarray] = []
        for index, frame in enumerate(source.decode(video)):
            if index % step == 0:
                rotation = int(getattr(frame, "rotation", 0) or 0)
                picked.append(_upright(frame.to_ndarray(format="rgb24"), rotation))
                if len(picked) >= limit:
                    break
    estimates = []
    for start in range(0, len(picked), options.batch):
        batch = picked[start : start + options.batch]
        for rgb, maps in zip(batch, remover.maps(batch), strict=True):
            estimates.append(own_estimate(rgb, maps, remover.threshold))
    return estimate_shared(estimates)


def _stream(
    remover: Cleaner,
    source,
    options: VideoOptions,
    encoders: dict[str, _Encoder],
    mark: SharedMark | None = None,
) -> int:
    """Detect in batches, smooth over a centred window, encode in order; returns frames.
    With `mark`, a frame whose mask fits it is masked and cleaned with it."""
    half = options.window // 2
    decoded: list[tuple[object, np.ndarray]] = []  # frames waiting for the detector
    window: deque[tuple[object, np.ndarray, np.ndarray]] = deque()  # (frame, upright rgb, maps)
    base = written = 0  # the index of window[0]; frames written so far

    def emit() -> None:
        nonlocal base, written
        center = written - base
        frame, rgb, maps = window[center]
        lo, hi = max(0, center - half), min(len(window), center + half + 1)
        mask = np.mean([window[i][2][0] for i in range(lo, hi)], axis=0) >= remover.threshold
        if mark is not None and mark.fits(mask):
            maps, mask = mark.maps(rgb, maps), mark.mask
        rotation = int(getattr(frame, "rotation", 0) or 0)
        encoders["mask"].frame(_stored(mask.astype(np.uint8) * 255, rotation), frame)
        if "overlay" in encoders:
            encoders["overlay"].frame(_stored(tint(rgb, mask), rotation), frame)
        if "clean" in encoders:
            encoders["clean"].frame(_stored(remover.remove(rgb, mask, maps), rotation), frame)
        written += 1
        while base < written - half:  # frames no later mask needs
            window.popleft()
            base += 1

    def detect(final: bool) -> None:
        if decoded:
            maps = remover.maps([rgb for _, rgb in decoded])
            window.extend((frame, rgb, m) for (frame, rgb), m in zip(decoded, maps, strict=True))
            decoded.clear()
        # A frame is written once the `half` frames after it are known (all, at the end).
        while written < base + len(window) - (0 if final else half):
            emit()

    for kind, item in _frames(source):
        if kind == "audio":
            for encoder in encoders.values():
                encoder.audio_packet(item)
            continue
        rotation = int(getattr(item, "rotation", 0) or 0)
        decoded.append((item, _upright(item.to_ndarray(format="rgb24"), rotation)))
        if len(decoded) >= options.batch:
            detect(final=False)
    detect(final=True)
    return written


def video_info(path: str | Path) -> dict:
    """Frame count, timestamps, size, rotation and audio of a video (for checks and tests)."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = list(container.decode(video))
        info = {
            "frames": len(frames),
            "pts": [f.pts for f in frames],
            "time_base": str(video.time_base),
            "size": (video.codec_context.width, video.codec_context.height),
            "rotation": int(getattr(frames[0], "rotation", 0) or 0) if frames else 0,
        }
    with av.open(str(path)) as container:
        info["audio"] = [
            {
                "codec": a.codec_context.name,
                "packets": [bytes(p) for p in container.demux(a) if p.size],
            }
            for a in container.streams.audio[:1]
        ]
    return info
