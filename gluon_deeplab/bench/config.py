"""What the benchmark runs: the full table's settings, and :meth:`BenchConfig.quick`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..deploy.int8 import DEFAULT_CALIB_MODE, DEFAULT_QUANTIZED_DTYPE

PARTS = ("forward", "reference", "train", "syncbn", "loader", "decoder", "amp_casts")


@dataclass
class BenchConfig:
    """What the benchmark runs (defaults: the real figures; :meth:`quick`: seconds, for tests)."""

    backbone: str = "resnet50_v2"
    size: int = 513
    reference_size: int = 512  # gluoncv needs a multiple of 8
    output_strides: Sequence[int] = (16, 8)
    heads: Sequence[str] = ("aspp", "vortex")
    int8: bool = True
    bf16: bool = True  # bf16 forward rows ("n/a (reason)" where this CPU cannot run bf16)
    amp: bool = True  # AMP training rows (bf16 on CPU; same)
    calib_mode: str = DEFAULT_CALIB_MODE
    quantized_dtype: str = DEFAULT_QUANTIZED_DTYPE
    train_batch: int = 4
    train_crop: int = 321
    train_iterations: int = 3
    gpus: str = ""  # the training rows' devices (--gpus); empty: the CPU
    syncbn_devices: int = 2  # CPU contexts of the SyncBN rows when no --gpus are given
    peers: Sequence[str] = ()  # other engines timed beside ours: "torch"
    loader_workers: int = 2
    loader_batches: int = 10
    loader_image_size: Sequence[int] = (375, 500)
    repeats: int = 5
    warmup: int = 2
    parts: Sequence[str] = PARTS

    @classmethod
    def quick(cls, **overrides) -> BenchConfig:
        config = cls(backbone="resnet18_v2", size=64, reference_size=64, output_strides=(16,),
                     heads=("aspp",),
                     train_batch=2, train_crop=64, train_iterations=1, loader_workers=1,
                     loader_batches=2, loader_image_size=(64, 80), repeats=1, warmup=1)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config
