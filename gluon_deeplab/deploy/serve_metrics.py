"""The service's Prometheus metrics (a registry of its own, so that several apps in one process
count apart) and the ASGI middleware that times every request by route and status code."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Deque, Tuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ROUTES = ("/v1/segment", "/v1/model", "/healthz", "/readyz", "/metrics")
RATE_WINDOW_S = 10.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection"


class ServiceMetrics:
    """Request latency by route and code, errors by route and code, batch sizes, queue depth,
    images segmented (a counter, and per second over the last ``RATE_WINDOW_S``)."""

    def __init__(self, queue_depth: Callable[[], int]):
        self.registry = CollectorRegistry()
        self.latency = Histogram("gluon_deeplab_request_seconds", "Request latency",
                                 ["route", "code"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.errors = Counter("gluon_deeplab_errors", "Responses with a status >= 400",
                              ["route", "code"], registry=self.registry)
        self.batch_size = Histogram("gluon_deeplab_batch_size", "Images per model run",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.images = Counter("gluon_deeplab_images", "Images segmented",
                              registry=self.registry)
        Gauge("gluon_deeplab_queue_depth", "Images waiting for the model",
              registry=self.registry).set_function(queue_depth)
        Gauge("gluon_deeplab_images_per_second",
              f"Images segmented per second over the last {RATE_WINDOW_S:g} s",
              registry=self.registry).set_function(self.images_per_second)
        self._recent: Deque[Tuple[float, int]] = collections.deque()
        self._lock = threading.Lock()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.images.inc(size)
        with self._lock:
            self._recent.append((time.monotonic(), size))

    def images_per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
                self._recent.popleft()
            return sum(n for _, n in self._recent) / RATE_WINDOW_S

    def observe_request(self, path: str, code: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"
        self.latency.labels(route, str(code)).observe(seconds)
        if code >= 400:
            self.errors.labels(route, str(code)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TimingMiddleware:
    """Pure ASGI middleware (streams untouched): times each HTTP request into ``metrics``."""

    def __init__(self, app: Any, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def timed_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.metrics.observe_request(scope["path"], status[0], time.perf_counter() - start)
