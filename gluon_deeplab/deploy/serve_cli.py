"""``gluon-deeplab-serve``: the HTTP service (:mod:`.serve`) under uvicorn, one process. SIGTERM
or Ctrl-C stop taking connections, answer every queued image, then exit; a model that fails
to load ends the process with a one-line error and exit status 1."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from ..cli_help import DefaultsHelpFormatter
from ..errors import error_line

SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client", "multipart")


def build_serve_parser() -> argparse.ArgumentParser:
    """Flags of gluon-deeplab-serve."""
    p = argparse.ArgumentParser(
        description="Serve a model over HTTP: POST /v1/segment, GET /v1/model, /healthz, "
                    "/readyz, /metrics (docs/deployment.md).",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--model", required=True,
                   help="an export PREFIX (fp32, bf16, INT8) or a training checkpoint")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8080, help="TCP port")
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


def _require_serve_extra() -> None:
    import importlib.util

    missing = [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"gluon-deeplab-serve needs {', '.join(missing)}: "
                          "pip install -e '.[serve]'")


def serve_command(argv: Optional[List[str]] = None) -> int:
    """``gluon-deeplab-serve``: serve until SIGTERM / Ctrl-C; exit status 1 when the model
    cannot be loaded, 2 for bad flags or a missing ``serve`` extra."""
    parser = build_serve_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        _require_serve_extra()
    except ImportError as err:
        parser.exit(2, f"gluon-deeplab-serve: error: {err}\n")
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
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    print(f"gluon-deeplab-serve: {args.model} on http://{args.host}:{args.port} "
          "(ready when /readyz says so)", file=sys.stderr, flush=True)
    server.run()
    if failed:
        print(f"gluon-deeplab-serve: error: --model {args.model}: "
              f"{error_line(failed[0])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(serve_command())
