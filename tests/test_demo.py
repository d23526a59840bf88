"""The browser demo: Debian's Chromium, driven by playwright, uploads an image to ``/demo`` on
the service, and the mask it shows equals ``Segmenter.segment``'s; ``gluon-deeplab-demo``
serves the same page at ``/`` and its API gives the same mask."""

from __future__ import annotations

import io
import os
import shutil
from urllib.parse import urljoin

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service needs the [serve] extra")
pytest.importorskip("gradio", reason="the demo needs the [demo] extra")
import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from gluon_deeplab.data.synthetic import make_sample  # noqa: E402
from gluon_deeplab.deploy import serve_cli  # noqa: E402
from gluon_deeplab.deploy.server_process import running_server  # noqa: E402
from gluon_deeplab.evaluation.colormap import colorize  # noqa: E402
from gluon_deeplab.evaluation.segmenter import load_segmenter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, "test-artifacts")
BROWSERS = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
WAIT_MS = 90_000


def chromium_or_skip() -> str:
    """Debian's Chromium; without one a skip that says how to get it, a failure under CI."""
    for name in BROWSERS:
        path = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true and no Chromium for the browser test: .ci/run installs Debian's "
                    "chromium (apt-get install chromium)")
    pytest.skip("the browser test needs Chromium: apt-get install chromium (Debian, Ubuntu)")


@pytest.fixture(scope="module")
def demo_case(trained_synthetic, tmp_path_factory):
    """(checkpoint, PNG of an image, the mask ``Segmenter.segment`` gives it in VOC colours)."""
    _, checkpoint = trained_synthetic
    image, _ = make_sample(3, (72, 96), 3, seed=11)
    path = str(tmp_path_factory.mktemp("demo") / "upload.png")
    Image.fromarray(image).save(path)
    expected = colorize(load_segmenter(checkpoint).segment(image).mask)
    return checkpoint, path, expected


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_browser_upload_on_the_service_shows_the_mask_segment_gives(demo_case):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    browser_path = chromium_or_skip()
    checkpoint, upload, expected = demo_case
    os.makedirs(ARTIFACTS, exist_ok=True)
    with running_server(checkpoint, ["--max_wait_ms", "0"]) as server, \
            sync_api.sync_playwright() as play:
        browser = play.chromium.launch(executable_path=browser_path, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server.url}/demo/", timeout=WAIT_MS)
            page.locator("#image input[type=file]").set_input_files(upload)
            page.locator("#image img").wait_for(state="visible", timeout=WAIT_MS)
            page.locator("#segment").click()
            shown = page.locator("#mask img")
            shown.wait_for(state="visible", timeout=WAIT_MS)
            page.locator("#legend li").first.wait_for(timeout=WAIT_MS)
            page.screenshot(path=os.path.join(ARTIFACTS, "demo.png"), full_page=True)
            mask = page.request.get(urljoin(page.url, shown.get_attribute("src"))).body()
            legend = page.locator("#legend li").all_inner_texts()
            overlay_src = page.locator("#overlay img").get_attribute("src")
        finally:
            browser.close()
    np.testing.assert_array_equal(_rgb(mask), expected)
    assert overlay_src and ".png" in overlay_src  # PNG, not Gradio's default webp
    assert legend and all("%" in item for item in legend), legend


def test_demo_command_serves_the_page_at_root_and_its_api_gives_the_same_mask(demo_case):
    from gradio_client import Client, handle_file

    checkpoint, upload, expected = demo_case
    with running_server(checkpoint, command="demo") as server:
        page = httpx.get(f"{server.url}/", timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
        client = Client(f"{server.url}/", verbose=False)
        overlay_path, mask_path, legend = client.predict(handle_file(upload),
                                                         api_name="/segment")
    with open(mask_path, "rb") as f:
        np.testing.assert_array_equal(_rgb(f.read()), expected)
    assert overlay_path.endswith(".png") and "<li" in legend


def test_demo_without_gradio_is_a_one_line_error(monkeypatch, capsys, demo_case):
    monkeypatch.setattr(serve_cli, "_missing", lambda names: [n for n in names if n == "gradio"])
    with pytest.raises(SystemExit) as exit_info:
        serve_cli.demo_command(["--model", demo_case[0]])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "gradio" in err and ".[demo]" in err
