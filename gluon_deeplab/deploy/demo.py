"""The browser demo (Gradio, the ``demo`` extra): upload an image, see the overlay, the mask in
the VOC colours and a legend of the classes present. Mounted at ``/demo`` on
``gluon-deeplab-serve`` and served alone by ``gluon-deeplab-demo``. Its function awaits the
service's queue, so the model still runs only on the one inference thread (MXNet's engine is
not safe to call from Gradio's worker threads)."""

from __future__ import annotations

import html
import os
import tempfile
from typing import Any, List, Tuple

import numpy as np
from PIL import Image

# Before gradio's first import: no usage reports leave the machine.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from ..data.synthetic import make_sample  # noqa: E402
from ..evaluation.colormap import colorize, voc_colormap  # noqa: E402
from ..evaluation.visualize import overlay  # noqa: E402
from .payloads import RequestError  # noqa: E402
from .serve import ModelService  # noqa: E402

OVERLAY_ALPHA = 0.5
EXAMPLE_SIZE = (192, 256)
NUM_EXAMPLES = 3
EXAMPLE_CLASSES = 5  # the quick start's synthetic set


def legend_html(mask: np.ndarray, classes: List[str]) -> str:
    """One swatch in the class's VOC colour per class present, with its share of the pixels."""
    counts = np.bincount(mask.ravel(), minlength=len(classes))
    colours = voc_colormap()
    items = []
    for k in np.flatnonzero(counts):
        r, g, b = (int(c) for c in colours[k])
        share = 100.0 * counts[k] / mask.size
        items.append(f'<li data-class="{html.escape(classes[k])}"><span style="display:'
                     f'inline-block;width:1em;height:1em;background:rgb({r},{g},{b});'
                     f'border:1px solid #888"></span> {html.escape(classes[k])} '
                     f'({share:.1f}%)</li>')
    return f'<ul class="legend" style="list-style:none;padding:0">{"".join(items)}</ul>'


def example_images(folder: str) -> List[str]:
    """A few images of the quick start's synthetic set, as PNG files for Gradio's examples."""
    paths = []
    for index in range(NUM_EXAMPLES):
        image, _ = make_sample(index, EXAMPLE_SIZE, EXAMPLE_CLASSES, seed=0)
        path = os.path.join(folder, f"synthetic_{index}.png")
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def build_demo(service: ModelService) -> gr.Blocks:
    """The demo's page: its one event awaits ``service.segment`` like an HTTP request."""

    async def segment(image: Any) -> Tuple[np.ndarray, np.ndarray, str]:
        if image is None:
            raise gr.Error("Upload an image first.")
        rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        pixels = rgb.shape[0] * rgb.shape[1]
        if pixels > service.settings.max_pixels:
            raise gr.Error(f"The image has {pixels} pixels, over this service's "
                           f"--max_pixels {service.settings.max_pixels}.")
        try:
            result = await service.segment(rgb)
        except RequestError as err:
            raise gr.Error(err.detail) from None
        return (overlay(result.image, result.mask, OVERLAY_ALPHA), colorize(result.mask),
                legend_html(result.mask, result.classes))

    folder = tempfile.mkdtemp(prefix="gluon-deeplab-demo-")
    with gr.Blocks(title="gluon-deeplab", analytics_enabled=False) as demo:
        gr.Markdown(f"# gluon-deeplab\n`{os.path.basename(service.settings.model)}`: upload an "
                    "image and press **Segment**.")
        with gr.Row():
            image = gr.Image(type="numpy", image_mode="RGB", sources=["upload"],
                             label="image", elem_id="image")
            shown = gr.Image(format="png", label="overlay", elem_id="overlay",
                             interactive=False)
            mask = gr.Image(format="png", label="mask (VOC colours)", elem_id="mask",
                            interactive=False)
        legend = gr.HTML(elem_id="legend")
        button = gr.Button("Segment", variant="primary", elem_id="segment")
        gr.Examples(example_images(folder), inputs=image)
        button.click(segment, inputs=image, outputs=[shown, mask, legend], api_name="segment")
    return demo


def mount_demo(app: FastAPI, service: ModelService, path: str) -> FastAPI:
    """``app`` with the demo at ``path``; uploads over the service's ``--max_body_mb`` are
    refused by Gradio."""
    limit = int(service.settings.max_body_mb * 1024 * 1024)
    return gr.mount_gradio_app(app, build_demo(service), path=path, max_file_size=limit,
                               ssr_mode=False, mcp_server=False, footer_links=[])
