"""Hybridized export (``PREFIX-symbol.json`` + ``PREFIX-0000.params``) and its loader.

The exported graph resizes the logits "like" its input, so it accepts any H x W. Input: a
float32 NCHW batch of RGB images in [0, 1] normalized with the model zoo mean/std. Reload
without this package: ``mxnet.gluon.SymbolBlock.imports(PREFIX + '-symbol.json', ['data'],
PREFIX + '-0000.params')``.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock, SymbolBlock

EXPORT_PROBE_SIZE = (64, 64)


def exported_files(prefix: str) -> Tuple[str, str]:
    """The symbol and parameter files of an export prefix."""
    return f"{prefix}-symbol.json", f"{prefix}-0000.params"


def export_model(net: HybridBlock, prefix: str, overwrite: bool = False,
                 probe_size: Tuple[int, int] = EXPORT_PROBE_SIZE) -> Tuple[str, str]:
    """Hybridize ``net``, trace it once and write its symbol and parameters under ``prefix``.

    Existing files are kept unless ``overwrite``; returns the two file paths.
    """
    files = exported_files(prefix)
    existing = [f for f in files if os.path.exists(f)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; choose another --output or pass overwrite")
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    net.hybridize()
    net(mx.nd.zeros((1, 3) + tuple(probe_size), ctx=ctx))
    net.export(prefix, epoch=0, remove_amp_cast=True)
    return files


def export_converted(block: SymbolBlock, prefix: str) -> Tuple[str, str]:
    """Write a converted graph (e.g. bf16 from :func:`~gluon_deeplab.precision.to_bf16`) with
    its casts and parameter dtypes as they are, without running it (this CPU may not)."""
    files = exported_files(prefix)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    symbol = block._cached_graph[1]
    symbol.save(files[0], remove_amp_cast=False)
    args = set(symbol.list_arguments())
    arrays = {("arg:" if name in args else "aux:") + name: param._reduce()
              for name, param in block.collect_params().items()}
    mx.nd.save(files[1], arrays)
    return files


def load_exported(prefix: str, ctx: Optional[mx.Context] = None) -> SymbolBlock:
    """Load an export written by :func:`export_model` (or ``HybridBlock.export``)."""
    symbol_file, params_file = exported_files(prefix)
    for f in (symbol_file, params_file):
        if not os.path.isfile(f):
            raise FileNotFoundError(f"exported model file {f!r} does not exist")
    with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
        warnings.simplefilter("ignore", UserWarning)
        block = SymbolBlock.imports(symbol_file, ["data"], params_file, ctx=ctx or mx.cpu())
    block.hybridize(static_alloc=True)
    return block
