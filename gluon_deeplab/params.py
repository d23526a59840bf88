"""Strict assignment of named arrays to a block's parameters: one rule for every loader."""

from __future__ import annotations

from typing import Dict, Iterable, List

import mxnet as mx
from mxnet.gluon import Block


def _names(names: List[str], limit: int = 5) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return f"{shown} (+{len(names) - limit} more)" if len(names) > limit else shown


def assign_parameters(block: Block, arrays: Dict[str, mx.nd.NDArray], source: str,
                      ignore: Iterable[str] = ()) -> None:
    """Copy ``arrays`` (structural names, as ``save_parameters`` writes them) into ``block``.

    A parameter without an array, an array without a parameter (other than the names in
    ``ignore``) or a shape mismatch raises a ValueError that names them and ``source``.
    """
    arrays = {k.split(":", 1)[-1]: v for k, v in arrays.items()}  # 'arg:'/'aux:' prefixes
    params = block._collect_params_with_prefix()
    missing = sorted(set(params) - set(arrays))
    extra = sorted(set(arrays) - set(params) - set(ignore))
    if missing or extra:
        # A model can say why (e.g. DeepLabV3.explain_mismatch: trained without --decoder).
        explain = getattr(block, "explain_mismatch", None)
        reason = explain(missing, extra) if explain else None
        raise ValueError(f"{source} does not match the model"
                         + (f" ({reason})" if reason else "")
                         + f": missing {_names(missing)}; unexpected {_names(extra)}")
    for name, param in params.items():
        if tuple(param.shape) != arrays[name].shape:
            raise ValueError(f"{source}: array {name} has shape {arrays[name].shape}, the model "
                             f"expects {tuple(param.shape)}")
    for name, param in params.items():
        param.set_data(arrays[name].astype(param.dtype, copy=False))


def parameter_arrays(block: Block) -> Dict[str, mx.nd.NDArray]:
    """The block's parameters by structural name, on CPU (the first copy of each)."""
    return {name: param._reduce() for name, param in block._collect_params_with_prefix().items()}
