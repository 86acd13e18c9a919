"""The HTTP API and web page of `wmseg-serve`, around one loaded Remover.

    GET  /            the web page: drop an image, see the mask and the cleaned image
    GET  /health      {"status": "ok", "model": ..., "threshold": ...}
    GET  /openapi.json  the schema of these
    POST /v1/detect   multipart `image` -> JSON: size, watermark fraction, bounding box
    POST /v1/mask     multipart `image` -> PNG, 255 where a watermark is
    POST /v1/clean    multipart `image` -> the image without its watermark, in its own format

A request that cannot be served gets a 4xx with a JSON `detail` saying why (413 for an
upload over the limit, 422 for a file that is not a readable image, 401 without the API
key when one is set); the server goes on. Load is bounded: requests wait for the model
in a queue of `max_queue`, a full queue answers 503 with Retry-After, a request that
waited `request_timeout_s` answers 503, and a request whose client has gone is dropped
before it reaches the model.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from importlib.resources import files
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from wmseg.errors import DataError
from wmseg.predict.image_io import SourceImage, encode_like, encode_png, read_source
from wmseg.predict.remover import Remover

Upload = Annotated[UploadFile, File(description="an image file (JPEG, PNG, WebP, TIFF, BMP)")]
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}


class UploadLimit:
    """413 naming `max_upload_mb` for a body whose Content-Length is over `max_bytes`, before
    it is read (browsers, curl and httpx send one). The routes' `max_body_size` (FastAPI)
    counts the bytes of the rest (chunked uploads) as they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = dict(scope.get("headers", ())).get(b"content-length", b"")
        if scope["type"] == "http" and length.isdigit() and int(length) > self.max_bytes:
            mb = self.max_bytes / 2**20
            detail = f"upload over the limit of {mb:g} MB; send a smaller file or raise max_upload_mb"
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ApiKey:
    """401 for a /v1/ request without `key` (header `X-API-Key: <key>` or
    `Authorization: Bearer <key>`); the page and /health stay open."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            headers = dict(scope.get("headers", ()))
            given = headers.get(b"x-api-key", b"")
            bearer = headers.get(b"authorization", b"")
            if bearer.lower().startswith(b"bearer "):
                given = given or bearer[7:].strip()
            if not hmac.compare_digest(given, self.key):
                detail = "an API key is required: send the header X-API-Key: <key>"
                await JSONResponse({"detail": detail}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Busy(HTTPException):
    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(503, detail, headers={"Retry-After": str(retry_after)})


class ModelQueue:
    """One request at a time on the model (it uses every core, or the GPU, for each), at
    most `max_queue` waiting; a request waits at most `timeout_s` in all, and one whose
    client has gone is dropped before it runs."""

    def __init__(self, max_queue: int, timeout_s: float) -> None:
        self.max_queue, self.timeout_s = max_queue, timeout_s
        self.waiting = 0
        self.lock = asyncio.Lock()
        self.dropped = 0  # requests abandoned by their client while waiting
        self.seconds = 1.0  # a running estimate of one request's model time (for Retry-After)

    def retry_after(self) -> int:
        return max(1, round(self.seconds * (self.waiting + 1)))

    def check(self) -> None:
        """503 when the queue is full: called before an upload is decoded, too."""
        if self.waiting >= self.max_queue:
            busy = f"the server is busy ({self.waiting} requests waiting); try again shortly"
            raise Busy(busy, self.retry_after())

    async def run(self, request: Request, fn: Any, *args: Any) -> Any:
        self.check()
        # Uvicorn stops reading a connection once its request body is in: this first look
        # lets it notice a client that hangs up while the request waits.
        await request.is_disconnected()
        self.waiting += 1
        try:
            try:
                await asyncio.wait_for(self.lock.acquire(), timeout=self.timeout_s)
            except asyncio.TimeoutError:  # TimeoutError from Python 3.11
                raise Busy(
                    f"waited {self.timeout_s:g} s for the model (request_timeout_s); try again shortly",
                    self.retry_after(),
                ) from None
        finally:
            self.waiting -= 1
        try:
            if await request.is_disconnected():  # nobody left to answer: skip the work
                self.dropped += 1
                raise HTTPException(499, "the client closed the request")
            began = time.perf_counter()
            result = await run_in_threadpool(fn, *args)
            self.seconds = 0.7 * self.seconds + 0.3 * (time.perf_counter() - began)
            return result
        finally:
            self.lock.release()


def create_app(
    remover: Remover,
    *,
    model_name: str,
    max_upload_mb: float = 50.0,
    remove: bool = True,
    max_queue: int = 8,
    request_timeout_s: float = 120.0,
    api_key: str | None = None,
) -> FastAPI:
    """The app serving `remover` (already loaded). `remove=False` serves detection only
    (/v1/clean answers 404). Requests run one at a time on the model (`ModelQueue`), so
    its working memory is one request's; waiting requests hold only their decoded image.
    `api_key`: required of every /v1/ request when set."""
    max_bytes = int(max_upload_mb * 2**20)
    # No /docs: Swagger UI's scripts come from a CDN, and nothing here depends on the network.
    app = FastAPI(
        title="wmseg",
        summary="Find and remove visible watermarks",
        version=_version(),
        docs_url=None,
        redoc_url=None,
    )
    queue = ModelQueue(max_queue, request_timeout_s)
    app.state.queue = queue

    async def read(image: UploadFile) -> SourceImage:
        queue.check()  # a full queue answers before the upload is decoded
        data = await image.read()
        name = image.filename or "upload"
        if not data:
            raise HTTPException(
                422, f"{name}: the upload is empty; send the image file as the form field `image`"
            )
        try:
            return await run_in_threadpool(read_source, name, data, remover.max_pixels)
        except DataError as err:
            raise HTTPException(422, str(err)) from None

    async def detected(request: Request, image: UploadFile) -> np.ndarray:
        source = await read(image)
        return await queue.run(request, remover.mask, source.rgb)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return files("wmseg.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model_name,
            "threshold": remover.threshold,
            "remove": remove,
            "waiting": queue.waiting,
            "dropped": queue.dropped,
            "running": queue.lock.locked(),
            "key_required": bool(api_key),
        }

    @app.post("/v1/detect", max_body_size=max_bytes)
    async def detect(request: Request, image: Upload) -> dict[str, Any]:
        return describe(await detected(request, image), remover.threshold)

    @app.post(
        "/v1/mask",
        max_body_size=max_bytes,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def mask(request: Request, image: Upload) -> Response:
        mask = await detected(request, image)
        return Response(
            encode_png(mask.astype(np.uint8) * 255), media_type="image/png", headers=_headers(mask)
        )

    @app.post(
        "/v1/clean",
        max_body_size=max_bytes,
        response_class=Response,
        responses={200: {"content": {"image/*": {}}}},
    )
    async def clean(request: Request, image: Upload) -> Response:
        if not remove:
            raise HTTPException(404, "this server detects only (started with remove=false)")
        source = await read(image)
        cleaned, mask = await queue.run(request, remover.clean, source.rgb)
        body = await run_in_threadpool(encode_like, source, cleaned)
        media = MEDIA_TYPES.get(source.format, "image/png")
        return Response(body, media_type=media, headers=_headers(mask))

    app.add_middleware(UploadLimit, max_bytes=max_bytes)
    if api_key:
        app.add_middleware(ApiKey, key=api_key)
    return app


def describe(mask: np.ndarray, threshold: float) -> dict[str, Any]:
    """What /v1/detect answers for a bool (H, W) mask."""
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = None
    if rows.size:
        box = {
            "left": int(cols[0]),
            "top": int(rows[0]),
            "right": int(cols[-1]) + 1,
            "bottom": int(rows[-1]) + 1,
        }
    return {
        "width": w,
        "height": h,
        "watermark": bool(rows.size),
        "watermark_fraction": float(mask.mean()),
        "box": box,
        "threshold": threshold,
    }


def _headers(mask: np.ndarray) -> dict[str, str]:
    return {"X-Watermark-Fraction": f"{mask.mean():.6f}"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wmseg")
    except PackageNotFoundError:
        return "0"
