"""Contrastive explanations side by side: the original | the pertinent positive | the pertinent negative | its delta.

For a CEM explanation (:class:`~blackbox_xai.methods.cem.CEM`): each panel is titled with the class the model gives
that image (verified by running the model on it), so the row reads "original: red | PP: red | PN: yellow | PN
delta".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import OutputError
from ..fileio import write_atomic
from .colormap import MAX_RENDER_SIDE, _shrunk, _titled, encode_png, tile_width


def contrastive_panel(explanation: Any, height: int = 256) -> np.ndarray:
    """uint8 RGB row: original | PP | PN | PN delta (the panels a CEM explanation holds), titled with classes.

    ``explanation`` is a CEM :class:`~blackbox_xai.Explanation` (fresh or loaded with ``Explanation.load``). The
    original is ``explanation.image`` when known, else rebuilt at the model resolution from a PN (``pn_image -
    pn_delta``) or a PP (``pp_image + pp_delta``). The PN delta is shown scaled to its maximum ("x N" in the title
    is the gain) on black; the PP panel shows what the model saw (the kept part on the fill colour).
    """
    extras = explanation.extras
    if "pp_image" not in extras and "pn_image" not in extras:
        raise OutputError("not a CEM explanation: no pp_image or pn_image in its extras")
    if not 8 <= int(height) <= MAX_RENDER_SIDE:
        raise OutputError(f"height must be 8 to {MAX_RENDER_SIDE} pixels (the render bound), got {height}")
    if explanation.image is not None:
        original = np.asarray(explanation.image, np.float32)
    elif "pn_image" in extras:
        original = np.asarray(extras["pn_image"], np.float32) - np.asarray(extras["pn_delta"], np.float32)
    else:
        original = np.asarray(extras["pp_image"], np.float32) + np.asarray(extras["pp_delta"], np.float32)
    name = extras.get("original_class_name", extras.get("original_class", "?"))
    panels = [_panel(original, f"original: {name}", height)]
    if "pp_image" in extras:
        found = "" if extras.get("pp_found", True) else " (none)"
        panels.append(_panel(extras["pp_image"], f"PP: {extras.get('pp_class_name', '?')}{found}", height))
    if "pn_image" in extras:
        found = "" if extras.get("pn_found", True) else " (none)"
        panels.append(_panel(extras["pn_image"], f"PN: {extras.get('pn_class_name', '?')}{found}", height))
        delta = np.asarray(extras["pn_delta"], np.float32)
        peak = float(delta.max())
        gain = 255.0 / peak if peak > 0 else 1.0
        panels.append(_panel(delta * gain, f"PN delta x{gain:.1f}", height))
    gap = np.full((panels[0].shape[0], 4, 3), 255, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


def save_contrastive(explanation: Any, path: str | Path, height: int = 256) -> Path:
    """Write :func:`contrastive_panel` as a PNG (atomically); returns the path."""
    return write_atomic(path, encode_png(contrastive_panel(explanation, height)))


def _panel(image: np.ndarray, title: str, height: int) -> np.ndarray:
    image = _shrunk(np.asarray(image, np.float32))
    width = tile_width(image.shape[0], image.shape[1], height, 4)  # bounded: see render.colormap
    interpolation = cv2.INTER_AREA if height < image.shape[0] else cv2.INTER_NEAREST
    small = cv2.resize(image, (width, height), interpolation=interpolation)
    return _titled(np.clip(np.rint(small), 0, 255).astype(np.uint8), title)
