"""How an error is quoted inside another one-line message (no MXNet import)."""

from __future__ import annotations

MAX_QUOTED = 200  # characters of a quoted message
# MXNet's C++ errors: this header, "File ..., line N" lines, then "MXNetError: <what failed>".
MXNET_TRACEBACK = "Traceback (most recent call last):"


def error_line(err: BaseException, with_type: bool = False, limit: int = MAX_QUOTED) -> str:
    """The line of ``err``'s message that says what went wrong, at most ``limit`` characters:
    the first line, or the last one of MXNet's C++ tracebacks; the exception's type name for an
    empty message. ``with_type`` prefixes ``Type: `` (unless the line starts with it)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    kind = type(err).__name__
    if not lines:
        return kind
    line = (lines[-1] if lines[0] == MXNET_TRACEBACK else lines[0])[:limit]
    return f"{kind}: {line}" if with_type and not line.startswith(f"{kind}:") else line
