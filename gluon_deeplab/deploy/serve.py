"""The HTTP service (FastAPI): ``POST /v1/segment``, ``GET /v1/model``, ``/healthz``, ``/readyz``
and ``/metrics``. Images are read and checked on the event loop's threads; the model runs only
on the :class:`~.batching.BatchWorker`'s one thread, which loads it, warms it up (``/readyz``
says 503 until then) and micro-batches requests of one padded input shape. Every refusal is a
JSON ``{"detail": ...}`` with its status code, and is counted in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from ..errors import error_line
from ..evaluation.segmenter import Segmenter, load_segmenter
from .batching import BatchWorker, QueueFull
from .payloads import (
    IMAGE_TYPES,
    RequestError,
    decode_image,
    mask_png,
    overlay_png,
    parse_format,
    segmentation_json,
)
from .serve_metrics import CLIENT_CLOSED, ServiceMetrics, TimingMiddleware

WARMUP_SIZE = (64, 64)
RETRY_AFTER_S = 1


@dataclass
class ServeSettings:
    """The service's model and limits (``gluon-deeplab-serve``'s flags)."""

    model: str
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64
    max_body_mb: float = 10.0
    max_pixels: int = 4_000_000
    timeout_s: float = 30.0


class ModelService:
    """The model behind the routes: a :class:`Segmenter` made by ``load(path)`` in the worker
    thread, the worker, the metrics; ``on_fatal(error)`` is called if loading fails."""

    def __init__(self, settings: ServeSettings,
                 load: Callable[[str], Segmenter] = load_segmenter,
                 on_fatal: Optional[Callable[[BaseException], None]] = None):
        self.settings, self.load, self.on_fatal = settings, load, on_fatal
        self.segmenter: Optional[Segmenter] = None
        self.info: Dict[str, Any] = {}
        self.worker = BatchWorker(self._run, settings.max_batch, settings.max_wait_ms / 1000.0,
                                  settings.max_queue, setup=self._setup)
        self.metrics = ServiceMetrics(self.worker.depth)
        self.worker.on_batch = self.metrics.observe_batch

    def _setup(self) -> None:
        try:
            segmenter = self.load(self.settings.model)
            segmenter.segment(np.full(WARMUP_SIZE + (3,), 128, np.uint8))
        except BaseException as err:
            if self.on_fatal is not None:
                self.on_fatal(err)
            raise
        model = segmenter.model
        self.info = {"model": self.settings.model, "classes": segmenter.classes,
                     "num_classes": model.num_classes, "precision": model.precision,
                     "output_stride": model.output_stride, "iteration": model.iteration,
                     "padding": "each image runs at its own size, padded to "
                                "output_stride * k + 1",
                     "max_pixels": self.settings.max_pixels,
                     "max_body_mb": self.settings.max_body_mb,
                     "max_batch": self.settings.max_batch}
        self.segmenter = segmenter

    def _run(self, images: List[np.ndarray]) -> List[Any]:
        assert self.segmenter is not None
        return self.segmenter.segment(list(images), batch_size=len(images))

    def padded(self, height: int, width: int) -> tuple:
        """The input shape the model runs an image of this size at."""
        assert self.segmenter is not None
        key = self.segmenter.batch_key(height, width)
        return key[0] if key else (height, width)

    async def segment(self, rgb: np.ndarray) -> Any:
        """The image's :class:`Segmentation`, through the worker's queue."""
        assert self.segmenter is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def settle(result: Any, error: Optional[BaseException]) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

        def done(result: Any, error: Optional[BaseException]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, result, error)

        key = self.segmenter.batch_key(rgb.shape[0], rgb.shape[1])
        try:
            job = self.worker.submit(rgb, key, done)
        except QueueFull as err:
            raise RequestError(503, f"{err}; retry later") from None
        try:
            return await asyncio.wait_for(future, self.settings.timeout_s)
        except asyncio.TimeoutError:
            job.cancel()
            raise RequestError(504, f"no result within this service's --timeout_s "
                                    f"{self.settings.timeout_s:g}") from None
        except asyncio.CancelledError:
            job.cancel()
            raise


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise RequestError(413, f"the body is {length} bytes, over this service's "
                                f"--max_body_mb ({limit} bytes)")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise RequestError(413, f"the body is over this service's --max_body_mb "
                                    f"({limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def image_bytes(request: Request, limit: int) -> bytes:
    """The uploaded image: the body itself (image/png, image/jpeg) or a multipart ``file``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in IMAGE_TYPES:
        return await _read_body(request, limit)
    if kind == "multipart/form-data":
        body = await _read_body(request, limit)
        try:
            form = await MultiPartParser(request.headers, _one_chunk(body), max_files=1,
                                         max_fields=8).parse()
        except MultiPartException as err:
            raise RequestError(400, f"unreadable multipart body ({err})") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RequestError(400, "the multipart body has no `file` field holding the image")
        return await upload.read()
    raise RequestError(415, f"Content-Type {kind or '(none)'}: expected image/png, image/jpeg "
                            "or multipart/form-data with a `file` field")


def _error(status: int, detail: str) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _segment_response(service: ModelService, request: Request, fmt: str,
                            alpha: str) -> Response:
    fmt, opacity = parse_format(fmt, alpha)
    limit = int(service.settings.max_body_mb * 1024 * 1024)
    data = await image_bytes(request, limit)
    rgb = await run_in_threadpool(decode_image, data, service.settings.max_pixels,
                                  service.padded)
    result = await service.segment(rgb)
    if fmt == "json":
        return JSONResponse(await run_in_threadpool(segmentation_json, result))
    if fmt == "overlay":
        png = await run_in_threadpool(overlay_png, result.image, result.mask, opacity)
    else:
        png = await run_in_threadpool(mask_png, result.mask)
    return Response(png, media_type="image/png")


def create_app(settings: ServeSettings, load: Callable[[str], Segmenter] = load_segmenter,
               on_fatal: Optional[Callable[[BaseException], None]] = None) -> FastAPI:
    """The service's ASGI app; its lifespan starts the worker (loading the model) and, at
    shutdown, lets it finish every queued image."""
    service = ModelService(settings, load, on_fatal)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.worker.start()
        yield
        await run_in_threadpool(service.worker.stop)

    app = FastAPI(title="gluon-deeplab", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service
    app.add_middleware(TimingMiddleware, metrics=service.metrics)

    def not_ready() -> Optional[JSONResponse]:
        if service.worker.error is not None:
            return _error(503, f"the model failed to load: {service.worker.error}")
        return None if service.worker.ready.is_set() else _error(503, "loading the model")

    @app.post("/v1/segment")
    async def segment(request: Request, format: str = "png", alpha: str = "0.5") -> Response:
        waiting = not_ready()
        if waiting is not None:
            return waiting
        try:
            return await _segment_response(service, request, format, alpha)
        except RequestError as err:
            return _error(err.status, err.detail)
        except ClientDisconnect:
            return _error(CLIENT_CLOSED, "the client closed the connection")
        except Exception as err:  # the model failed on this image alone
            return _error(500, f"segmentation failed: {error_line(err, with_type=True)}")

    @app.get("/v1/model")
    async def model() -> Response:
        return not_ready() or JSONResponse(service.info)

    @app.get("/healthz")
    async def healthz() -> Dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> Response:
        return not_ready() or JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
