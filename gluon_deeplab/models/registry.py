"""The head registry: every segmentation head is one :class:`HeadSpec`, and every place that
needs to know about heads (build_model, checkpoint records, the training flags, INT8 exclusions,
the bench) reads it here. A new head calls :func:`register_head` once (see docs/add-a-head.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from mxnet.gluon.nn import HybridBlock

Settings = Dict[str, Tuple[int, ...]]


def _no_fp32_layers(block: HybridBlock) -> List[str]:
    return []


@dataclass(frozen=True)
class HeadSpec:
    """One head: its name and aliases, settings, how it is built and what a checkpoint records.

    - ``defaults(output_stride)``: its settings (name -> tuple of ints) at that stride; their
      names are the ``build_model`` keywords and checkpoint keys of the head's settings.
    - ``build(in_channels, settings, separable=, norm_layer=, norm_kwargs=)``: the block, an
      instance of ``block_type`` (how a built model's head is recognised again).
    - ``record(block)``: the settings a checkpoint records of a built block (JSON values).
    - ``legacy(output_stride)``: settings of records that predate them (None: such a record is
      an error).
    - ``fp32_layers(block)``: name prefixes of the layers ``--exclude image_pooling`` keeps in
      fp32 under INT8.
    """

    name: str
    title: str
    block_type: type
    defaults: Callable[[int], Settings]
    build: Callable[..., HybridBlock]
    record: Callable[[HybridBlock], Dict[str, Any]]
    aliases: Tuple[Union[str, int], ...] = ()
    legacy: Optional[Callable[[int], Settings]] = None
    fp32_layers: Callable[[HybridBlock], List[str]] = _no_fp32_layers

    @property
    def setting_names(self) -> Tuple[str, ...]:
        return tuple(self.defaults(16))


_HEADS: Dict[str, HeadSpec] = {}
_ALIASES: Dict[Union[str, int], str] = {}


def register_head(spec: HeadSpec) -> HeadSpec:
    """Make ``spec`` a head every command knows by its name and aliases; returns it."""
    taken = [n for n in (spec.name, *spec.aliases) if n in _ALIASES]
    if taken:
        raise ValueError(f"head name {taken[0]!r} is taken by the {_ALIASES[taken[0]]} head")
    _HEADS[spec.name] = spec
    for alias in (spec.name, *spec.aliases):
        _ALIASES[alias] = spec.name
    return spec


def head_names() -> Tuple[str, ...]:
    """The registered heads' names, in registration order."""
    return tuple(_HEADS)


def describe_heads() -> str:
    """The registered heads for messages: "'aspp' (1), 'vortex' (2), ..."."""
    def one(spec: HeadSpec) -> str:
        aliases = list(dict.fromkeys(str(a) for a in spec.aliases))
        return f"{spec.name!r}" + (f" ({'/'.join(aliases)})" if aliases else "")
    return ", ".join(one(s) for s in _HEADS.values())


def head_spec(head: Union[str, int]) -> HeadSpec:
    """The spec of a head name or alias; an unknown one is a one-line error."""
    try:
        return _HEADS[_ALIASES[head]]
    except (KeyError, TypeError):
        raise ValueError(f"unknown head {head!r}; expected {describe_heads()}") from None


def canonical_head_name(head: Union[str, int]) -> str:
    """The registered name of a head name or alias ('aspp' for the seed's 1, ...)."""
    return head_spec(head).name


def head_of(block: HybridBlock) -> HeadSpec:
    """The spec of a built head block."""
    for spec in _HEADS.values():
        if isinstance(block, spec.block_type):
            return spec
    raise ValueError(f"{type(block).__name__} is no registered head; register it with "
                     "gluon_deeplab.models.register_head")


def default_head_settings(head: Union[str, int], output_stride: int) -> Settings:
    """The head's settings at ``output_stride`` (ASPP rates, Vortex kernels, ...)."""
    return {k: tuple(v) for k, v in head_spec(head).defaults(output_stride).items()}


def chosen_head_settings(spec: HeadSpec, output_stride: int,
                         given: Mapping[str, Optional[Sequence[int]]]) -> Settings:
    """The stride's defaults with the settings ``given`` (None / empty: the default); a
    setting of another head, or of none, is an error."""
    settings = default_head_settings(spec.name, output_stride)
    for key, value in given.items():
        if not value:
            continue
        if key not in settings:
            owner = next((s for s in _HEADS.values() if key in s.setting_names), None)
            whose = f"{key} for the {owner.title} head" if owner else f"unknown setting {key!r}"
            raise ValueError(f"only the {spec.name} head's settings "
                             f"({', '.join(settings)}) may be given, got {whose}")
        settings[key] = tuple(value)
    return settings


def recorded_head_name(config: Mapping[str, Any]) -> str:
    """The head a checkpoint's model record names; no record of it is an error."""
    if "head" not in config:
        raise ValueError("its model record names no head")
    return canonical_head_name(config["head"])


def recorded_head_settings(config: Mapping[str, Any],
                           output_stride: Optional[int] = None) -> Settings:
    """Head settings that rebuild a recorded model (``config``: a checkpoint's model record).

    At the recorded output stride: the recorded settings; a record without them predates
    them and gets the head's ``legacy`` settings. At another ``output_stride``, settings that
    follow the default rule move with the stride (ASPP 6/12/18 -> 12/24/36, Vortex 3/9/27 ->
    7/19/55); other settings are kept.
    """
    spec = head_spec(recorded_head_name(config))
    trained = int(config.get("output_stride", 16))
    target = int(output_stride or trained)
    defaults = default_head_settings(spec.name, trained)
    moved = default_head_settings(spec.name, target)
    settings: Settings = {}
    for key in defaults:
        value = config.get(key)
        if value is None and spec.legacy is None:
            raise ValueError(f"its model record has no {key!r} for the {spec.name} head")
        recorded = tuple(value) if value is not None else tuple(spec.legacy(trained)[key])
        settings[key] = moved[key] if target != trained and recorded == defaults[key] \
            else recorded
    return settings
