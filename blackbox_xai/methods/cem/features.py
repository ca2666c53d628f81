"""CEM's feature spaces: which pixels each optimisation variable moves (superpixels, a grid, or every pixel).

Black-box gradients by finite differences cost two passes per variable, so CEM optimises over features: SLIC
superpixels, a ``cells`` x ``cells`` grid of blocks, or every pixel (exact gradients only). A feature map gives the
feature index of each pixel; :class:`~blackbox_xai.methods.cem.problem.Problem` lifts a feature vector to pixels.
"""

from __future__ import annotations

import numpy as np

from ...errors import ParameterError

FEATURES = ("superpixels", "grid", "pixels")


def make_segments(pixels: np.ndarray, features: str, n_segments: int = 50, compactness: float = 10.0,
                  cells: int = 8) -> np.ndarray:
    """The feature index of each pixel (h, w), int64, labels 0..F-1 (every label used).

    "superpixels": SLIC (Achanta et al. 2012, scikit-image, start_label 0, deterministic) on the image in [0, 1];
    "grid": ``cells`` x ``cells`` blocks of (nearly) equal size; "pixels": one feature per pixel (row-major).
    """
    height, width = pixels.shape[:2]
    if features == "pixels":
        return np.arange(height * width, dtype=np.int64).reshape(height, width)
    if features == "grid":
        rows = np.minimum(np.arange(height) * cells // height, cells - 1)
        cols = np.minimum(np.arange(width) * cells // width, cells - 1)
        labels = rows[:, None] * cells + cols[None, :]
    elif features == "superpixels":
        from skimage.segmentation import slic

        image = np.clip(np.asarray(pixels, np.float64) / 255.0, 0.0, 1.0)
        labels = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    else:
        raise ParameterError(f"features must be one of {FEATURES}, got {features!r}")
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(height, width).astype(np.int64)

