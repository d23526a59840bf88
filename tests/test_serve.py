"""``gluon-deeplab-serve`` as a real process on 127.0.0.1 with the small trained model's export:
its answers equal ``Segmenter.segment``'s (batched or not), bad input and faults get their
codes while the good requests beside them succeed, /metrics counts each error, the model's
files may vanish after start, and SIGTERM answers what is queued before exiting (last test)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import socket
import struct
import time
import zlib

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from gluon_deeplab.deploy import export_checkpoint  # noqa: E402
from gluon_deeplab.deploy.server_process import start_server  # noqa: E402
from gluon_deeplab.evaluation.segmenter import load_segmenter  # noqa: E402
from gluon_deeplab.evaluation.visualize import overlay  # noqa: E402

FLAGS = ["--max_batch", "8", "--max_wait_ms", "100", "--max_pixels", "200000",
         "--max_body_mb", "1", "--timeout_s", "60", "--no_demo"]
PNG = {"content-type": "image/png"}


def _encoded(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A small PNG claiming ``width`` x ``height``: a bomb when both are large."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def service(trained_synthetic, tmp_path_factory):
    """(server, reference Segmenter, images): the server runs a copy of the export whose
    files are deleted once it is ready."""
    root, checkpoint = trained_synthetic
    base = tmp_path_factory.mktemp("serve")
    export_checkpoint(checkpoint, str(base / "ref" / "deeplab"))
    shutil.copytree(base / "ref", base / "served")
    server = start_server(str(base / "served" / "deeplab"), FLAGS, str(base / "serve.log"))
    try:
        server.wait_ready(180)
        shutil.rmtree(base / "served")
        names = sorted(os.listdir(os.path.join(root, "JPEGImages")))[:6]
        images = [np.asarray(Image.open(os.path.join(root, "JPEGImages", n)).convert("RGB"))
                  for n in names]
        yield server, load_segmenter(str(base / "ref" / "deeplab")), images
    finally:
        server.stop()


def _metric(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(line_start))


def test_every_format_equals_segmenter_segment_and_the_model_files_may_vanish(service):
    server, reference, images = service
    assert not os.path.exists(os.path.dirname(reference.model.source).replace("ref", "served"))
    expected = reference.segment(images[0])
    body = _encoded(images[0])
    mask = httpx.post(f"{server.url}/v1/segment", content=body, headers=PNG)
    assert mask.status_code == 200 and mask.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(mask.content))),
                                  expected.mask)
    shown = httpx.post(f"{server.url}/v1/segment", params={"format": "overlay", "alpha": "0.3"},
                       files={"file": ("a.png", body, "image/png")})
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(shown.content))),
                                  overlay(images[0], expected.mask, 0.3))
    meta = httpx.post(f"{server.url}/v1/segment?format=json", content=body, headers=PNG).json()
    assert (meta["height"], meta["width"]) == images[0].shape[:2]
    assert meta["classes"] == reference.classes
    assert meta["pixels_per_class"] == expected.pixels_per_class()
    for segment in meta["segments"]:
        assert segment["score"] is None
        got = np.asarray(Image.open(io.BytesIO(base64.b64decode(segment["mask"]))))
        class_id = reference.classes.index(segment["label"])
        np.testing.assert_array_equal(got == 255, expected.mask == class_id)
    model = httpx.get(f"{server.url}/v1/model").json()
    assert model["classes"] == reference.classes and model["precision"] == "fp32"
    assert model["output_stride"] == reference.model.output_stride


async def _posts(url, bodies, content_types):
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*[
            client.post(f"{url}/v1/segment", content=body, headers={"content-type": kind})
            for body, kind in zip(bodies, content_types)])


def test_no_demo_serves_the_api_without_the_browser_demo(service):
    server, _, _ = service
    assert httpx.get(f"{server.url}/demo/", timeout=10).status_code == 404
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_concurrent_requests_run_batched_and_equal_each_image_alone(service):
    server, reference, images = service
    before = httpx.get(f"{server.url}/metrics").text
    replies = asyncio.run(_posts(server.url, [_encoded(im) for im in images],
                                 ["image/png"] * len(images)))
    after = httpx.get(f"{server.url}/metrics").text
    for reply, image in zip(replies, images):
        assert reply.status_code == 200
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(reply.content))),
                                      reference.segment(image).mask)
    runs = _metric(after, "gluon_deeplab_batch_size_count") - _metric(
        before, "gluon_deeplab_batch_size_count")
    assert runs < len(images)  # some ran together


def _bad_inputs(image: np.ndarray):
    """(name, body, content type, expected status) of each kind of bad request."""
    jpeg = _encoded(image, "JPEG")
    return [
        ("empty body", b"", "image/png", 400),
        ("0x0 PNG", _png_header(0, 0), "image/png", 400),
        ("1x100000 PNG (a side over MXNet's 32767)", _encoded(np.zeros((1, 100000, 3),
                                                                      np.uint8)),
         "image/png", 413),
        ("PNG bomb", _png_header(50000, 50000), "image/png", 413),
        ("wrong content type", _encoded(image), "text/plain", 415),
        ("not an image", b"GIF89a, or rather not" * 10, "image/jpeg", 415),
        ("JPEG cut in half", jpeg[:len(jpeg) // 2], "image/jpeg", 400),
        ("JPEG cut in its header", jpeg[:300], "image/jpeg", 400),
        ("body over --max_body_mb", b"\xff" * (1024 * 1024 + 10), "image/jpeg", 413),
    ]


def test_each_bad_input_gets_its_code_in_one_line(service):
    server, _, images = service
    for name, body, kind, status in _bad_inputs(images[0]):
        start = time.perf_counter()
        reply = httpx.post(f"{server.url}/v1/segment", content=body,
                           headers={"content-type": kind}, timeout=30)
        assert reply.status_code == status, (name, reply.text)
        detail = reply.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail, name
        assert time.perf_counter() - start < 5, f"{name} took long: decoded?"
    bad_format = httpx.post(f"{server.url}/v1/segment?format=webp", content=b"x", headers=PNG)
    assert bad_format.status_code == 400 and "format must be one of" in bad_format.text


def test_fifty_concurrent_clients_bad_beside_good_the_good_all_succeed_and_metrics_count(
        service):
    server, reference, images = service
    bad = _bad_inputs(images[1])
    bodies, kinds, expected = [], [], []
    for i in range(50):
        if i % 2:
            _, body, kind, status = bad[(i // 2) % len(bad)]
            bodies.append(body), kinds.append(kind), expected.append(status)
        else:
            bodies.append(_encoded(images[i % 4])), kinds.append("image/png")
            expected.append(200)
    before = httpx.get(f"{server.url}/metrics").text
    replies = asyncio.run(_posts(server.url, bodies, kinds))
    after = httpx.get(f"{server.url}/metrics").text
    assert [r.status_code for r in replies] == expected
    masks = {i: reference.segment(images[i]).mask for i in range(4)}
    for i in range(0, 50, 2):
        np.testing.assert_array_equal(
            np.asarray(Image.open(io.BytesIO(replies[i].content))), masks[i % 4])
    for code in {s for s in expected if s != 200}:
        line = f'gluon_deeplab_errors_total{{code="{code}",route="/v1/segment"}}'
        assert _metric(after, line) - _metric(before, line) == expected.count(code), code


def test_client_disconnecting_mid_request_is_counted_and_serving_goes_on(service):
    server, reference, images = service
    port = int(server.url.rsplit(":", 1)[1])
    head = (b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
            b"Content-Length: 50000\r\n\r\n")
    for whole in (False, True):  # mid-upload; then right after a whole request
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            body = _encoded(images[2])
            sock.sendall(head.replace(b"50000", str(len(body)).encode()) + body if whole
                         else head + b"\x89PNG" * 100)
    line = 'gluon_deeplab_errors_total{code="499",route="/v1/segment"}'
    until = time.monotonic() + 10
    while _metric(httpx.get(f"{server.url}/metrics").text, line) < 1:
        assert time.monotonic() < until, "the dropped upload was not counted"
        time.sleep(0.05)
    reply = httpx.post(f"{server.url}/v1/segment", content=_encoded(images[2]), headers=PNG)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(reply.content))),
                                  reference.segment(images[2]).mask)


def test_sigterm_answers_what_is_queued_then_exits(service):
    """Last in this module: it stops the module's server."""
    server, _, images = service
    sizes = [(40, 56), (44, 60), (36, 52), (48, 48), (32, 64), (40, 40)]  # one batch each
    bodies = [_encoded(np.ascontiguousarray(images[0][:h, :w])) for h, w in sizes]

    async def run():
        task = asyncio.ensure_future(_posts(server.url, bodies, ["image/png"] * len(bodies)))
        until = time.monotonic() + 20
        async with httpx.AsyncClient() as client:
            while _metric((await client.get(f"{server.url}/metrics")).text,
                          "gluon_deeplab_queue_depth") < 2:
                assert time.monotonic() < until, "the requests never queued"
                await asyncio.sleep(0.01)
        server.proc.terminate()
        return await task

    replies = asyncio.run(run())
    assert [r.status_code for r in replies] == [200] * len(bodies)
    assert server.proc.wait(30) in (0, -15)  # uvicorn re-raises SIGTERM once drained
