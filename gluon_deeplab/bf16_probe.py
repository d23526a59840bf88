"""How fast bfloat16 runs here against fp32, measured: a short probe of DeepLab-sized
convolutions, cached per CPU model, MXNet build and AMX state.

The CPU flags do not say it: bf16 without AMX (``avx512_bf16``, AMD Zen 5) measured 1.6-1.8x
fp32 on a 513x513 DeepLab forward, and 0.4x at 64x64 with resnet18, on the same CPU. So the
probe times BatchNorm-ReLU-convolution blocks at the feature maps of a 513x513 image (3x3
convolutions, 256 channels, at 65x65 dilated as at output stride 8 and at 33x33 as at 16, and
a bottleneck's 1x1) in fp32 and through :func:`~.precision.to_bf16`, best of a few runs, well
under two seconds. ``--amp``, ``export.py --dtype bf16`` and ``gluon-deeplab-env`` print the
ratio; where bf16 cannot run, only that.

The probe runs in a child process that imports gluon_deeplab, so AMX is as the library sets it
(off in the child where it is off here): ``amp.init`` patches this process's operators (an
fp32 network built after it is not fp32), and a bf16 kernel that fails hard cannot take a
training run down. Its result is kept in ``$XDG_CACHE_HOME/gluon-deeplab/bf16_probe.json``
(``~/.cache`` without it), one entry per key; another CPU model, MXNet build or AMX state (or
a new probe) measures again, and an unreadable file is measured over.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from . import amx
from .cpuinfo import cpu_flags, cpu_name
from .errors import error_line
from .mxnet_builds import installed_builds

PROBE_VERSION = 1  # part of the cache key: a change of the blocks below measures again
# (input channels, output channels, kernel, feature map side, dilation) of each block
BLOCKS = ((256, 256, 3, 65, 2), (256, 256, 3, 33, 1), (1024, 256, 1, 33, 1))
MEASURED_ON = "3x3 and 1x1 convs at 65x65 and 33x33, a 513x513 image's feature maps"
REPEATS = 3  # best of this many runs per block, after one warm-up run
BUDGET_S = 0.4  # seconds of timed runs per precision, at least one run per block
PROBE_TIMEOUT_S = 120  # the child, MXNet's import included
MAX_ENTRIES = 16
CACHE_FILE = os.path.join("gluon-deeplab", "bf16_probe.json")
CHILD_CODE = "from gluon_deeplab.bf16_probe import child_main; child_main()"


@dataclass(frozen=True)
class Bf16Speed:
    """What the probe found: bf16 ``runs`` (None: not measured, ``reason`` says why; False:
    cannot run, ``reason`` says why), its best seconds against fp32's, and when."""

    runs: Optional[bool]
    reason: str = ""
    fp32_s: Optional[float] = None
    bf16_s: Optional[float] = None
    date: str = ""
    cached: bool = False

    @property
    def ratio(self) -> Optional[float]:
        """bf16's speed in units of fp32's (> 1: faster); None where not measured."""
        if self.runs and self.fp32_s and self.bf16_s:
            return self.fp32_s / self.bf16_s
        return None

    def describe(self) -> str:
        """One phrase: "bf16 runs 1.7x fp32 here (measured: ...)", or why there is none."""
        if self.runs is None:
            return f"bf16 speed not measured ({self.reason})"
        ratio = self.ratio
        if ratio is None:
            return f"bf16 cannot run here: {self.reason}"
        slower = " - slower than fp32" if round(ratio, 1) < 1.0 else ""
        when = f"{self.date}, cached" if self.cached else self.date
        return f"bf16 runs {ratio:.1f}x fp32 here{slower} (measured: {MEASURED_ON}; {when})"


def probe_blocks() -> List[Any]:
    """The fp32 blocks, hybridized and run once, each with its input: [(block, x)]."""
    import mxnet as mx
    from mxnet.gluon import nn

    blocks = []
    for channels, out, kernel, side, dilation in BLOCKS:
        block = nn.HybridSequential()
        block.add(nn.BatchNorm(in_channels=channels), nn.Activation("relu"),
                  nn.Conv2D(out, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                            in_channels=channels, use_bias=False))
        block.initialize(mx.init.Xavier(), ctx=mx.cpu())
        block.hybridize(static_alloc=True, static_shape=True)
        x = mx.nd.random.uniform(shape=(1, channels, side, side))
        block(x).wait_to_read()
        blocks.append((block, x))
    return blocks


def best_seconds(blocks: List[Any], repeats: int = REPEATS, budget: float = BUDGET_S) -> float:
    """The sum over ``blocks`` of each one's best time of ``repeats`` runs after a warm-up;
    a block stops early once its share of ``budget`` seconds is spent."""
    total = 0.0
    for block, x in blocks:
        block(x).wait_to_read()
        best, spent = math.inf, 0.0
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            block(x).wait_to_read()
            seconds = time.perf_counter() - start
            best, spent = min(best, seconds), spent + seconds
            if spent > budget / len(blocks):
                break
        total += best
    return total


def measure(repeats: int = REPEATS, budget: float = BUDGET_S) -> Dict[str, Any]:
    """Time the blocks in fp32, then in bf16 (in this process: run it in a child, see
    :func:`run_probe`): {"runs", "fp32_s", "bf16_s"}, or "reason" where bf16 cannot run."""
    import mxnet as mx

    from .precision import to_bf16, unavailable_reason

    blocks = probe_blocks()
    record: Dict[str, Any] = {"fp32_s": best_seconds(blocks, repeats, budget)}
    try:
        converted = [(to_bf16(block), x) for block, x in blocks]
        record["bf16_s"] = best_seconds(converted, repeats, budget)
    except mx.base.MXNetError as err:
        return {**record, "runs": False,
                "reason": unavailable_reason(error_line(err), cpu_flags())}
    return {**record, "runs": True}


def child_main() -> None:
    """The child's part: print :func:`measure`'s record as one JSON line."""
    print(json.dumps(measure()))


def run_probe(timeout: float = PROBE_TIMEOUT_S) -> Dict[str, Any]:
    """:func:`measure` in a child process with AMX as here; RuntimeError (one line) when the
    child fails or prints no record."""
    extra = {} if amx.status().enabled else {amx.SWITCH: "0"}
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD_CODE], capture_output=True,
                              text=True, env=amx.child_environment(extra), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the probe ran over {timeout:g} s") from None
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or f"exit status {proc.returncode}").splitlines()
        raise RuntimeError(f"the probe failed: {lines[-1]}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError("the probe printed no record") from None


def cache_path(environ: Optional[Mapping[str, str]] = None) -> str:
    """The cache file: under ``$XDG_CACHE_HOME`` (an absolute path), else ``~/.cache``."""
    environ = os.environ if environ is None else environ
    root = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(root):
        root = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, CACHE_FILE)


def cache_key() -> Dict[str, Any]:
    """What the ratio depends on: the CPU model (its name, and its AVX-512 and AMX flags where
    a virtual machine names every model alike), the MXNet build, AMX and the probe."""
    import mxnet as mx

    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")))
    return {"cpu": cpu_name(), "flags": " ".join(flags), "mxnet": mx.__version__,
            "distribution": ", ".join(f"{name} {v}" for name, v in installed_builds()),
            "mkldnn": bool(mx.runtime.Features().is_enabled("MKLDNN")),
            "amx": amx.status().enabled, "probe": PROBE_VERSION}


def _entries(path: str) -> List[Dict[str, Any]]:
    """The cache's entries; none where the file is missing or not what this module writes."""
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("key"), dict)
            and isinstance(e.get("result"), dict)]


def _save(path: str, entries: List[Dict[str, Any]]) -> None:
    """Write the cache at once (a reader never sees half a file); an unwritable cache folder
    only means measuring again next time."""
    from .files import atomic_write

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump({"entries": entries[-MAX_ENTRIES:]}, f, indent=1)

    try:
        atomic_write(path, write)
    except OSError:
        pass


def _speed(record: Mapping[str, Any], cached: bool) -> Optional[Bf16Speed]:
    """The record as :class:`Bf16Speed`; None where it is malformed."""
    try:
        speed = Bf16Speed(record["runs"], str(record.get("reason", "")),
                          float(record["fp32_s"]) if "fp32_s" in record else None,
                          float(record["bf16_s"]) if "bf16_s" in record else None,
                          str(record["date"]), cached)
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(speed.runs, bool) or (speed.runs and not speed.ratio):
        return None
    return speed


def bf16_speed() -> Bf16Speed:
    """bf16's speed against fp32 on this machine: the cached record for this CPU, MXNet build
    and AMX state, else a new probe (:func:`run_probe`), then cached."""
    key, path = cache_key(), cache_path()
    entries = _entries(path)
    for entry in entries:
        if entry["key"] == key:
            speed = _speed(entry["result"], cached=True)
            if speed is not None:
                return speed
    try:
        record = dict(run_probe())
    except RuntimeError as err:
        return Bf16Speed(None, error_line(err))
    record["date"] = datetime.date.today().isoformat()
    speed = _speed(record, cached=False)
    if speed is None:
        return Bf16Speed(None, f"the probe gave a malformed record: {json.dumps(record)}")
    _save(path, [e for e in entries if e["key"] != key] + [{"key": key, "result": record}])
    return speed


def report() -> str:
    """:meth:`Bf16Speed.describe` for ``gluon-deeplab-env``, which reports also a machine
    where MXNet is missing or broken: then why nothing was measured."""
    try:
        return bf16_speed().describe()
    except ModuleNotFoundError:
        return "bf16 speed not measured (MXNet is not installed)"
    except Exception as err:  # noqa: BLE001 - a CUDA build without its driver raises OSError
        return f"bf16 speed not measured ({error_line(err, with_type=True)})"
