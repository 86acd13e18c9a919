"""One mark on many images (wmseg.predict.shared_mark, `wmseg-predict mark=shared`)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from wmseg.predict import Remover
from wmseg.predict.shared_mark import estimate_shared, find_mark, own_estimate

H, W = 64, 96


def photos(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random colour fields with some detail: stand-ins for photos."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        field = cv2.resize(rng.random((6, 9, 3)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
        out.append(np.clip(field * 0.8 + 0.1 + rng.normal(0, 0.03, (H, W, 3)), 0, 1).astype(np.float32))
    return out


def the_mark(top: int = 20, left: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A translucent light-blue bar with a 'letter' cut out: opacity (H, W) and colour."""
    opacity = np.zeros((H, W), np.float32)
    opacity[top : top + 16, left : left + 40] = 0.45
    opacity[top + 4 : top + 12, left + 10 : left + 14] = 0.0
    return opacity, np.array([0.8, 0.9, 1.0], np.float32)


def marked(photo: np.ndarray, opacity: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return np.rint(((1 - opacity[..., None]) * photo + opacity[..., None] * colour) * 255).astype(np.uint8)


def leaky_maps(image: np.ndarray, opacity: np.ndarray, colour: np.ndarray, miss: bool = False) -> np.ndarray:
    """What a real head gets wrong on one image: the photo's own detail leaks into its
    opacity and colour under the mark, and its mask misses a piece (`miss`) now and then."""
    on = opacity > 0
    detail = image.astype(np.float32) / 255.0 - (image[on].mean(0) / 255.0)  # the photo's, about 0 on average
    a = np.where(on, np.clip(opacity + 0.35 * detail.mean(-1), 0, 0.95), 0).astype(np.float32)
    c = np.clip(colour + 0.2 * detail, 0, 1)
    photo = np.clip((image / 255.0 - a[..., None] * c) / (1 - a[..., None]), 0, 1)
    prob = (opacity > 0).astype(np.float32)
    if miss:
        prob[:, : W // 2] = 0
    return np.concatenate([prob[None], photo.transpose(2, 0, 1), a[None]]).astype(np.float32)


def psnr_in(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[where].mean()
    return float(10 * np.log10(255**2 / mse))


def test_the_shared_estimate_beats_each_images_own():
    opacity, colour = the_mark()
    clean = photos(12)
    images = [marked(p, opacity, colour) for p in clean]
    maps = [leaky_maps(im, opacity, colour, miss=i % 3 == 0) for i, im in enumerate(images)]
    mark = estimate_shared([own_estimate(im, m, 0.5) for im, m in zip(images, maps, strict=True)])
    assert mark is not None and mark.images == 12 and mark.size == (H, W)
    assert np.array_equal(mark.mask, opacity > 0)  # the footprint the majority agrees on
    on = opacity > 0
    own_mae = np.mean([np.abs(m[4] - opacity)[on].mean() for m in maps])
    shared_mae = np.abs(mark.opacity - opacity)[on].mean()
    assert shared_mae < 0.5 * own_mae, (shared_mae, own_mae)
    assert mark.opacity[~dilated(on, 3)].max() == 0  # nothing off the mark
    for image, m, photo in zip(images, maps, clean, strict=True):
        assert mark.fits(m[0] >= 0.5)
        truth = np.rint(photo * 255)
        own = m[1:4].transpose(1, 2, 0) * 255
        shared = mark.maps(image, m)
        assert np.array_equal(shared[0] > 0.5, on) and np.array_equal(shared[4], mark.opacity)
        assert psnr_in(shared[1:4].transpose(1, 2, 0) * 255, truth, on) > psnr_in(own, truth, on) + 3


def dilated(mask: np.ndarray, margin: int) -> np.ndarray:
    from wmseg.predict.inpaint import dilate

    return dilate(mask, margin)


def test_no_shared_mark_from_too_few_or_disagreeing_images():
    opacity, colour = the_mark()
    images = [marked(p, opacity, colour) for p in photos(3)]
    two = [own_estimate(im, leaky_maps(im, opacity, colour), 0.5) for im in images[:2]]
    assert estimate_shared(two) is None  # two could be a coincidence
    # Three images, three different places: nothing is shared.
    places = [the_mark(2, 2), the_mark(40, 50), the_mark(5, 50)]
    spread = [
        own_estimate(marked(p, a, c), leaky_maps(marked(p, a, c), a, c), 0.5)
        for p, (a, c) in zip(photos(3), places, strict=True)
    ]
    assert estimate_shared(spread) is None
    # A mask-only model: the footprint is shared, no opacity or colour.
    mask_only = [own_estimate(im, leaky_maps(im, opacity, colour)[:1], 0.5) for im in images]
    mark = estimate_shared(mask_only)
    assert mark is not None and mark.opacity is None
    assert not mark.fits(np.roll(opacity > 0, 30, axis=1))  # another place: its own estimate
    # Another size: the mark anchored at a corner (here the bottom left: 16 rows more
    # above it) or the centre is found where the image's own mask holds it.
    taller = np.zeros((H + 16, W), bool)
    taller[16:] = opacity > 0
    placed = find_mark({(H, W): mark}, taller)
    assert placed is not None and np.array_equal(placed.mask, taller)
    assert find_mark({(H, W): mark}, np.roll(taller, 30, axis=1)) is None


class KnownMarks:
    """A restoration model as leaky as a real one (see `leaky_maps`), for images whose
    marks the test made: it looks each image up by its pixels."""

    stride, threshold, name, restores = 32, 0.5, "known-marks", True

    def __init__(self, truth: dict[bytes, tuple[np.ndarray, np.ndarray]]) -> None:
        self.truth, self.calls = truth, 0

    def _maps(self, batch: np.ndarray) -> np.ndarray:
        out = np.zeros((len(batch), 5, *batch.shape[2:]), np.float32)
        for i, padded in enumerate(batch):
            for key, (opacity, colour) in self.truth.items():
                h, w = opacity.shape
                image = np.rint(padded[:, :h, :w].transpose(1, 2, 0) * 255).astype(np.uint8)
                if image.tobytes() == key:
                    maps = leaky_maps(image, opacity, colour, miss=self.calls % 3 == 0)
                    self.calls += 1
                    maps[0] = np.where(maps[0] > 0.5, 6.0, -6.0)  # logits
                    out[i, :, :h, :w] = maps
                    break
        return out

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._maps(batch)[:, :1]

    def restore(self, batch: np.ndarray) -> np.ndarray:
        return self._maps(batch)


def test_predict_mark_shared_cleans_a_folder_with_one_estimate(tmp_path):
    opacity, colour = the_mark()
    folder, truth, clean = tmp_path / "in", {}, {}
    folder.mkdir()
    for i, photo in enumerate(photos(6, seed=5)):
        image = marked(photo, opacity, colour)
        cv2.imwrite(str(folder / f"car_{i}.png"), image[..., ::-1])
        truth[image.tobytes()], clean[f"car_{i}"] = (opacity, colour), np.rint(photo * 255)
    # One photo with the mark elsewhere: it keeps its own estimate.
    elsewhere = the_mark(40, 50)
    odd = marked(photos(1, seed=9)[0], *elsewhere)
    cv2.imwrite(str(folder / "odd.png"), odd[..., ::-1])
    truth[odd.tobytes()] = elsewhere
    on = opacity > 0
    psnr = {}
    for mark in ("own", "shared"):
        out = tmp_path / mark
        remover = Remover(KnownMarks(truth), remover="restore")
        summary = remover.run(folder, out, remove=True, overlay=False, mark=mark)
        assert summary["processed"] == 7 and not summary["failed"]
        assert json.loads((out / "summary.json").read_text())["mark"] == mark
        scores = []
        for name, photo in clean.items():
            cleaned = cv2.imread(str(out / f"{name}.png"))[..., ::-1]
            scores.append(psnr_in(cleaned, photo, on))
            written = cv2.imread(str(out / f"{name}.mask.png"), cv2.IMREAD_GRAYSCALE) > 127
            if mark == "shared":  # the shared footprint, also where one image missed a piece
                assert np.array_equal(written, on)
        psnr[mark] = float(np.mean(scores))
        if mark == "shared":
            assert summary["shared_marks"][0]["size"] == [H, W]
            assert summary["shared_marks"][0]["images"] == 6
            assert summary["shared_used"] == 6 and summary["own_estimate"] == [str(folder / "odd.png")]
        else:
            assert summary["shared_marks"] == [] and summary["shared_used"] == 0
    assert psnr["shared"] > psnr["own"] + 3, psnr


def test_predict_refuses_an_unknown_mark_mode(tmp_path):
    with pytest.raises(Exception, match="mark=every"):
        Remover(KnownMarks({}), remover="restore").run(tmp_path, tmp_path / "out", mark="every")


class StaticMark:
    """A restoration model on a video with the mark of `the_mark`: every third frame its
    mask misses a piece, and each frame's detail leaks into its opacity (`leaky_maps`)."""

    stride, threshold, name, restores = 32, 0.5, "static-mark", True

    def __init__(self) -> None:
        self.calls = 0

    def restore(self, batch: np.ndarray) -> np.ndarray:
        opacity, colour = the_mark()
        out = np.zeros((len(batch), 5, *batch.shape[2:]), np.float32)
        for i, padded in enumerate(batch):
            image = np.rint(padded[:, :H, :W].transpose(1, 2, 0) * 255).astype(np.uint8)
            maps = leaky_maps(image, opacity, colour, miss=self.calls % 3 == 0)
            maps[0] = np.where(maps[0] > 0.5, 6.0, -6.0)
            out[i, :, :H, :W] = maps
            self.calls += 1
        return out

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.restore(batch)[:, :1]


def test_a_videos_static_mark_is_estimated_once_and_masks_every_frame(tmp_path):
    import av

    from wmseg.predict.jobs import find_jobs
    from wmseg.predict.video import VideoOptions, process_video

    opacity, colour = the_mark()
    source = tmp_path / "channel.mp4"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for photo in photos(12, seed=2):
            frame = av.VideoFrame.from_ndarray(marked(photo, opacity, colour), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    job = find_jobs(source, tmp_path / "out")[0]
    (tmp_path / "out").mkdir()
    on = opacity > 0
    for shared in (False, True):
        remover = Remover(StaticMark(), remover="restore")
        frames, mark = process_video(
            remover, job, VideoOptions(window=1, batch=4), remove=True, overlay=False, shared=shared
        )
        assert frames == 12
        with av.open(str(job.mask)) as container:
            masks = [f.to_ndarray() > 127 for f in container.decode(video=0)]
        steady = [np.array_equal(m, on) for m in masks]
        if shared:
            assert mark is not None and mark.images == 12 and all(steady)
        else:  # each frame its own: the missed pieces show
            assert mark is None and steady.count(False) == 4
