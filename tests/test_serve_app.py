"""The service in-process, on a fake model whose speed and failures the test controls: queue
full gives 503 with Retry-After at once, a slow model 504, a bad image in a batch fails only
its own request, /readyz waits for loading; and the batching worker's grouping by key."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from gluon_deeplab.deploy.batching import BatchWorker, QueueFull  # noqa: E402
from gluon_deeplab.deploy.serve import ServeSettings, create_app  # noqa: E402
from gluon_deeplab.deploy.serve_cli import serve_command  # noqa: E402
from gluon_deeplab.evaluation.segmenter import Segmentation  # noqa: E402

BAD_MARK = 13  # an image whose first pixel is this makes the fake model fail


class FakeSegmenter:
    """Masks of zeros; waits for ``gate``; fails a batch holding a BAD_MARK image."""

    def __init__(self):
        self.gate, self.calls = threading.Event(), []
        self.gate.set()
        self.classes = ["background", "thing"]
        self.model = SimpleNamespace(num_classes=2, precision="fp32", output_stride=16,
                                     iteration=1)

    def batch_key(self, height, width):
        return ((height, width),)

    def segment(self, images, batch_size=1):
        single = not isinstance(images, list)
        images = [images] if single else images
        self.calls.append(len(images))
        assert self.gate.wait(10)
        if any(int(im[0, 0, 0]) == BAD_MARK for im in images):
            raise ValueError("this image breaks the model")
        out = [Segmentation(np.zeros(im.shape[:2], np.uint8), self.classes, im) for im in images]
        return out[0] if single else out


def _png(value: int = 0, size=(8, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


async def _with_app(fake, body, **settings):
    """Run ``body(client, app)`` against the app (lifespan included) once it is ready."""
    app = create_app(ServeSettings("fake", **settings), load=lambda path: fake)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            until = time.monotonic() + 60
            while (await client.get("/readyz")).status_code != 200:  # warm-up call done
                assert time.monotonic() < until, "the app did not get ready in 60 s"
                await asyncio.sleep(0.01)
            return await body(client, app)


def _post(client, data, **params):
    return client.post("/v1/segment", content=data, params=params,
                       headers={"content-type": "image/png"})


async def _until(condition, timeout_s=5.0):
    until = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < until, "condition not met in time"
        await asyncio.sleep(0.005)


def test_queue_full_gets_503_with_retry_after_at_once_and_the_queued_finish():
    fake = FakeSegmenter()

    async def body(client, app):
        worker = app.state.service.worker
        fake.gate.clear()
        warm_up = len(fake.calls)
        first = asyncio.create_task(_post(client, _png()))
        await _until(lambda: len(fake.calls) > warm_up)  # the worker holds it, blocked
        queued = [asyncio.create_task(_post(client, _png())) for _ in range(2)]
        await _until(lambda: worker.depth() == 2)
        start = time.perf_counter()
        refused = await asyncio.gather(*[_post(client, _png()) for _ in range(3)])
        refused_s = time.perf_counter() - start
        fake.gate.set()
        done = await asyncio.gather(first, *queued)
        return refused, refused_s, done, (await client.get("/metrics")).text

    refused, refused_s, done, metrics = asyncio.run(_with_app(fake, body, max_batch=1,
                                                              max_queue=2))
    assert [r.status_code for r in refused] == [503] * 3
    assert all(r.headers["retry-after"] == "1" and "queue full" in r.json()["detail"]
               for r in refused)
    assert refused_s < 2.0  # at once, not after the blocked model
    assert [r.status_code for r in done] == [200] * 3
    assert 'gluon_deeplab_errors_total{code="503",route="/v1/segment"} 3.0' in metrics


def test_request_over_timeout_gets_504_and_the_service_goes_on():
    fake = FakeSegmenter()

    async def body(client, app):
        fake.gate.clear()
        slow = await _post(client, _png())
        fake.gate.set()
        return slow, await _post(client, _png())

    slow, after = asyncio.run(_with_app(fake, body, timeout_s=0.2))
    assert slow.status_code == 504 and "--timeout_s 0.2" in slow.json()["detail"]
    assert after.status_code == 200


def test_bad_image_in_a_batch_fails_only_its_own_request():
    fake = FakeSegmenter()

    async def body(client, app):
        fake.gate.clear()
        warm_up = len(fake.calls)
        tasks = [asyncio.create_task(_post(client, _png(v))) for v in (0, BAD_MARK, 0, 0)]
        await _until(lambda: len(fake.calls) > warm_up)
        await asyncio.sleep(0.1)
        fake.gate.set()
        return await asyncio.gather(*tasks)

    replies = asyncio.run(_with_app(fake, body, max_batch=8, max_wait_ms=300))
    assert [r.status_code for r in replies] == [200, 500, 200, 200]
    assert "this image breaks the model" in replies[1].json()["detail"]
    assert max(fake.calls[1:]) > 1  # they did run as a batch first (after the warm-up)


def test_readyz_is_503_until_the_model_is_loaded_and_a_failed_load_is_reported():
    gate = threading.Event()

    def slow_load(path):
        assert gate.wait(10)
        raise FileNotFoundError(f"{path}: no model there")

    async def run():
        fatal = []
        app = create_app(ServeSettings("missing"), load=slow_load, on_fatal=fatal.append)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                loading = await client.get("/readyz")
                segment = await _post(client, _png())
                alive = await client.get("/healthz")
                gate.set()
                await _until(lambda: fatal)
                failed = await client.get("/readyz")
        return loading, segment, alive, failed, fatal

    loading, segment, alive, failed, fatal = asyncio.run(run())
    assert loading.status_code == 503 and loading.json() == {"detail": "loading the model"}
    assert segment.status_code == 503 and alive.status_code == 200
    assert failed.status_code == 503 and "missing: no model there" in failed.json()["detail"]
    assert isinstance(fatal[0], FileNotFoundError)


def test_worker_batches_only_matching_keys_up_to_max_batch():
    runs = []
    gate = threading.Event()

    def run_batch(items):
        assert gate.wait(10)
        runs.append(list(items))
        return [item * 10 for item in items]

    worker = BatchWorker(run_batch, max_batch=3, max_wait_s=0.0, max_queue=10)
    results = {}
    keys = ["a", "b", "a", "a", "a", None, "b"]
    for i, key in enumerate(keys):
        worker.submit(i, key, lambda r, e, i=i: results.setdefault(i, (r, e)))
    with pytest.raises(QueueFull, match="queue full"):
        for i in range(10):
            worker.submit(100 + i, "c", lambda r, e: None)
    assert worker.depth() == 10
    worker.start()
    gate.set()
    worker.stop(timeout=10)
    assert runs[:4] == [[0, 2, 3], [1, 6], [4], [5]]
    assert all(results[i] == (i * 10, None) for i in range(len(keys)))
    with pytest.raises(QueueFull, match="shutting down"):
        worker.submit(0, "a", lambda r, e: None)


@pytest.mark.parametrize("flags, message", [
    (["--max_batch", "0"], "--max_batch must be >= 1"),
    (["--max_wait_ms", "-1"], "--max_wait_ms must be >= 0"),
    (["--timeout_s", "0"], "--timeout_s must be > 0"),
    (["--port", "70000"], "--port must be in 1..65535"),
])
def test_serve_refuses_bad_flags_in_one_line(capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        serve_command(["--model", "m"] + flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
