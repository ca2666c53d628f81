"""Rendering: heat-map overlays, side-by-side panels, PNG encoding; every rendered image is bounded in size
(see :mod:`blackbox_xai.render.colormap`)."""

from .colormap import (MAX_RENDER_PIXELS, MAX_RENDER_SIDE, MAX_TILE_WIDTH, MIN_TILE_WIDTH, bounded_size, encode_png,
                       heatmap, normalise_map, overlay, side_by_side, tile_width)

__all__ = ["MAX_RENDER_PIXELS", "MAX_RENDER_SIDE", "MAX_TILE_WIDTH", "MIN_TILE_WIDTH", "bounded_size", "encode_png",
           "heatmap", "normalise_map", "overlay", "side_by_side", "tile_width"]
