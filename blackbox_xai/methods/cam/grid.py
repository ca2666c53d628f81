"""Token and channels-last layers seen as (K, h, w) maps, so that every CAM variant works on transformers unchanged.

A transformer layer (:mod:`blackbox_xai.graph.tokens`) is a token sequence (N, D) whose last ``N - extra`` tokens
form an (h, w) grid, or a channels-last grid (h, w, C). :func:`grid_view` wraps the
:class:`~blackbox_xai.model.layer_model.LayerModel` split at such a layer in a :class:`GridView` with the same
interface: its states hold the grid as maps (D, h, w) (the extra tokens dropped: a class token has no place on the
image), its head takes map variants (M, D, h, w) and puts them back in the layer's own layout with the extra tokens
of the image unchanged, and its head gradient is returned as maps. A spatial (NCHW) layer is returned as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from ...model.layer_model import LayerModel, LayerState


@dataclass
class GridState(LayerState):
    """A :class:`LayerState` whose ``activations`` are the grid as maps (K, h, w); ``native`` keeps the layer's
    own activations (N, D) or (h, w, C), extra tokens included."""

    native: np.ndarray | None = None


class GridView:
    """A layer model split at a token or channels-last layer, with maps (K, h, w) in and out (module docstring).

    There is no affine shortcut (``affine`` is None): gradients come from the head's backward graph or finite
    differences, as for any non-affine head."""

    affine = None

    def __init__(self, inner: LayerModel) -> None:
        self.inner = inner
        self.layer = inner.layer
        self.model = inner.model
        self.head_batch_size = inner.head_batch_size
        self.crossing = inner.crossing
        self.score_kind = inner.score_kind

    @property
    def head_passes(self) -> int:
        return self.inner.head_passes

    def to_maps(self, native: np.ndarray) -> np.ndarray:
        """(N, D) tokens or (h, w, C) -> (K, h, w) maps."""
        height, width = self.layer.grid  # type: ignore[misc]
        if self.layer.layout == "NHWC":
            return np.ascontiguousarray(np.transpose(native, (2, 0, 1)))
        grid = native[self.layer.extra:]
        return np.ascontiguousarray(grid.T.reshape(grid.shape[1], height, width))

    def to_native(self, state: GridState, maps: np.ndarray) -> np.ndarray:
        """Map variants (M, K, h, w) -> (M, N, D) tokens (the image's extra tokens kept) or (M, h, w, C)."""
        maps = np.asarray(maps, dtype=np.float32)
        if self.layer.layout == "NHWC":
            return np.ascontiguousarray(np.transpose(maps, (0, 2, 3, 1)))
        count, channels = maps.shape[:2]
        native = np.repeat(np.asarray(state.native, np.float32)[None], count, axis=0)
        native[:, self.layer.extra:] = maps.reshape(count, channels, -1).transpose(0, 2, 1)
        return native

    def _inner_state(self, state: GridState) -> LayerState:
        return LayerState(state.native, state.crossing)  # type: ignore[arg-type]

    def state(self, pixels: np.ndarray) -> GridState:
        inner = self.inner.state(pixels)
        return GridState(self.to_maps(inner.activations), inner.crossing, inner.activations)

    def head(self, state: GridState, activations: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        chunks = [activations] if isinstance(activations, np.ndarray) else activations

        def native() -> Iterator[np.ndarray]:
            for chunk in chunks:
                yield self.to_native(state, chunk)

        return self.inner.head(self._inner_state(state), native())

    def head_gradient_gap(self) -> str | None:
        return self.inner.head_gradient_gap()

    def head_gradient(self, state: GridState, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, gradient = self.inner.head_gradient(self._inner_state(state), weights)
        return logits, self.to_maps(gradient)


def grid_view(layer: LayerModel) -> Any:
    """``layer`` itself for a spatial (NCHW) layer, a :class:`GridView` of it for a token or channels-last one."""
    return layer if getattr(layer.layer, "layout", "NCHW") == "NCHW" else GridView(layer)
