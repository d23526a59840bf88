"""``gluon-deeplab-serve`` and ``gluon-deeplab-demo``: the HTTP service (:mod:`.serve`) under
uvicorn, one process, with the browser demo (:mod:`.demo`) at ``/demo``, or at ``/`` for
``gluon-deeplab-demo``. SIGTERM or Ctrl-C stop taking connections, answer every queued image,
then exit; a model that fails to load ends the process with a one-line error and exit status 1."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ..cli_help import DefaultsHelpFormatter
from ..errors import error_line

SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client", "multipart")
DEMO_PACKAGE = "gradio"
DEMO_PATH = "/demo"
SERVE_DESCRIPTION = ("Serve a model over HTTP: POST /v1/segment, GET /v1/model, /healthz, "
                     "/readyz, /metrics, and the browser demo at /demo (docs/deployment.md).")
DEMO_DESCRIPTION = ("Try a model in the browser: upload an image, see the overlay, the mask "
                    "and the classes present (the service's routes are there too).")


def build_serve_parser(demo: bool = False) -> argparse.ArgumentParser:
    """Flags of gluon-deeplab-serve, or of gluon-deeplab-demo (``demo``: port 7860, no
    ``--no_demo``)."""
    p = argparse.ArgumentParser(description=DEMO_DESCRIPTION if demo else SERVE_DESCRIPTION,
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--model", required=True,
                   help="an export PREFIX (fp32, bf16, INT8) or a training checkpoint")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860 if demo else 8080, help="TCP port")
    if not demo:
        p.add_argument("--no_demo", action="store_true",
                       help="no browser demo at /demo (it needs the `demo` extra: gradio)")
    p.add_argument("--max_batch", type=int, default=8,
                   help="images of one padded shape run as one batch, up to this many "
                        "(1: no batching)")
    p.add_argument("--max_wait_ms", type=float, default=5.0,
                   help="how long a batch waits for more images (0: only what is queued)")
    p.add_argument("--max_queue", type=int, default=64,
                   help="images waiting at most; more get 503 with Retry-After at once")
    p.add_argument("--max_body_mb", type=float, default=10.0,
                   help="largest request body in MiB (413 above)")
    p.add_argument("--max_pixels", type=int, default=4_000_000,
                   help="largest image (and padded model input) in pixels (413 above, "
                        "read from the header before decoding)")
    p.add_argument("--timeout_s", type=float, default=30.0,
                   help="a request without its result after this long gets 504")
    return p


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for flag in ("max_batch", "max_queue", "max_pixels"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    for flag in ("max_body_mb", "timeout_s"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be > 0, got {getattr(args, flag)}")
    if args.max_wait_ms < 0:
        parser.error(f"--max_wait_ms must be >= 0, got {args.max_wait_ms}")
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")


def _missing(packages: List[str]) -> List[str]:
    import importlib.util

    return [name for name in packages if importlib.util.find_spec(name) is None]


def run_service(argv: Optional[List[str]], demo_path: Optional[str], command: str) -> int:
    """Serve until SIGTERM / Ctrl-C, with the demo at ``demo_path`` (None: none); exit status
    1 when the model cannot be loaded, 2 for bad flags or a missing extra."""
    parser = build_serve_parser(demo=demo_path == "/")
    args = parser.parse_args(argv)
    _check_args(parser, args)
    missing, no_gradio = _missing(list(SERVE_PACKAGES)), bool(_missing([DEMO_PACKAGE]))
    if getattr(args, "no_demo", False):
        demo_path = None
    if demo_path == "/" and no_gradio:
        missing.append(DEMO_PACKAGE)
    if missing:
        extra = "demo" if DEMO_PACKAGE in missing else "serve"
        parser.exit(2, f"{command}: error: needs {', '.join(missing)}: "
                       f"pip install -e '.[{extra}]'\n")
    if demo_path and no_gradio:
        print(f"{command}: no demo at {demo_path} (pip install -e '.[demo]' adds it)",
              file=sys.stderr)
        demo_path = None
    import uvicorn

    from .serve import ServeSettings, create_app

    settings = ServeSettings(os.fspath(args.model), args.max_batch, args.max_wait_ms,
                             args.max_queue, args.max_body_mb, args.max_pixels, args.timeout_s)
    failed: List[BaseException] = []
    server: Optional[uvicorn.Server] = None

    def fatal(err: BaseException) -> None:
        failed.append(err)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_fatal=fatal)
    if demo_path:
        from .demo import mount_demo

        app = mount_demo(app, app.state.service, demo_path)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="warning", access_log=False,
                                           lifespan="on"))
    where = f"http://{args.host}:{args.port}"
    demo_at = f"; the demo at {where}{demo_path.rstrip('/')}/" if demo_path else ""
    print(f"{command}: {args.model} on {where} (ready when /readyz says so{demo_at})",
          file=sys.stderr, flush=True)
    server.run()
    if failed:
        print(f"{command}: error: --model {args.model}: {error_line(failed[0])}",
              file=sys.stderr)
        return 1
    return 0


def serve_command(argv: Optional[List[str]] = None) -> int:
    """``gluon-deeplab-serve``: the service, with the demo at /demo when gradio is there."""
    return run_service(argv, DEMO_PATH, "gluon-deeplab-serve")


def demo_command(argv: Optional[List[str]] = None) -> int:
    """``gluon-deeplab-demo``: the same service with the demo at ``/``."""
    return run_service(argv, "/", "gluon-deeplab-demo")


if __name__ == "__main__":
    sys.exit(serve_command())
