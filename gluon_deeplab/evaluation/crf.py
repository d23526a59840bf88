"""Fully connected CRF post-processing (Kraehenbuehl & Koltun) through ``pydensecrf2``.

Optional: ``pip install gluon-deeplab[crf]`` (builds the ``pydensecrf`` extension module).
Defaults are those of DeepLab: unary -log(softmax), Gaussian kernel sxy 1 compat 4,
bilateral kernel sxy 49 srgb 13 compat 5, 10 mean-field iterations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

import numpy as np

INSTALL_HINT = ("dense CRF needs the optional package pydensecrf2: "
                "pip install 'gluon-deeplab[crf]' (or pip install pydensecrf2)")
# Keeps -log(p) finite where a probability underflowed to 0.
MIN_PROBABILITY = 1e-8


def _densecrf_module():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return dcrf


@dataclass
class DenseCRF:
    """Refines per-pixel class probabilities with a dense CRF over the RGB image.

    Call it as ``crf(rgb uint8 H x W x 3, probabilities C x H x W) -> probabilities``.
    Raises ImportError with an install hint on construction when pydensecrf2 is missing.
    """

    iterations: int = 10
    gaussian_sxy: float = 1.0
    gaussian_compat: float = 4.0
    bilateral_sxy: float = 49.0
    bilateral_srgb: float = 13.0
    bilateral_compat: float = 5.0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"CRF iterations must be >= 1, got {self.iterations}")
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CRF {name} must be positive, got {getattr(self, name)}")
        self._dcrf = _densecrf_module()

    def config(self) -> Dict[str, Any]:
        return asdict(self)

    def __call__(self, image: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        probabilities = np.asarray(probabilities, dtype=np.float32)
        if probabilities.ndim != 3:
            raise ValueError(f"probabilities must be C x H x W, got shape {probabilities.shape}")
        c, h, w = probabilities.shape
        if image.shape != (h, w, 3):
            raise ValueError(f"CRF image must be {h} x {w} x 3 RGB to match the "
                             f"probabilities, got shape {image.shape}")
        crf = self._dcrf.DenseCRF2D(w, h, c)
        unary = -np.log(np.clip(probabilities, MIN_PROBABILITY, 1.0)).reshape(c, -1)
        crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
        crf.addPairwiseGaussian(sxy=self.gaussian_sxy, compat=self.gaussian_compat)
        crf.addPairwiseBilateral(sxy=self.bilateral_sxy, srgb=self.bilateral_srgb,
                                 rgbim=np.array(image, dtype=np.uint8, order="C"),  # writable copy
                                 compat=self.bilateral_compat)
        q = crf.inference(self.iterations)
        return np.asarray(q, dtype=np.float32).reshape(c, h, w)
