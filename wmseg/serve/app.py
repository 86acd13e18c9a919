"""The HTTP API and web page of `wmseg-serve`, around one loaded Remover.

    GET  /            the web page: drop an image, see the mask and the cleaned image
    GET  /health      {"status": "ok", "model": ..., "threshold": ...}
    GET  /openapi.json  the schema of these
    POST /v1/detect   multipart `image` -> JSON: size, watermark fraction, bounding box
    POST /v1/mask     multipart `image` -> PNG, 255 where a watermark is
    POST /v1/clean    multipart `image` -> the image without its watermark, in its own format

A request that cannot be served gets a 4xx with a JSON `detail` saying why (413 for an
upload over the limit, 422 for a file that is not a readable image); the server goes on.
"""

from __future__ import annotations

import threading
from importlib.resources import files
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile
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


def create_app(
    remover: Remover, *, model_name: str, max_upload_mb: float = 50.0, remove: bool = True
) -> FastAPI:
    """The app serving `remover` (already loaded). `remove=False` serves detection only
    (/v1/clean answers 404). Requests run one at a time on the model: it uses all the
    cores (or the GPU) for each, so its working memory is one request's; waiting requests
    hold only their decoded image."""
    max_bytes = int(max_upload_mb * 2**20)
    # No /docs: Swagger UI's scripts come from a CDN, and nothing here depends on the network.
    app = FastAPI(
        title="wmseg",
        summary="Find and remove visible watermarks",
        version=_version(),
        docs_url=None,
        redoc_url=None,
    )
    lock = threading.Lock()

    async def read(image: UploadFile) -> SourceImage:
        data = await image.read()
        name = image.filename or "upload"
        if not data:
            raise HTTPException(
                422, f"{name}: the upload is empty; send the image file as the form field `image`"
            )
        try:
            return await run_in_threadpool(read_source, name, data)
        except DataError as err:
            raise HTTPException(422, str(err)) from None

    def run(fn: Any, *args: Any) -> Any:
        with lock:
            return fn(*args)

    async def detected(image: UploadFile) -> np.ndarray:
        source = await read(image)
        return await run_in_threadpool(run, remover.mask, source.rgb)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return files("wmseg.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "threshold": remover.threshold, "remove": remove}

    @app.post("/v1/detect", max_body_size=max_bytes)
    async def detect(image: Upload) -> dict[str, Any]:
        return describe(await detected(image), remover.threshold)

    @app.post(
        "/v1/mask",
        max_body_size=max_bytes,
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def mask(image: Upload) -> Response:
        mask = await detected(image)
        return Response(
            encode_png(mask.astype(np.uint8) * 255), media_type="image/png", headers=_headers(mask)
        )

    @app.post(
        "/v1/clean",
        max_body_size=max_bytes,
        response_class=Response,
        responses={200: {"content": {"image/*": {}}}},
    )
    async def clean(image: Upload) -> Response:
        if not remove:
            raise HTTPException(404, "this server detects only (started with remove=false)")
        source = await read(image)
        cleaned, mask = await run_in_threadpool(run, remover.clean, source.rgb)
        body = await run_in_threadpool(encode_like, source, cleaned)
        media = MEDIA_TYPES.get(source.format, "image/png")
        return Response(body, media_type=media, headers=_headers(mask))

    app.add_middleware(UploadLimit, max_bytes=max_bytes)
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
