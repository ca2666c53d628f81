"""Rendering: heat-map overlays, side-by-side panels, PNG encoding."""

from .colormap import encode_png, heatmap, normalise_map, overlay, side_by_side

__all__ = ["encode_png", "heatmap", "normalise_map", "overlay", "side_by_side"]
