"""wmseg-serve: the HTTP API answers with the remover's own results, bad requests get a 4xx
and the server goes on, the command line starts a real server, and the web page works in a
real browser."""

import contextlib
import io
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import ROOT
from wmseg.predict import Remover
from wmseg.predict.inpaint import dilate
from wmseg.serve import create_app
from wmseg.synth import SynthConfig, WatermarkSynth


@pytest.fixture(scope="module")
def remover() -> Remover:
    return Remover(None, precision="int8", threads=2)


@pytest.fixture(scope="module")
def client(remover) -> TestClient:
    with TestClient(create_app(remover, model_name="bundled (int8)", max_upload_mb=1)) as c:
        yield c


def _marked(size: int = 128, index: int = 0) -> np.ndarray:
    return WatermarkSynth(SynthConfig(size=size, clean_fraction=0.0)).render(3, index).image


def _encoded(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


def _post(client, path: str, data: bytes, name: str = "photo.png"):
    return client.post(path, files={"image": (name, data, "application/octet-stream")})


def test_health_names_the_model(client, remover):
    answer = client.get("/health").json()
    assert answer == {
        "status": "ok",
        "model": "bundled (int8)",
        "threshold": remover.threshold,
        "remove": True,
        "waiting": 0,
        "dropped": 0,
        "running": False,
        "key_required": False,
    }
    schema = client.get("/openapi.json").json()
    assert {"/health", "/v1/detect", "/v1/mask", "/v1/clean"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 404  # its scripts would come from a CDN


def test_mask_and_detect_are_the_removers_own(client, remover):
    image = _marked()
    expected = remover.mask(image)
    assert expected.any(), "the sample should hold a detected mark"
    response = _post(client, "/v1/mask", _encoded(image))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    mask = np.asarray(Image.open(io.BytesIO(response.content)))
    np.testing.assert_array_equal(mask, expected.astype(np.uint8) * 255)
    assert float(response.headers["X-Watermark-Fraction"]) == pytest.approx(expected.mean(), abs=1e-6)

    info = _post(client, "/v1/detect", _encoded(image)).json()
    rows, cols = np.flatnonzero(expected.any(1)), np.flatnonzero(expected.any(0))
    assert info["width"] == info["height"] == 128 and info["watermark"] is True
    assert info["watermark_fraction"] == pytest.approx(expected.mean())
    assert info["box"] == {"left": cols[0], "top": rows[0], "right": cols[-1] + 1, "bottom": rows[-1] + 1}


def test_clean_changes_only_the_mark_and_keeps_the_format(client, remover):
    image = _marked(index=1)
    response = _post(client, "/v1/clean", _encoded(image))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    cleaned = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    expected, mask = remover.clean(image)
    np.testing.assert_array_equal(cleaned, expected)
    outside = ~dilate(mask, remover.margin)
    np.testing.assert_array_equal(cleaned[outside], image[outside])
    assert (cleaned != image).any()

    jpeg = _post(client, "/v1/clean", _encoded(image, "JPEG"), "photo.jpg")
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (128, 128)


def test_bad_requests_get_a_4xx_and_the_server_goes_on(client):
    not_image = _post(client, "/v1/mask", b"these are not pixels", "notes.txt")
    assert not_image.status_code == 422 and not_image.json()["detail"].startswith(
        "notes.txt: empty, damaged or not a JPEG, PNG, WebP, BMP or TIFF image"
    )
    # Only the documented formats' decoders run: an EPS named .jpg is refused unread.
    eps = _post(client, "/v1/mask", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n", "x.jpg")
    assert eps.status_code == 422 and "not a JPEG, PNG" in eps.json()["detail"]
    empty = _post(client, "/v1/clean", b"", "empty.png")
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    missing = client.post("/v1/detect", data={"other": "x"})
    assert missing.status_code == 422
    too_large = _post(client, "/v1/mask", b"\0" * (2 * 2**20), "huge.png")
    assert too_large.status_code == 413 and "max_upload_mb" in too_large.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams in
        boundary = b"--b\r\nContent-Disposition: form-data; name=image; filename=huge.png\r\n\r\n"
        yield boundary
        for _ in range(3):
            yield b"\0" * 2**20

    streamed = client.post(
        "/v1/mask", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert streamed.status_code == 413
    truncated = _post(client, "/v1/clean", _encoded(_marked())[:300], "cut.png")
    assert truncated.status_code == 422 and truncated.json()["detail"].startswith("cut.png:")
    assert client.get("/health").status_code == 200
    assert _post(client, "/v1/mask", _encoded(_marked())).status_code == 200


def test_a_detection_only_server_refuses_clean(remover):
    with TestClient(create_app(remover, model_name="m", remove=False)) as c:
        assert _post(c, "/v1/clean", _encoded(_marked())).status_code == 404
        assert _post(c, "/v1/mask", _encoded(_marked())).status_code == 200
        assert c.get("/health").json()["remove"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serving(log: Path, *overrides: str):
    """`wmseg-serve` in its own process, as a user starts it, until the block ends: its URL
    and the process (its output piped)."""
    port = _free_port()
    command = [
        sys.executable,
        "-c",
        "from wmseg.cli import serve; serve()",
        f"port={port}",
        "precision=int8",
        f"hydra.run.dir={log}",
        *overrides,
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if process.poll() is not None:
                pytest.fail(f"wmseg-serve exited: {process.stdout.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("wmseg-serve did not answer /health within 60 s")
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`wmseg-serve` in its own process, as a user starts it; its base URL."""
    log = tmp_path_factory.mktemp("serve")
    with _serving(log, "threads=2", "max_image_pixels=20000") as (url, _):
        yield url
    assert (log / "serve.log").is_file()


def test_the_server_bounds_its_queue_drops_abandoned_requests_and_checks_its_key(tmp_path):
    key = "s3cret-key"
    big = _encoded(np.asarray(Image.fromarray(_marked(128)).resize((1400, 1400))))
    small = _encoded(_marked(128))
    huge = _encoded(np.asarray(Image.fromarray(_marked(128)).resize((3000, 3000))))
    with _serving(tmp_path, "threads=1", "max_queue=1", "host=0.0.0.0", f"api_key={key}") as (url, process):
        auth = {"X-API-Key": key}
        assert httpx.post(f"{url}/v1/mask", files={"image": ("a.png", small)}, timeout=60).status_code == 401
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200  # open without the key

        def post(data: bytes, timeout: float = 120) -> httpx.Response:
            return httpx.post(
                f"{url}/v1/mask", files={"image": ("p.png", data)}, headers=auth, timeout=timeout
            )

        # One runs, one waits, the rest are told to come back (503 with Retry-After).
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(post, [big] * 4))
        codes = sorted(r.status_code for r in answers)
        assert codes.count(200) >= 2 and codes.count(503) >= 1, codes
        assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 503)
        # A client that gives up while its request waits: the request never reaches the model.
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, huge)
            for _ in range(100):  # until the first one is on the model
                if httpx.get(f"{url}/health", timeout=5).json()["running"]:
                    break
                time.sleep(0.05)
            with pytest.raises(httpx.ReadTimeout):
                post(small, timeout=0.5)
            assert httpx.get(f"{url}/health", timeout=5).json()["running"]  # still the first one
            assert first.result().status_code == 200
        assert post(small).status_code == 200
        for _ in range(50):
            if httpx.get(f"{url}/health", timeout=5).json()["dropped"] == 1:
                break
            time.sleep(0.1)
        assert httpx.get(f"{url}/health", timeout=5).json()["dropped"] == 1
    log = process.stdout.read()
    assert "listens on 0.0.0.0: anyone who can reach this machine can use it" in log


def test_the_command_line_serves_and_refuses_a_bad_key(server, tmp_path):
    response = httpx.post(f"{server}/v1/clean", files={"image": ("a.png", _encoded(_marked()))}, timeout=60)
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (128, 128)
    assert httpx.post(f"{server}/v1/mask", files={"image": ("b.png", b"nope")}, timeout=60).status_code == 422
    big = httpx.post(f"{server}/v1/mask", files={"image": ("big.png", _encoded(_marked(160)))}, timeout=60)
    assert big.status_code == 422 and "over the limit of 20,000" in big.json()["detail"]
    assert httpx.get(f"{server}/health", timeout=5).json()["model"] == "bundled (int8)"
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            "from wmseg.cli import serve; serve()",
            "port=70000",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "Error: port=70000" in bad.stderr


def _browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="needs `pip install playwright`")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs a Chromium browser: sudo apt-get install chromium")
    return playwright, chromium


def test_the_web_page_cleans_an_image_in_a_real_browser(server, tmp_path):
    playwright, chromium = _browser()
    photo = tmp_path / "marked.png"
    Image.fromarray(_marked(index=2)).save(photo)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server)
        page.set_input_files("#file", str(photo))
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('Done')", timeout=60000
        )
        for img in ("#original", "#mask", "#cleaned"):
            assert page.eval_on_selector(img, "e => [e.naturalWidth, e.naturalHeight]") == [128, 128]
        assert "% of marked.png is watermark" in page.text_content("#status")
        page.set_input_files(
            "#file", [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"no image"}]
        )
        page.wait_for_function("document.getElementById('status').className === 'error'", timeout=60000)
        status = page.text_content("#status")
        assert status.startswith("Error: 422: notes.txt: empty, damaged or not a JPEG, PNG")
        browser.close()
