"""``gluon-deeplab-loadtest``: the service under load, on loopback only. For each model and
``--max_batch`` it starts ``gluon-deeplab-serve`` (:mod:`.server_process`), waits for
``/readyz``, sends a bounded number of requests at each concurrency with async httpx, reads
the mean batch size from ``/metrics``, and stops the server by its PID; then it times
``Segmenter.segment`` in a loop on the same images, the baseline of concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..cli_help import DefaultsHelpFormatter

SIZE_SETS = {"voc": [(375, 500)], "mixed": [(375, 500), (500, 375), (333, 500), (281, 500)],
             "tiny": [(48, 64)]}
COLUMNS = ("model", "sizes", "max_batch", "concurrency", "requests", "errors", "p50_ms",
           "p99_ms", "images_per_s", "mean_batch")


@dataclass
class Row:
    """One line of the table: a model, size set, batching and concurrency."""

    model: str
    sizes: str
    max_batch: str
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    images_per_s: float
    mean_batch: float

    def cells(self) -> List[str]:
        return [self.model, self.sizes, self.max_batch, str(self.concurrency),
                str(self.requests), str(self.errors), f"{self.p50_ms:.0f}", f"{self.p99_ms:.0f}",
                f"{self.images_per_s:.2f}", f"{self.mean_batch:.2f}"]


def sample_images(sizes: Sequence[Tuple[int, int]], count: int, seed: int = 0) -> List[bytes]:
    """``count`` JPEGs cycling through ``sizes`` (H, W): smooth noise, as photos compress."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    out = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        small = rng.randint(0, 256, (max(1, h // 8), max(1, w // 8), 3)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


async def _drive(url: str, bodies: List[bytes], concurrency: int, requests: int,
                 timeout_s: float) -> Tuple[List[float], int, float]:
    """(latencies of the 200s in s, errors, wall seconds) of ``requests`` POSTs from
    ``concurrency`` clients at once."""
    import httpx

    latencies: List[float] = []
    errors = [0]
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in counter:
            start = time.perf_counter()
            try:
                reply = await client.post(f"{url}/v1/segment", content=bodies[i % len(bodies)],
                                          headers={"content-type": "image/jpeg"})
                ok = reply.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors[0] += 1

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        await asyncio.gather(*[client_loop(client) for _ in range(concurrency)])
    return latencies, errors[0], time.perf_counter() - start


def metric_sum(text: str, name: str) -> float:
    """The sum of a Prometheus text exposition's samples named ``name`` (any labels)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.split("{")[0].split(" ")[0] == name)


def measure(url: str, bodies: List[bytes], concurrency: int, requests: int,
            timeout_s: float = 120.0) -> Dict[str, float]:
    """p50/p99 latency (ms), images/s, errors and the mean batch size of one load run."""
    import httpx

    before = httpx.get(f"{url}/metrics").text
    latencies, errors, seconds = asyncio.run(_drive(url, bodies, concurrency, requests,
                                                    timeout_s))
    after = httpx.get(f"{url}/metrics").text
    runs = metric_sum(after, "gluon_deeplab_batch_size_count") - metric_sum(
        before, "gluon_deeplab_batch_size_count")
    images = metric_sum(after, "gluon_deeplab_batch_size_sum") - metric_sum(
        before, "gluon_deeplab_batch_size_sum")
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "images_per_s": len(latencies) / seconds, "errors": errors,
            "mean_batch": images / runs if runs else 0.0}


def _warm_up(url: str, bodies: List[bytes]) -> None:
    """One request per image size, not timed: the model plans each new input shape once (as
    :func:`direct_rate` runs one image first)."""
    import httpx

    for body in bodies:
        httpx.post(f"{url}/v1/segment", content=body, headers={"content-type": "image/jpeg"},
                   timeout=300).raise_for_status()


def direct_rate(model: str, bodies: List[bytes], requests: int) -> Dict[str, float]:
    """``Segmenter.segment`` in a loop over the decoded images, in this process: the same
    statistics as :func:`measure`, without HTTP or the queue."""
    from PIL import Image

    from ..evaluation.segmenter import load_segmenter

    segmenter = load_segmenter(model)
    images = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in bodies]
    for image in images[:len(set(im.shape for im in images))]:
        segmenter.segment(image)
    latencies = []
    start = time.perf_counter()
    for i in range(requests):
        t = time.perf_counter()
        segmenter.segment(images[i % len(images)])
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "images_per_s": requests / seconds, "errors": 0, "mean_batch": 1.0}


def loadtest(models: Dict[str, str], size_sets: Sequence[str], max_batches: Sequence[int],
             concurrencies: Sequence[int], requests: Sequence[int], max_wait_ms: float = 5.0,
             log_dir: Optional[str] = None, progress: bool = True) -> List[Row]:
    """The table's rows: per model, the direct loop, then each batching setting and size
    set at each concurrency (``requests[i]`` requests at ``concurrencies[i]``)."""
    from .server_process import running_server

    rows = []

    def add(name: str, sizes: str, batch: str, conc: int, n: int, stats: Dict) -> None:
        rows.append(Row(name, sizes, batch, conc, n, int(stats["errors"]), stats["p50_ms"],
                        stats["p99_ms"], stats["images_per_s"], stats["mean_batch"]))
        if progress:
            print(" | ".join(rows[-1].cells()), file=sys.stderr, flush=True)

    for name, path in models.items():
        for sizes in size_sets:
            bodies = sample_images(SIZE_SETS[sizes], 16)
            add(name, sizes, "direct", 1, requests[0], direct_rate(path, bodies, requests[0]))
        for batch in max_batches:
            log = os.path.join(log_dir, f"serve-{name}-{batch}.log") if log_dir else None
            flags = ["--max_batch", str(batch), "--max_wait_ms", str(max_wait_ms),
                     "--max_queue", str(max(64, 2 * max(concurrencies)))]
            with running_server(path, flags, log_path=log) as server:
                for sizes in size_sets:
                    bodies = sample_images(SIZE_SETS[sizes], 16)
                    _warm_up(server.url, bodies[:len(SIZE_SETS[sizes])])
                    for conc, n in zip(concurrencies, requests):
                        add(name, sizes, str(batch), conc, n,
                            measure(server.url, bodies, conc, n))
    return rows


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def build_loadtest_parser() -> argparse.ArgumentParser:
    """Flags of scripts/loadtest.py."""
    p = argparse.ArgumentParser(
        description="Load-test gluon-deeplab-serve on 127.0.0.1: p50/p99 latency, images/s "
                    "and mean batch size per model, batching and concurrency.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]PATH",
                   help="an export prefix or checkpoint; repeat for several (fp32, INT8)")
    p.add_argument("--sizes", nargs="+", choices=sorted(SIZE_SETS), default=["voc", "mixed"],
                   help="image sizes: voc 500x375; mixed four VOC-like sizes; tiny 64x48")
    p.add_argument("--max_batch", type=int, nargs="+", default=[1, 8],
                   help="the server's --max_batch settings to compare (1: batching off)")
    p.add_argument("--max_wait_ms", type=float, default=5.0, help="the server's --max_wait_ms")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16],
                   help="clients sending at once")
    p.add_argument("--requests", type=int, nargs="+", default=[40, 80, 200],
                   help="requests at each --concurrency (one number: the same for all)")
    p.add_argument("--log_dir", help="where the servers' logs go (default: a temp folder)")
    return p


def loadtest_command(argv: Optional[List[str]] = None) -> int:
    """``gluon-deeplab-loadtest``: print the Markdown table; exit status 1 if any request
    failed."""
    parser = build_loadtest_parser()
    args = parser.parse_args(argv)
    requests = args.requests * len(args.concurrency) if len(args.requests) == 1 \
        else args.requests
    if len(requests) != len(args.concurrency) or min(requests + args.concurrency) < 1:
        parser.error("--requests: one positive number, or one per --concurrency")
    if min(args.max_batch) < 1:
        parser.error("--max_batch values must be >= 1")
    models = dict(m.split("=", 1) if "=" in m else (os.path.basename(m), m) for m in args.model)
    for name, path in models.items():
        if not (os.path.exists(path) or os.path.exists(f"{path}-symbol.json")):
            parser.error(f"--model {name}: {path} is not a checkpoint or an export prefix")
    rows = loadtest(models, args.sizes, args.max_batch, args.concurrency, requests,
                    args.max_wait_ms, args.log_dir)
    print(markdown_table(rows))
    return 1 if any(row.errors for row in rows) else 0
