"""What hidden pixels are replaced with, in pixel space (so grey is grey whatever the model's normalisation)."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ParameterError
from ..model.preprocess import Preprocessor
from ..model.spec import InputSpec

FILLS = ("zero", "grey", "black", "mean", "blur")


def check_fill(fill: str) -> str:
    if fill not in FILLS:
        raise ParameterError(f"fill must be one of {FILLS}, got {fill!r}")
    return fill


def zero_pixel(spec: InputSpec) -> np.ndarray:
    """The RGB pixel (3,) that the model sees as zero: :meth:`blackbox_xai.model.preprocess.Preprocessor.zero_pixel`
    (``mean * 255 / value_range[1]`` per channel in RGB order; 0 when the spec has no mean)."""
    return Preprocessor(spec).zero_pixel()


def fill_image(pixels: np.ndarray, fill: str, spec: InputSpec | None = None) -> np.ndarray:
    """The replacement image (h, w, 3) for ``pixels``.

    "zero": the pixel the model sees as zero after normalisation (:func:`zero_pixel`: the data set's mean colour
    for a model normalised with mean/std, black for an unnormalised one), which is what reference implementations
    get by masking the normalised tensor; "grey": 127.5 everywhere; "black": 0; "mean": the image's mean colour;
    "blur": a Gaussian blur of the image with sigma = 5% of its shorter side (about 11 px at 224, removing the
    detail that drives a classifier).
    """
    check_fill(fill)
    if fill == "zero":
        colour = zero_pixel(spec if spec is not None else InputSpec())
        return np.broadcast_to(colour, pixels.shape).astype(np.float32)
    if fill == "grey":
        return np.full_like(pixels, 127.5, dtype=np.float32)
    if fill == "black":
        return np.zeros_like(pixels, dtype=np.float32)
    if fill == "mean":
        return np.broadcast_to(pixels.reshape(-1, 3).mean(axis=0), pixels.shape).astype(np.float32)
    sigma = max(1.0, 0.05 * min(pixels.shape[:2]))
    return cv2.GaussianBlur(pixels.astype(np.float32), (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
