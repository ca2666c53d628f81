"""Pixel batches to model inputs: resize, channel order, value range, mean/std, layout, dtype."""

from __future__ import annotations

import numpy as np

from ..image import resize_pixels
from .spec import InputSpec

# ITU-R BT.601 luma weights, used when a model takes one channel.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_model_input(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Turn a batch of pixels (N, H, W, 3), float in [0, 255], RGB, into the tensor the model takes.

    Images not at ``spec.size`` are resized first. The result is contiguous, in ``spec.layout`` and
    ``spec.dtype``.
    """
    if pixels.ndim != 4 or pixels.shape[3] != 3:
        raise ValueError(f"pixel batch must be (N, H, W, 3), got {pixels.shape}")
    if spec.size is not None and pixels.shape[1:3] != tuple(spec.size):
        pixels = np.stack([resize_pixels(image, spec.size) for image in pixels])
    x = pixels.astype(np.float32, copy=False)
    if spec.channels == 1:
        x = (x @ LUMA)[..., None]
    elif spec.channel_order == "BGR":
        x = x[..., ::-1]
    channels = spec.channels
    scale = spec.value_range[1] / 255.0
    std = np.asarray(spec.std[:channels], dtype=np.float32)
    mean = np.asarray(spec.mean[:channels], dtype=np.float32)
    if spec.dtype == "uint8":
        x = np.clip(np.rint(x * scale), 0, 255)
        if spec.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
    else:
        # (x * scale - mean) / std as one multiply-add, written straight into a contiguous float32 array in the
        # final layout: no temporaries, and no separate NHWC -> NCHW copy (a strided copy that costs several
        # times the arithmetic). The same float32 operations in the same order, so the same values.
        factor, offset = scale / std, mean / std
        if spec.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
            factor, offset = factor[:, None, None], offset[:, None, None]
        out = np.empty(x.shape, dtype=np.float32)
        np.multiply(x, factor, out=out)
        x = np.subtract(out, offset, out=out)
    dtype = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}[spec.dtype or "float32"]
    return np.ascontiguousarray(x, dtype=dtype)
