"""Heat-map overlays and side-by-side panels, as uint8 RGB arrays."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..errors import OutputError


def normalise_map(saliency: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1] by its minimum and maximum (a constant map becomes zeros)."""
    saliency = np.asarray(saliency, dtype=np.float32)
    low, high = float(saliency.min()), float(saliency.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return np.zeros_like(saliency)
    return (saliency - low) / (high - low)


def heatmap(saliency: np.ndarray, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Colour a map with an OpenCV colour map (default JET), returned as uint8 RGB."""
    levels = np.round(normalise_map(saliency) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels, colormap)[:, :, ::-1].copy()


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a heat map of ``saliency`` over ``image`` (HxWx3 pixels in [0, 255]); uint8 RGB of the image size."""
    if saliency.shape != image.shape[:2]:
        saliency = cv2.resize(saliency.astype(np.float32), (image.shape[1], image.shape[0]))
    blended = (1 - alpha) * np.asarray(image, np.float32) + alpha * heatmap(saliency, colormap).astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def side_by_side(image: np.ndarray, maps: Sequence[np.ndarray], titles: Sequence[str], height: int = 256) -> np.ndarray:
    """The image followed by one overlay per map, each scaled to ``height`` and titled; uint8 RGB."""
    scale = height / image.shape[0]
    width = max(1, int(round(image.shape[1] * scale)))
    small = cv2.resize(np.asarray(image, np.float32), (width, height), interpolation=cv2.INTER_AREA)
    panels = [_titled(np.clip(small, 0, 255).astype(np.uint8), "image")]
    for saliency, title in zip(maps, titles):
        small_map = cv2.resize(np.asarray(saliency, np.float32), (width, height), interpolation=cv2.INTER_AREA)
        panels.append(_titled(overlay(small, small_map), title))
    gap = np.full((height + 24, 4, 3), 255, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


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
