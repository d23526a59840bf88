"""The layout registry: each dataset layout declares itself once (a ``LayoutSpec``), and the
loaders, defaults, hints, checks and ``--help`` texts read it from here.

A layout's module defines its spec beside its factory; ``registry`` registers the built-in
ones with :func:`register_layout` in one line, and code outside the package calls it to add
its own (docs/add-a-dataset-layout.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

from .base import SegmentationDataset

LEGACY_DATA_DIR = "./VOCdevkit_aug"  # --data_dir of a layout that names no folder of its own


@dataclass(frozen=True)
class LayoutSpec:
    """One dataset layout: its names, how it is read, and what it leaves to defaults.

    ``factory(root, split, mode=, crop_size=, ignore_label=, **options)`` builds the
    ``SegmentationDataset``; ``data_dir`` is the default root (a path, or a function giving one)
    and ``data_dir_text`` how ``--help`` shows it; ``val_dataset`` the layout validating it by
    default (None: itself); ``classes(n)`` names ``n`` classes (None: ``class0``, ...);
    layouts of one ``family`` share image ids (``check_disjoint`` compares ids, else files);
    ``detect(root)`` says whether ``root`` holds this layout, ``missing_hint`` what to do when
    its default root holds nothing; ``summary`` is its words in ``--dataset``'s help;
    ``options`` the folder flags (image_dir, ...) it takes; ``needs_root`` False when the
    factory itself says what to do about a missing root.
    """

    name: str
    factory: Callable[..., SegmentationDataset]
    aliases: Tuple[str, ...] = ()
    data_dir: Union[str, Callable[[], str]] = LEGACY_DATA_DIR
    data_dir_text: Optional[str] = None
    train_split: str = "train"
    val_dataset: Optional[str] = None
    classes: Optional[Callable[[int], Optional[List[str]]]] = None
    family: Optional[str] = None
    detect: Optional[Callable[[str], bool]] = None
    missing_hint: str = ""
    summary: str = ""
    options: Tuple[str, ...] = ()
    needs_root: bool = True

    def default_data_dir(self) -> str:
        """The root folder read when none is given."""
        return self.data_dir() if callable(self.data_dir) else self.data_dir

    def help_dir(self) -> str:
        """The default root as ``--help`` names it."""
        return self.data_dir_text or (self.data_dir if isinstance(self.data_dir, str)
                                      else self.name + "'s folder")


_LAYOUTS: Dict[str, LayoutSpec] = {}
_ALIASES: Dict[str, str] = {}


def register_layout(spec: LayoutSpec) -> LayoutSpec:
    """Add ``spec`` to the registry (``--dataset`` and ``--val_dataset`` accept it from then
    on); its name and aliases must be new."""
    taken = [n for n in (spec.name,) + tuple(spec.aliases) if n in _LAYOUTS or n in _ALIASES]
    if taken:
        raise ValueError(f"dataset layout {taken[0]!r} is already registered")
    if not spec.name or not callable(spec.factory):
        raise ValueError(f"a dataset layout needs a name and a factory, got {spec!r}")
    _LAYOUTS[spec.name] = spec
    _ALIASES.update({alias: spec.name for alias in spec.aliases})
    return spec


def registered_layouts() -> Tuple[LayoutSpec, ...]:
    """The specs, in registration order."""
    return tuple(_LAYOUTS.values())


def layout_names() -> Tuple[str, ...]:
    """The registered layouts, in registration order."""
    return tuple(_LAYOUTS)


def layout_choices() -> Tuple[str, ...]:
    """What ``--dataset`` accepts: the names, then the aliases."""
    return tuple(_LAYOUTS) + tuple(_ALIASES)


def canonical_dataset_name(name: str) -> str:
    """The name of a layout given one of its aliases (``vocaug`` -> ``voc_sbd``)."""
    return _ALIASES.get(name, name)


def get_layout(name: str, flag: str = "--dataset") -> LayoutSpec:
    """The spec of layout ``name`` (or alias); ValueError naming ``flag`` when unknown."""
    spec = _LAYOUTS.get(canonical_dataset_name(name))
    if spec is None:
        raise ValueError(f"{flag} {name!r}: unknown dataset layout; expected one of "
                         f"{', '.join(layout_choices())}")
    return spec


def layout_metavar() -> str:
    """``{voc,voc_sbd,...}``: the layouts as argparse shows a ``choices`` flag."""
    return "{" + ",".join(layout_names()) + "}"


def _and(names: List[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _grouped(value: Callable[[LayoutSpec], Optional[str]]) -> Dict[str, List[str]]:
    """Layout names by the non-None ``value`` of their spec, in registration order."""
    groups: Dict[str, List[str]] = {}
    for spec in _LAYOUTS.values():
        if value(spec) is not None:
            groups.setdefault(value(spec), []).append(spec.name)
    return groups


def dataset_help() -> str:
    """``--dataset``'s help: each layout with its summary."""
    return "layout: " + ", ".join(f"{s.name} ({s.summary})" if s.summary else s.name
                                  for s in _LAYOUTS.values())


def data_dir_help() -> str:
    """``--data_dir``'s help: the default root of each layout."""
    groups = _grouped(lambda s: s.help_dir() if s.help_dir() != LEGACY_DATA_DIR else None)
    shown = "; ".join(f"{text}, for {_and(names)}" for text, names in groups.items())
    return f"dataset root folder (default: {shown + '; else ' if shown else ''}{LEGACY_DATA_DIR})"


def train_split_help() -> str:
    """``--train_split``'s help: the layouts whose default split is not ``train``."""
    groups = _grouped(lambda s: s.train_split if s.train_split != "train" else None)
    shown = "; ".join(f"{split} for {_and(names)}" for split, names in groups.items())
    return f"training split (default {shown + ', else ' if shown else ''}train)"


def val_dataset_help() -> str:
    """``--val_dataset``'s help: the layouts validated on another one by default."""
    def named(val: str) -> str:
        summary = _LAYOUTS[val].summary if val in _LAYOUTS else ""
        return f"{val}, i.e. {summary} val" if summary else val
    groups = _grouped(lambda s: s.val_dataset)
    shown = "; ".join(f"{named(val)}, for {_and(names)}" for val, names in groups.items())
    return ("layout of the validation set, on which best.params is chosen "
            f"(default: {shown + '; else ' if shown else ''}--dataset)")
