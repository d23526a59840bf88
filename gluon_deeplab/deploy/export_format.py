"""The export format, owned here: ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` (the
hybridized graph), ``PREFIX-meta.json`` (how to feed it), ``PREFIX.onnx``; writers and loader.

The exported graph pads its input with the mean to the next ``output_stride * k + 1`` and
crops the logits back with evaluation/inference.py's padding rule, so it accepts any H x W and
gives what ``Segmenter.segment`` gives the checkpoint. Input: a float32 NCHW batch of RGB
images in [0, 1] normalized with the model zoo mean/std. Reload without this package:
``mxnet.gluon.SymbolBlock.imports(PREFIX + '-symbol.json', ['data'], PREFIX + '-0000.params')``.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock, SymbolBlock

from ..errors import error_line
from ..files import atomic_write
from ..models.upsample import pad_to_stride
from ..paths import check_writable

EXPORT_FORMAT = "gluon-deeplab-export/1"
INPUT_CONVENTION = ("float32 NCHW batch of RGB images scaled to [0, 1], then normalized "
                    "(x - mean) / std per channel; any H x W (the graph pads it with the mean "
                    "to output_stride * k + 1 and crops the logits back)")
OUTPUT_CONVENTION = "float32 logits N x num_classes x H x W (argmax over axis 1 = class map)"
EXPORT_PROBE_SIZE = (64, 64)
# Meta key: the graph pads its input itself (exports written before it do not).
PADS_INPUT = "pads_input"


def exported_files(prefix: str) -> Tuple[str, str]:
    """The symbol and parameter files of an export prefix."""
    return f"{prefix}-symbol.json", f"{prefix}-0000.params"


def meta_path(prefix: str) -> str:
    """The meta file beside an export (:func:`write_meta`)."""
    return f"{prefix}-meta.json"


def onnx_path(prefix: str) -> str:
    """The ONNX file of an export prefix."""
    return f"{prefix}.onnx"


def check_prefix(prefix: str) -> str:
    """``prefix`` if it names files in a writable place (``dir/`` or an existing folder is not a
    prefix: the files would be called ``dir/-symbol.json``)."""
    if not os.path.basename(prefix) or os.path.isdir(prefix):
        raise ValueError(f"--output {prefix}: expected a file prefix such as "
                         f"{os.path.join(prefix, 'deeplab')}, not a folder")
    check_writable(exported_files(prefix)[0], "--output")
    return prefix


def refuse_existing(outputs: Sequence[str], overwrite: bool) -> None:
    """Raise FileExistsError naming the first of ``outputs`` that exists, unless ``overwrite``:
    an export writes nothing over files the user has."""
    existing = [f for f in outputs if os.path.exists(f)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; choose another --output or pass "
                              "--overwrite")


def write_meta(prefix: str, record: Dict[str, Any]) -> str:
    """Write ``record`` as ``PREFIX-meta.json`` atomically (a reader never sees half a file);
    an export writes it once, last."""
    path = meta_path(prefix)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
    atomic_write(path, write)
    return path


def self_padding_graph(symbol: mx.sym.Symbol, stride: int) -> mx.sym.Symbol:
    """``symbol`` (one input 'data', one output) with inference's padding around it: the input
    padded with the mean to ``stride * k + 1`` (:func:`~.models.upsample.pad_to_stride`), the
    output cropped back to the input's H x W."""
    if len(symbol.list_outputs()) != 1:
        raise ValueError(f"expected a graph with one output, got {symbol.list_outputs()}")
    data = mx.sym.var("data")
    with mx.name.Prefix("pad_to_stride_"):
        out = symbol(data=pad_to_stride(mx.sym, data, stride))
        return mx.sym.slice_like(out, data, axes=(2, 3))


def _save_graph(symbol: mx.sym.Symbol, params: Dict[str, Any], prefix: str,
                remove_amp_cast: bool) -> Tuple[str, str]:
    """Write ``symbol`` and the parameters it uses as ``HybridBlock.export`` does."""
    files = exported_files(prefix)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    symbol.save(files[0], remove_amp_cast=remove_amp_cast)
    args, aux = set(symbol.list_arguments()), set(symbol.list_auxiliary_states())
    arrays = {("arg:" if name in args else "aux:") + name: param._reduce()
              for name, param in params.items() if name in args or name in aux}
    mx.nd.save(files[1], arrays)
    return files


def _graph(block: HybridBlock, stride: Optional[int]) -> mx.sym.Symbol:
    """The traced graph of ``block``, padding its input itself when ``stride`` is given."""
    symbol = block._cached_graph[1]
    return self_padding_graph(symbol, stride) if stride else symbol


def write_graph(net: HybridBlock, prefix: str,
                probe_size: Tuple[int, int] = EXPORT_PROBE_SIZE,
                self_padding: bool = True) -> Tuple[str, str]:
    """Hybridize ``net``, trace it once and write its symbol and parameters under ``prefix``
    (no checks, no meta file: :func:`export_model` and ``export_checkpoint`` do those). A model
    that knows its output stride gets the padding to ``stride * k + 1`` inside the graph unless
    ``self_padding`` is False (fixed-size graphs for ONNX)."""
    stride = getattr(net, "output_stride", None)
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    net.hybridize()
    net(mx.nd.zeros((1, 3) + tuple(probe_size), ctx=ctx))
    pad_stride = int(stride) if stride and self_padding else None
    return _save_graph(_graph(net, pad_stride), net.collect_params(), prefix,
                       remove_amp_cast=True)


def export_model(net: HybridBlock, prefix: str, overwrite: bool = False,
                 probe_size: Tuple[int, int] = EXPORT_PROBE_SIZE,
                 self_padding: bool = True,
                 classes: Optional[Sequence[str]] = None) -> Tuple[str, str]:
    """Export a bare model (no checkpoint): :func:`write_graph`, then, for a model that knows
    its output stride, ``PREFIX-meta.json`` with its stride, class count, ``classes`` (the
    names, when given) and :data:`PADS_INPUT` (``export_checkpoint`` writes the full record
    instead). Existing files are kept unless ``overwrite``; returns the symbol and parameter
    file paths."""
    files = exported_files(check_prefix(prefix))
    stride = getattr(net, "output_stride", None)
    refuse_existing(files + ((meta_path(prefix),) if stride else ()), overwrite)
    write_graph(net, prefix, probe_size, self_padding)
    if stride:
        record = {"output_stride": int(stride), "num_classes": getattr(net, "num_classes", None),
                  PADS_INPUT: bool(self_padding)}
        if classes is not None:
            record["classes"] = list(classes)
        write_meta(prefix, record)
    return files


def export_converted(block: SymbolBlock, prefix: str,
                     output_stride: Optional[int] = None) -> Tuple[str, str]:
    """Write a converted graph (e.g. bf16 from :func:`~gluon_deeplab.precision.to_bf16`) with
    its casts and parameter dtypes as they are, without running it (this CPU may not); with
    ``output_stride``, the graph pads its input itself (see :func:`export_model`)."""
    return _save_graph(_graph(block, output_stride), block.collect_params(), prefix,
                       remove_amp_cast=False)


def load_exported(prefix: str, ctx: Optional[mx.Context] = None,
                  meta: Optional[Dict[str, Any]] = None) -> SymbolBlock:
    """Load an export written by ``export_checkpoint``, :func:`export_model` (or
    ``HybridBlock.export``), old or new: a meta file of two keys or the full record, with or
    without :data:`PADS_INPUT`, or none.

    With a meta file beside it, the block gets its ``output_stride``, so that inference pads
    images (to their size bucket, :func:`~.models.upsample.bucket_size`) as it does for a
    checkpoint's model. The graph of a newer export (meta ``pads_input``) pads too, to the
    smallest ``output_stride * k + 1``: an input padded already passes it unchanged, so an
    export is never padded twice and evaluates like its checkpoint. ``meta``: that file's
    record when the caller has read it already (:func:`read_meta`).
    """
    symbol_file, params_file = exported_files(prefix)
    for f in (symbol_file, params_file):
        if not os.path.isfile(f):
            raise FileNotFoundError(f"exported model file {f!r} does not exist")
    try:
        mx.sym.load(symbol_file)
    except (mx.base.MXNetError, ValueError, UnicodeDecodeError):
        raise ValueError(f"exported model file {symbol_file} is damaged or not an MXNet symbol "
                         "file") from None
    try:
        mx.nd.load(params_file)
    except mx.base.MXNetError:
        raise ValueError(f"exported model file {params_file} is damaged or not an MXNet "
                         "parameter file") from None
    try:
        with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
            warnings.simplefilter("ignore", UserWarning)
            block = SymbolBlock.imports(symbol_file, ["data"], params_file, ctx=ctx or mx.cpu())
    except (mx.base.MXNetError, AssertionError, ValueError, KeyError) as err:
        raise ValueError(f"exported model {symbol_file} + {params_file} do not load together "
                         f"({error_line(err)})") from None
    block.hybridize(static_alloc=True)
    if meta is None:
        meta = read_meta(prefix, required=False)
    block.output_stride = meta.get("output_stride")
    return block


def read_meta(prefix: str, required: bool = True) -> Dict[str, Any]:
    """``PREFIX-meta.json`` as a dict (``{}`` for a missing file unless ``required``)."""
    path = meta_path(prefix)
    if not os.path.isfile(path):
        if required:
            raise FileNotFoundError(f"export meta file {path!r} does not exist")
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError):
        meta = None
    if not isinstance(meta, dict):
        raise ValueError(f"export meta file {path} is damaged (expected a JSON object)")
    return meta
