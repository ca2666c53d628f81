"""What hidden pixels are replaced with, in pixel space (so grey is grey whatever the model's normalisation)."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ParameterError

FILLS = ("grey", "black", "mean", "blur")


def check_fill(fill: str) -> str:
    if fill not in FILLS:
        raise ParameterError(f"fill must be one of {FILLS}, got {fill!r}")
    return fill


def fill_image(pixels: np.ndarray, fill: str) -> np.ndarray:
    """The replacement image (h, w, 3) for ``pixels``.

    "grey": 127.5 everywhere; "black": 0; "mean": the image's mean colour; "blur": a Gaussian blur of the image
    with sigma = 5% of its shorter side (about 11 px at 224, removing the detail that drives a classifier).
    """
    check_fill(fill)
    if fill == "grey":
        return np.full_like(pixels, 127.5, dtype=np.float32)
    if fill == "black":
        return np.zeros_like(pixels, dtype=np.float32)
    if fill == "mean":
        return np.broadcast_to(pixels.reshape(-1, 3).mean(axis=0), pixels.shape).astype(np.float32)
    sigma = max(1.0, 0.05 * min(pixels.shape[:2]))
    return cv2.GaussianBlur(pixels.astype(np.float32), (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
