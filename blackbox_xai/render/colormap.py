"""Heat-map overlays and side-by-side panels, as uint8 RGB arrays.

**Bounded size.** Every image rendered here is bounded, whatever the input's size or aspect ratio, so that a small
file with extreme dimensions (a 1x5000 strip, a 2x3000 image) cannot make a panel of gigabytes:

- an overlay or heat map is at most :data:`MAX_RENDER_SIDE` pixels on its longer side and
  :data:`MAX_RENDER_PIXELS` pixels in all; a larger image is shrunk (never enlarged) with its aspect ratio kept,
  each side at least 1 pixel;
- each tile of a side-by-side panel is ``height`` pixels high (default 256) and its width follows the image's
  aspect ratio, clamped to [:data:`MIN_TILE_WIDTH`, :data:`MAX_TILE_WIDTH`] (so the aspect ratio is kept within
  1:16 .. 4:1 of the tile height, and distorted beyond); when the whole row would be wider than
  :data:`MAX_RENDER_SIDE`, every tile is narrowed alike (to :data:`MIN_TILE_WIDTH` at least).

The saved arrays (``.npz``) keep the full resolution: only the pictures are bounded.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..errors import OutputError

MAX_RENDER_SIDE = 4096
"""Longest side, in pixels, of any rendered overlay, heat map or panel row (default 4096)."""
MAX_RENDER_PIXELS = 4096 * 4096
"""Largest pixel count of a rendered overlay or heat map (default 4096 x 4096, 16.8 megapixels)."""
MIN_TILE_WIDTH = 16
"""Narrowest tile of a side-by-side panel, in pixels (default 16)."""
MAX_TILE_WIDTH = 1024
"""Widest tile of a side-by-side panel, in pixels (default 1024)."""
_GAP = 4


def bounded_size(height: int, width: int, max_side: int = MAX_RENDER_SIDE,
                 max_pixels: int = MAX_RENDER_PIXELS) -> tuple[int, int]:
    """(height, width) shrunk, aspect ratio kept, so that neither side exceeds ``max_side`` and their product does
    not exceed ``max_pixels`` (defaults :data:`MAX_RENDER_SIDE`, :data:`MAX_RENDER_PIXELS`); never enlarged, each
    side at least 1."""
    height, width = max(1, int(height)), max(1, int(width))
    scale = min(1.0, max_side / max(height, width), (max_pixels / (height * width)) ** 0.5)
    if scale >= 1.0:
        return height, width
    return max(1, min(max_side, int(height * scale))), max(1, min(max_side, int(width * scale)))


def normalise_map(saliency: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1] by its minimum and maximum (a constant map becomes zeros)."""
    saliency = np.asarray(saliency, dtype=np.float32)
    low, high = float(saliency.min()), float(saliency.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return np.zeros_like(saliency)
    return (saliency - low) / (high - low)


def heatmap(saliency: np.ndarray, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Colour a map with an OpenCV colour map (default JET), returned as uint8 RGB; a map larger than the render
    bound (see the module docstring) is shrunk first."""
    saliency = _shrunk(np.asarray(saliency, np.float32))
    levels = np.round(normalise_map(saliency) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels, colormap)[:, :, ::-1].copy()


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a heat map of ``saliency`` over ``image`` (HxWx3 pixels in [0, 255]); uint8 RGB of the image size,
    or of :func:`bounded_size` of it for an image larger than the render bound (module docstring)."""
    image = _shrunk(np.asarray(image))
    if saliency.shape != image.shape[:2]:
        saliency = cv2.resize(np.asarray(saliency, np.float32), (image.shape[1], image.shape[0]),
                              interpolation=_interpolation(saliency.shape, image.shape[:2]))
    blended = (1 - alpha) * np.asarray(image, np.float32) + alpha * heatmap(saliency, colormap).astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def side_by_side(image: np.ndarray, maps: Sequence[np.ndarray], titles: Sequence[str], height: int = 256) -> np.ndarray:
    """The image followed by one overlay per map, each tile ``height`` pixels high (default 256) and titled; uint8
    RGB. The tile width follows the image's aspect ratio within bounds, and the row is at most
    :data:`MAX_RENDER_SIDE` wide (see the module docstring)."""
    height = max(8, min(int(height), MAX_RENDER_SIDE))
    width = tile_width(image.shape[0], image.shape[1], height, len(maps) + 1)
    small = _resized(_shrunk(np.asarray(image, np.float32)), height, width)
    panels = [_titled(np.clip(small, 0, 255).astype(np.uint8), "image")]
    for saliency, title in zip(maps, titles):
        small_map = _resized(_shrunk(np.asarray(saliency, np.float32)), height, width)
        panels.append(_titled(overlay(small, small_map), title))
    gap = np.full((height + 24, _GAP, 3), 255, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


def tile_width(image_height: int, image_width: int, height: int, tiles: int) -> int:
    """Width of each of ``tiles`` tiles ``height`` high showing an image_height x image_width image in a row: the
    aspect ratio kept within [:data:`MIN_TILE_WIDTH`, :data:`MAX_TILE_WIDTH`], and the row (tiles and 4-pixel
    gaps) at most :data:`MAX_RENDER_SIDE` wide where :data:`MIN_TILE_WIDTH` allows."""
    width = round(max(1, image_width) * height / max(1, image_height))
    width = min(max(width, MIN_TILE_WIDTH), MAX_TILE_WIDTH)
    tiles = max(1, int(tiles))
    fits = (MAX_RENDER_SIDE - _GAP * (tiles - 1)) // tiles
    return int(max(MIN_TILE_WIDTH, min(width, fits)))


def _interpolation(source: tuple[int, ...], target: tuple[int, ...]) -> int:
    shrink = source[0] >= target[0] and source[1] >= target[1]
    return cv2.INTER_AREA if shrink else cv2.INTER_LINEAR


def _resized(array: np.ndarray, height: int, width: int) -> np.ndarray:
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=_interpolation(array.shape[:2], (height, width)))


def _shrunk(array: np.ndarray) -> np.ndarray:
    """``array`` (H, W[, C]) shrunk to :func:`bounded_size` when it is larger (INTER_AREA), else unchanged.

    A very long strip is first cut down by striding along its long side, so that OpenCV never sees a side over
    its 32767-pixel limit of INTER_AREA's tables."""
    height, width = array.shape[:2]
    target = bounded_size(height, width)
    if target == (height, width):
        return array
    step_h, step_w = max(1, height // (4 * target[0])), max(1, width // (4 * target[1]))
    if step_h > 1 or step_w > 1:
        array = array[::step_h, ::step_w]
    return cv2.resize(np.ascontiguousarray(array, dtype=np.float32), (target[1], target[0]),
                      interpolation=cv2.INTER_AREA)


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    band = np.full((24, panel.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(band, title[:40], (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, panel], axis=0)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of a uint8 RGB (or 2-D grey) image."""
    array = rgb[:, :, ::-1] if rgb.ndim == 3 else rgb
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise OutputError("cannot encode PNG image")
    return buffer.tobytes()
