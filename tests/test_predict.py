"""wmseg-predict: detect and remove in images, folders and videos, with nothing lost."""

import itertools
import json
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from tests.conftest import run_script
from wmseg.errors import ConfigError, UserError
from wmseg.inference import OnnxPredictor, TorchPredictor
from wmseg.predict import AdaptiveBatch, DetectOptions, Detector, OnnxInpainter, Remover, dilate, fill
from wmseg.predict.detect import is_out_of_memory
from wmseg.predict.image_io import encode_like, read_source
from wmseg.predict.inpaint import OpenCVInpainter, PatchMatchInpainter
from wmseg.predict.jobs import find_jobs
from wmseg.predict.video import video_info
from wmseg.synth import SynthConfig, WatermarkSynth


def _photos(n: int, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    synth = WatermarkSynth(SynthConfig(size=size, clean_fraction=0.0))
    return [synth.render(seed, i).image for i in range(n)]


@pytest.fixture(scope="module")
def onnx_predictor(exported) -> OnnxPredictor:
    folder, _ = exported
    return OnnxPredictor(folder / "model.onnx", threads=2)


class OutOfMemoryAbove:
    """A real predictor that, like a full GPU, fails on batches larger than `most`."""

    def __init__(self, predictor, most: int, error: type[BaseException] = MemoryError) -> None:
        self.predictor, self.most, self.error = predictor, most, error
        self.threshold, self.stride, self.name = predictor.threshold, predictor.stride, "oom"
        self.calls: list[int] = []

    def logits(self, batch):
        self.calls.append(len(batch))
        if len(batch) > self.most:
            raise self.error("Failed to allocate memory for requested buffer")
        return self.predictor.logits(batch)


# --- detection ---------------------------------------------------------------------


def test_batched_output_equals_per_image_output(onnx_predictor):
    images = _photos(5)
    batched = Detector(onnx_predictor, DetectOptions(batch_images=4)).probabilities(images)
    single = [Detector(onnx_predictor, DetectOptions(batch_images=1)).probabilities([im])[0] for im in images]
    for a, b in zip(batched, single, strict=True):
        assert a.shape == (96, 96)
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_tiled_equals_untiled_on_an_image_that_fits_both_ways(trained_ckpt):
    predictor = TorchPredictor(trained_ckpt)
    image = _photos(1, size=320)[0]
    whole = Detector(predictor).probabilities([image])[0]
    tiles = DetectOptions(tile_pixels=128 * 128, tile=192, overlap=64)
    tiled = Detector(predictor, tiles).probabilities([image])[0]
    assert tiled.shape == whole.shape == (320, 320)
    diff = np.abs(tiled - whole)  # the seams differ only by the context a tile lacks
    assert diff.mean() < 0.01 and np.quantile(diff, 0.95) < 0.04  # feathered: 0.006, 0.018 measured


@pytest.mark.parametrize("error", [MemoryError, torch.cuda.OutOfMemoryError])
def test_out_of_memory_halves_the_batch_and_every_image_gets_its_output(onnx_predictor, error):
    images = _photos(9)
    wrapped = OutOfMemoryAbove(onnx_predictor, most=2, error=error)
    detector = Detector(wrapped, DetectOptions(batch_images=8, grow_after=2))
    got = detector.probabilities(images)
    expected = Detector(onnx_predictor, DetectOptions(batch_images=1)).probabilities(images)
    assert len(got) == 9
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert wrapped.calls[:3] == [8, 4, 2]  # halved, the same images retried
    # It grew back after two successes and was halved again: it never ran more than fits.
    assert detector.batch.halvings >= 2 and max(detector.batch.sizes) == 2


def test_the_batch_grows_back_after_successes():
    batch = AdaptiveBatch(8, grow_after=2)
    state = {"fail": True}

    def run(items):
        if len(items) > 2 and state.pop("fail", False):
            raise MemoryError
        return list(items)

    assert batch.run(run, list(range(20))) == list(range(20))
    assert batch.sizes[:4] == [4, 4, 8, 4]  # halved once, doubled after two successes


def test_other_errors_are_not_mistaken_for_out_of_memory():
    class RuntimeException(Exception):  # the name ONNX Runtime's errors carry
        pass

    assert is_out_of_memory(RuntimeException("Failed to allocate memory for requested buffer of size 1"))
    assert not is_out_of_memory(RuntimeException("Invalid input shape"))
    assert not is_out_of_memory(ValueError("bad value"))
    with pytest.raises(ValueError):
        AdaptiveBatch(4).run(lambda items: (_ for _ in ()).throw(ValueError("bad")), [1, 2])


# --- removal ---------------------------------------------------------------------------


def _marked(seed: int = 3, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    sample = WatermarkSynth(SynthConfig(size=size, clean_fraction=0.0)).render(seed, 0)
    return sample.image, sample.mask.astype(bool)


@pytest.mark.parametrize("painter", [OpenCVInpainter("telea"), OpenCVInpainter("ns"), PatchMatchInpainter(5)])
def test_inpainters_change_only_the_masked_pixels(painter):
    image, mask = _marked()
    grown = dilate(mask, 3)
    assert grown.sum() > mask.sum() and (grown | mask).sum() == grown.sum()
    clean = fill(painter, image, grown)
    assert clean.shape == image.shape and clean.dtype == np.uint8
    assert np.array_equal(clean[~grown], image[~grown])
    assert not np.array_equal(clean[grown], image[grown])


def _mean_fill_model(path) -> None:
    """A real ONNX inpainting model: masked pixels become the image's mean colour."""

    class MeanFill(torch.nn.Module):
        def forward(self, image, mask):
            mean = image.mean(dim=(2, 3), keepdim=True)
            return image * (1 - mask) + mean * mask

    args = (torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64))
    torch.onnx.export(MeanFill(), args, str(path), input_names=["img", "msk"], dynamo=False)


def test_an_onnx_inpainter_of_the_users_runs_on_the_region_around_the_mask(tmp_path):
    _mean_fill_model(tmp_path / "inpaint.onnx")
    image = np.zeros((120, 200, 3), np.uint8)
    image[:, 100:] = 200
    mask = np.zeros((120, 200), bool)
    mask[50:60, 20:40] = True  # in the black half: the crop around it is black too
    painter = OnnxInpainter(tmp_path / "inpaint.onnx", size=64)
    clean = fill(painter, image, mask)
    assert np.array_equal(clean[~mask], image[~mask])
    assert clean[mask].max() < 10  # the crop's mean, not the whole image's (100)
    with pytest.raises(ConfigError, match=r"inpainter\.path=.*missing\.onnx not found"):
        OnnxInpainter(tmp_path / "missing.onnx")


def test_a_missing_inpainter_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "patchmatch", None)  # as if not installed
    with pytest.raises(ConfigError, match="pip install pypatchmatch"):
        PatchMatchInpainter()


def test_remover_clean_returns_the_cleaned_image_and_the_mask(onnx_predictor):
    image = _photos(1)[0]
    probs = Remover(onnx_predictor).probabilities([image])[0]
    remover = Remover(onnx_predictor, threshold=float(np.quantile(probs, 0.9)), margin=2)
    clean, mask = remover.clean(image)
    assert mask.dtype == bool and mask.shape == (96, 96) and 0.05 < mask.mean() < 0.15
    grown = dilate(mask, 2)
    assert np.array_equal(clean[~grown], image[~grown]) and not np.array_equal(clean, image)


# --- files ---------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_written_images_keep_their_stored_orientation(tmp_path, orientation):
    pixels = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "in.png", exif=exif)
    source = read_source(tmp_path / "in.png")
    (tmp_path / "out.png").write_bytes(encode_like(source, source.rgb))
    with Image.open(tmp_path / "out.png") as out:
        assert out.getexif().get(0x0112) == orientation
        assert np.array_equal(np.asarray(out.convert("RGB")), pixels)  # stored as the input is
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(out).convert("RGB")), source.rgb)


def _folder(tmp_path, n: int = 4):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    for i, image in enumerate(_photos(n)):
        Image.fromarray(image).save(root / ("sub" if i % 2 else ".") / f"p{i}.png")
    return root


def _remover(onnx_predictor, **kw) -> Remover:
    return Remover(onnx_predictor, detect=DetectOptions(batch_images=kw.pop("batch", 4)), **kw)


def test_a_folder_with_bad_files_processes_the_good_ones_and_names_the_bad(onnx_predictor, tmp_path):
    root = _folder(tmp_path)
    good_jpeg = root / "good.jpg"
    Image.fromarray(_photos(1, seed=4)[0]).save(good_jpeg, quality=80)
    (root / "truncated.jpg").write_bytes(good_jpeg.read_bytes()[:300])
    (root / "empty.webp").write_bytes(b"")
    (root / "text.png").write_text("not an image at all")
    summary = _remover(onnx_predictor).run(root, tmp_path / "out", remove=True)
    failed = {f["file"].rsplit("/", 1)[-1]: f["reason"] for f in summary["failed"]}
    assert set(failed) == {"truncated.jpg", "empty.webp", "text.png"}
    assert "truncated" in failed["truncated.jpg"] or "unreadable image" in failed["truncated.jpg"]
    assert "not a JPEG, PNG, WebP, BMP or TIFF image" in failed["text.png"]
    assert "not a JPEG" in failed["empty.webp"] or "unreadable" in failed["empty.webp"]
    # Formats the README does not list are refused, whatever their name (PPM, TGA, ICO, ...).
    for fmt, name in (("PPM", "netpbm.jpg"), ("TGA", "targa.png"), ("ICO", "icon.bmp")):
        Image.fromarray(_photos(1, seed=5)[0][:32, :32]).save(root / name, format=fmt)
    formats = _remover(onnx_predictor).run(root, tmp_path / "out2", overlay=False)
    refused = {f["file"].rsplit("/", 1)[-1] for f in formats["failed"] if "not a JPEG" in f["reason"]}
    assert {"netpbm.jpg", "targa.png", "icon.bmp", "text.png"} <= refused
    assert summary["processed"] == summary["images"] == 5
    out = tmp_path / "out"
    for name in ("p0", "sub/p1", "p2", "sub/p3", "good"):
        assert (out / f"{name}.mask.png").is_file() and (out / f"{name}.overlay.jpg").is_file()
    assert json.loads((out / "summary.json").read_text())["failed"] == summary["failed"]
    assert not list(out.rglob("*.tmp"))


def test_pixels_outside_the_dilated_mask_are_unchanged_after_removal(onnx_predictor, tmp_path):
    root = _folder(tmp_path, 2)
    probs = Remover(onnx_predictor).probabilities(_photos(2))
    threshold = float(np.quantile(np.concatenate([p.ravel() for p in probs]), 0.9))
    _remover(onnx_predictor, threshold=threshold, margin=3).run(root, tmp_path / "out", remove=True)
    for name in ("p0", "sub/p1"):
        original = np.asarray(Image.open(root / f"{name}.png").convert("RGB"))
        clean = np.asarray(Image.open(tmp_path / "out" / f"{name}.png").convert("RGB"))
        mask = np.asarray(Image.open(tmp_path / "out" / f"{name}.mask.png")) == 255
        grown = dilate(mask, 3)
        assert mask.any() and np.array_equal(clean[~grown], original[~grown])
        assert not np.array_equal(clean[grown], original[grown])


def test_jpeg_outputs_keep_quality_and_exif_orientation(onnx_predictor, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_photos(1, size=96)[0][:64]).save(root / "phone.jpg", quality=70, exif=exif)
    _remover(onnx_predictor, threshold=0.3).run(root, tmp_path / "out", remove=True)
    with Image.open(root / "phone.jpg") as src, Image.open(tmp_path / "out" / "phone.jpg") as out:
        assert out.getexif().get(0x0112) == 6 and out.size == src.size == (96, 64)
        assert out.quantization == src.quantization
    mask = Image.open(tmp_path / "out" / "phone.mask.png")
    assert mask.size == (64, 96)  # the mask is upright, as the photo is shown


def test_a_killed_run_resumes_without_redoing_done_files(onnx_predictor, tmp_path):
    root = _folder(tmp_path, 6)

    class StopAfter:
        def __init__(self, n):
            self.n, self.threshold, self.stride, self.name = n, 0.5, onnx_predictor.stride, "stop"

        def logits(self, batch):
            if self.n == 0:
                raise KeyboardInterrupt  # the job is killed here
            self.n -= 1
            return onnx_predictor.logits(batch)

    with pytest.raises(KeyboardInterrupt):
        Remover(StopAfter(3), detect=DetectOptions(batch_images=1)).run(root, tmp_path / "out", remove=True)
    done = sorted((tmp_path / "out").rglob("*.mask.png"))
    assert len(done) == 3
    stamps = {p: p.stat().st_mtime_ns for p in done}
    summary = _remover(onnx_predictor, batch=1).run(root, tmp_path / "out", remove=True)
    assert summary["skipped_existing"] == 3 and summary["processed"] == 3
    assert {p: p.stat().st_mtime_ns for p in done} == stamps
    assert len(list((tmp_path / "out").rglob("*.mask.png"))) == 6
    redo = _remover(onnx_predictor).run(root, tmp_path / "out", remove=True, overwrite=True)
    assert redo["processed"] == 6 and redo["skipped_existing"] == 0


def test_an_output_folder_inside_the_input_is_not_read_back(onnx_predictor, tmp_path):
    root = _folder(tmp_path, 2)
    _remover(onnx_predictor).run(root, root / "cleaned", remove=True)
    jobs = find_jobs(root, root / "cleaned")
    assert sorted(j.source.name for j in jobs) == ["p0.png", "p1.png"]
    with pytest.raises(ConfigError, match="is the input folder"):
        find_jobs(root, root)


def test_lists_and_names_that_share_a_stem(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(_photos(1)[0]).save(root / "a.png")
    Image.fromarray(_photos(1)[0]).save(root / "a.jpg")
    jobs = find_jobs(root, tmp_path / "out")
    assert [(j.source.name, j.mask.name) for j in jobs] == [
        ("a.jpg", "a.mask.png"),
        ("a.png", "a.png.mask.png"),
    ]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\nin/a.png\n{root / 'a.jpg'}\n\nin/missing.png\n")
    listed = find_jobs(listing, tmp_path / "out2")
    assert [j.source.name for j in listed] == ["a.png", "a.jpg", "missing.png"]
    assert listed[0].clean == (tmp_path / "out2" / "a.png").resolve()


# --- video ---------------------------------------------------------------------------


def make_video(path, frames=12, size=(96, 64), audio=True, pts=None, rotation=0, faststart=False):
    """A real H.264 video with a bright static mark (and an AAC tone); `pts` in 1/1000 s;
    `faststart`: its index before the frames (as streamed files are)."""
    w, h = size
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            video.set_display_rotation(rotation)
        if audio:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        times = pts or [i * 40 for i in range(frames)]
        for i, t in enumerate(times):
            pixels = np.full((h, w, 3), 40 + 5 * i, np.uint8)
            pixels[8:20, 10:60] = 250
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio:
            n = 16000 * (times[-1] + 40) // 1000
            tone = (0.2 * np.sin(np.arange(n) / 16000 * 2 * np.pi * 440)).astype(np.float32)[None]
            for k in range(0, n, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[:, k : k + 1024], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, k
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)


@pytest.mark.parametrize("audio", [True, False])
def test_a_video_keeps_frames_size_timestamps_and_audio(onnx_predictor, tmp_path, audio):
    source = tmp_path / "in" / "clip.mp4"
    source.parent.mkdir()
    make_video(source, pts=[0, 40, 80, 200, 240, 400, 440, 480, 600, 640], audio=audio)  # variable rate
    summary = _remover(onnx_predictor, threshold=0.3).run(source, tmp_path / "out", remove=True)
    assert summary["videos"] == 1 and summary["frames"] == 10 and not summary["failed"]
    before = video_info(source)
    for name in ("clip.mp4", "clip.overlay.mp4", "clip.mask.mkv"):
        after = video_info(tmp_path / "out" / name)
        assert after["frames"] == before["frames"] == 10 and after["size"] == before["size"]
        seconds = [Fraction(p) * Fraction(after["time_base"]) for p in after["pts"]]
        assert seconds == [Fraction(p) * Fraction(before["time_base"]) for p in before["pts"]]
    clean = video_info(tmp_path / "out" / "clip.mp4")
    if audio:
        assert clean["audio"][0]["codec"] == before["audio"][0]["codec"] == "aac"
        assert clean["audio"][0]["packets"] == before["audio"][0]["packets"]  # copied, not re-encoded
    else:
        assert clean["audio"] == before["audio"] == []


def test_a_rotated_video_keeps_its_rotation(onnx_predictor, tmp_path):
    source = tmp_path / "rotated.mp4"
    make_video(source, frames=4, audio=False, rotation=90)
    assert video_info(source)["rotation"] == 90
    _remover(onnx_predictor).run(source, tmp_path / "out", remove=True)
    after = video_info(tmp_path / "out" / "rotated.mp4")
    assert after["rotation"] == 90 and after["size"] == (96, 64) and after["frames"] == 4


class Flickering:
    """A detector as unsteady as a real one on a static mark: frame by frame, in order, it
    is sure (p 0.98) and then unsure (p 0.27) about every pixel."""

    stride, threshold, name = 32, 0.5, "flickering"

    def __init__(self) -> None:
        self.frames = 0

    def logits(self, batch):
        out = np.empty((len(batch), 1, *batch.shape[2:]), np.float32)
        for i in range(len(batch)):
            out[i] = 4.0 if self.frames % 2 == 0 else -1.0
            self.frames += 1
        return out


def test_a_truncated_video_is_a_failure_and_leftovers_are_removed(onnx_predictor, tmp_path):
    source = tmp_path / "cut.mp4"
    make_video(source, frames=40, audio=False, faststart=True)
    with av.open(str(source)) as container:  # cut after the 12th packet: no error, just an end
        ends = [p.pos + p.size for p in container.demux(video=0) if p.size]
    source.write_bytes(source.read_bytes()[: ends[11]])  # the header still lists 40 frames
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = out / f".cut.mask.mkv.{dead.pid}.partial"  # what a killed run leaves
    leftover.write_bytes(b"half a video")
    summary = _remover(onnx_predictor).run(source, out, remove=True)
    (failed,) = summary["failed"]
    assert "of the 40 frames its header lists" in failed["reason"], failed
    assert summary["videos"] == 0 and not (out / "cut.mask.mkv").exists()
    assert not leftover.exists() and not list(out.glob(".*.partial"))


def test_temporal_smoothing_keeps_a_static_mark_steady(onnx_predictor, tmp_path):
    from wmseg.predict.video import VideoOptions, process_video

    source = tmp_path / "static.mp4"
    make_video(source, frames=9, audio=False)
    job = find_jobs(source, tmp_path / "out")[0]
    (tmp_path / "out").mkdir()

    def mask_changes(window: int, predictor) -> float:
        remover = Remover(predictor, detect=DetectOptions(batch_images=4))
        process_video(remover, job, VideoOptions(window=window, batch=4), remove=False, overlay=False)
        with av.open(str(job.mask)) as container:
            masks = [f.to_ndarray() > 127 for f in container.decode(video=0)]
        assert len(masks) == 9
        return float(np.mean([np.mean(a != b) for a, b in itertools.pairwise(masks)]))

    # Unsmoothed, the mask blinks on and off; over 5 frames the mean stays above 0.5.
    assert mask_changes(1, Flickering()) == 1.0
    assert mask_changes(5, Flickering()) == 0.0
    assert mask_changes(5, onnx_predictor) <= mask_changes(1, onnx_predictor)  # a real model too
    with pytest.raises(ConfigError, match=r"video\.window=4"):
        VideoOptions(window=4).check()


# --- the command ------------------------------------------------------------------


def test_the_command_line(exported, tmp_path):
    folder, _ = exported
    root = _folder(tmp_path, 2)
    out = tmp_path / "out"
    args = ["-m", "wmseg.predict", f"model={folder / 'model.onnx'}", f"input={root}", f"output={out}"]
    done = run_script([*args, "remove=true", "preset=fast", "progress=false"], tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 processed, 0 skipped" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and (out / "sub" / "p1.png").is_file() and (out / "predict.log").is_file()
    bad = run_script([*args[:2], f"model={tmp_path}/none.onnx", f"input={root}", f"output={out}"], tmp_path)
    assert bad.returncode == 1 and "Error: model=" in bad.stderr and "not found" in bad.stderr
    odd = run_script([*args, "batch.images=0"], tmp_path)
    assert odd.returncode == 1 and "Error: batch.images=0: use a whole number >= 1" in odd.stderr
    # Some inputs failed: the rest is processed and the exit status says so (2).
    (root / "broken.png").write_text("not an image")
    partly = run_script([*args, "progress=false", "overwrite=true"], tmp_path, timeout=240)
    assert partly.returncode == 2, partly.stderr[-2000:]
    assert "2 processed" in partly.stdout and "1 failed" in partly.stdout and "broken.png" in partly.stdout


def test_a_run_that_cannot_start_says_why_in_one_line_and_creates_nothing(tmp_path):
    out = tmp_path / "out"
    missing = run_script(["-m", "wmseg.predict", f"input={tmp_path / 'none'}", f"output={out}"], tmp_path)
    assert missing.returncode == 1 and "Error: input=" in missing.stderr
    assert "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr and not out.exists()
    a_file = tmp_path / "taken.txt"
    a_file.write_text("mine")
    (tmp_path / "in").mkdir()
    for output, reason in ((a_file, "File exists"), ("/proc/wmseg-x", "")):
        done = run_script(["-m", "wmseg.predict", f"input={tmp_path / 'in'}", f"output={output}"], tmp_path)
        assert done.returncode == 1 and f"Error: output={output} is not a writable folder" in done.stderr
        assert reason in done.stderr and "Traceback" not in done.stderr
    assert a_file.read_text() == "mine"


def test_a_file_this_tool_did_not_write_is_never_replaced(onnx_predictor, tmp_path):
    # output= a folder above the input: photos/new/p0.png would be cleaned to photos/p0.png,
    # where an unrelated photo of that name lives.
    photos = tmp_path / "photos"
    new = _folder(photos, 2)  # photos/in/{p0.png, sub/p1.png}
    unrelated = photos / "p0.png"
    Image.fromarray(_photos(1, seed=7)[0]).save(unrelated)
    before = unrelated.read_bytes()
    summary = _remover(onnx_predictor).run(new, photos, remove=True)
    assert unrelated.read_bytes() == before
    (failed,) = summary["failed"]
    assert failed["file"] == str(new / "p0.png") and "was not written by wmseg-predict" in failed["reason"]
    assert summary["processed"] == 1 and (photos / "sub" / "p1.png").is_file()
    # Run again: the tool's own outputs are skipped as done, the stranger still kept.
    again = _remover(onnx_predictor).run(new, photos, remove=True)
    assert again["skipped_existing"] == 1 and len(again["failed"]) == 1
    replaced = _remover(onnx_predictor).run(new, photos, remove=True, overwrite=True)
    assert not replaced["failed"] and unrelated.read_bytes() != before


@pytest.mark.parametrize("preset", ["fast", "balanced", "quality"])
@pytest.mark.parametrize("inpainter", ["telea", "ns", "patchmatch", "onnx"])
def test_predict_configs_compose_and_build(tmp_path, preset, inpainter):
    import hydra
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.conftest import CONF
    from wmseg.predict.build import build_inpainter
    from wmseg.predict.checks import check_predict_config

    overrides = ["input=in", "output=out", f"preset={preset}", f"inpainter={inpainter}"]
    if inpainter == "onnx":
        _mean_fill_model(tmp_path / "inpaint.onnx")
        overrides.append(f"inpainter.path={tmp_path / 'inpaint.onnx'}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF / "predict")):
        cfg = compose(config_name="predict", overrides=overrides)
    GlobalHydra.instance().clear()
    check_predict_config(cfg)
    painter = build_inpainter(cfg)
    image, mask = _marked()
    assert np.array_equal(fill(painter, image, mask)[~mask], image[~mask])
    # A preset picks its own inpainter unless one is named: quality's is PatchMatch.
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF / "predict")):
        default = compose(config_name="predict", overrides=["input=in", "output=out", f"preset={preset}"])
    GlobalHydra.instance().clear()
    expected = "PatchMatchInpainter" if preset == "quality" else "OpenCVInpainter"
    assert default.inpainter._target_.endswith(expected)
    del hydra


def test_a_remover_built_in_python_keeps_its_own_pixel_limit(onnx_predictor, tmp_path):
    """Two removers in one process: the limit of one does not leak into the other."""
    root = tmp_path / "in"
    root.mkdir()
    for name, size in (("small.png", 64), ("large.png", 160)):
        Image.fromarray(_photos(1, size)[0]).save(root / name)
    strict = _remover(onnx_predictor, max_pixels=10_000)
    relaxed = _remover(onnx_predictor)
    first = strict.run(root, tmp_path / "strict")
    [failed] = first["failed"]
    assert failed["file"].endswith("large.png") and "over the limit of 10,000" in failed["reason"]
    assert relaxed.run(root, tmp_path / "relaxed")["failed"] == []
    assert (tmp_path / "relaxed" / "large.mask.png").is_file()
    with pytest.raises(UserError, match="max_image_pixels must be a whole number"):
        _remover(onnx_predictor, max_pixels=0)


def test_max_image_pixels_skips_a_larger_image_and_names_it(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.conftest import CONF
    from wmseg.predict.cli import predict

    root = tmp_path / "in"
    root.mkdir()
    for name, size in (("small.png", 64), ("large.png", 160)):
        Image.fromarray(_photos(1, size)[0]).save(root / name)
    overrides = [f"input={root}", f"output={tmp_path / 'out'}", "precision=int8", "threads=1"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF / "predict")):
        cfg = compose(
            config_name="predict", overrides=[*overrides, "max_image_pixels=10000", "progress=false"]
        )
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as stopped:  # an input failed: exit status 2
        predict(cfg)
    assert stopped.value.code == 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 1 and (tmp_path / "out" / "small.mask.png").is_file()
    [failed] = summary["failed"]
    assert failed["file"].endswith("large.png") and "raise max_image_pixels" in failed["reason"]
