"""Ablation-CAM (Desai and Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
Gradient-free Localization", WACV 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import Progress, chunks
from .. import params as P
from .base import COMMON_CONSTRAINTS, BaseCAM, weighted_sum


class AblationCAM(BaseCAM):
    """Channel weights ``w_k = (y - y_k) / y``: the relative drop of the target logit when channel k is zeroed.

    The ablated activations run through the head only (the graph is split at the layer), so K ablations cost K
    head passes, not K full forward passes. ``head_only=False`` recomputes the body for each ablation (the cost
    of doing it with full forward passes; for comparison).

    Parameters
    ----------
    layer : tensor name (default: the last spatial layer before global pooling).
    relu : default True.
    head_only : default True.
    """

    name = "ablationcam"
    parameter_constraints = {**COMMON_CONSTRAINTS, "head_only": P.Boolean()}

    def __init__(self, layer: str | None = None, relu: bool = True, head_only: bool = True) -> None:
        self._set_params(locals())

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        activations = state.activations
        channels = len(activations)
        clean = float(layer.head(state, activations[None]).astype(np.float64)[0] @ target.weights)
        ablated = np.zeros(channels, dtype=np.float64)
        for start, stop in chunks(channels, layer.head_batch_size):
            if not self.head_only:  # the same ablations, paying a full forward pass for each
                for _ in range(stop - start):
                    layer.state(pixels)
            batch = np.repeat(activations[None], stop - start, axis=0)
            batch[np.arange(stop - start), np.arange(start, stop)] = 0.0
            ablated[start:stop] = layer.head(state, batch).astype(np.float64) @ target.weights
            progress(stop, channels)
        denominator = clean if abs(clean) > 1e-12 else 1.0
        weights = (clean - ablated) / denominator
        extras["channel_weights"] = weights.astype(np.float32)
        return weighted_sum(weights, activations)
