"""Reading images into pixel space and resizing between image and model resolution.

Pixel space is float32, HxWx3, RGB, values in [0, 255]. Grayscale, RGBA and 16-bit images are converted, not
refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import ImageError

ImageSource = Union[str, Path, np.ndarray]


def load_image(source: ImageSource) -> np.ndarray:
    """Return an image as float32 HxWx3 RGB pixels in [0, 255].

    ``source`` is a file path (any format OpenCV decodes: PNG, JPEG, TIFF, BMP, WebP...) or an array. Arrays of
    integers are taken as 8-bit (uint8) or 16-bit (uint16) values; float arrays with a maximum <= 1 are taken as
    [0, 1] and scaled, other float arrays as [0, 255]. Grayscale is replicated to three channels, alpha dropped.
    """
    if isinstance(source, (str, Path)):
        array = _decode_file(Path(source))
        array = _to_rgb(array, bgr=True, origin=str(source))
    elif isinstance(source, np.ndarray):
        array = _to_rgb(source, bgr=False, origin="image array")
    else:
        raise ImageError(f"an image must be a file path or a numpy array, got {type(source).__name__}")
    return array


def _decode_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"expected an image file, got a folder: {path}")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise ImageError(f"cannot read image {path}: {error.strerror or error}") from None
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if decoded is None:
        raise ImageError(f"cannot decode image {path}: not an image format OpenCV reads, or the file is corrupt")
    return decoded


def _to_rgb(array: np.ndarray, bgr: bool, origin: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"{origin} has shape {array.shape}: expected HxW, HxWx1, HxWx3 or HxWx4")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"{origin} is empty (shape {array.shape})")
    if array.dtype == np.uint8:
        pixels = array.astype(np.float32)
    elif array.dtype == np.uint16:
        pixels = array.astype(np.float32) / 257.0
    elif array.dtype == np.bool_:
        pixels = array.astype(np.float32) * 255.0
    elif np.issubdtype(array.dtype, np.integer):
        pixels = np.clip(array, 0, 255).astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        pixels = array.astype(np.float32)
        if not np.all(np.isfinite(pixels)):
            raise ImageError(f"{origin} contains NaN or infinite values")
        if pixels.max(initial=0.0) <= 1.0:
            pixels = pixels * 255.0
        pixels = np.clip(pixels, 0.0, 255.0)
    else:
        raise ImageError(f"{origin} has unsupported element type {array.dtype}")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    elif pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    if bgr:
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels, dtype=np.float32)


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWxC (or HxW) float image to ``size`` = (height, width); area averaging when shrinking."""
    height, width = pixels.shape[:2]
    if (height, width) == tuple(size):
        return pixels
    shrinking = size[0] < height and size[1] < width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(pixels, (int(size[1]), int(size[0])), interpolation=interpolation)


def resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a 2-D map to ``size`` = (height, width) (half-pixel centres, like the image resize)."""
    if saliency.shape == tuple(size):
        return saliency.astype(np.float32, copy=False)
    return cv2.resize(saliency.astype(np.float32), (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
