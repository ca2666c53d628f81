"""XGrad-CAM (Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs",
BMVC 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import Progress
from .base import GradientCAM, weighted_sum


class XGradCAM(GradientCAM):
    """Channel weights ``w_k = sum_ij (A_kij / sum_ab A_kab) g_kij``.

    Each weight is the derivative along the direction A_k / sum(A_k): with finite differences, 2K head passes.
    Parameters as :class:`~blackbox_xai.methods.cam.GradCAM`.
    """

    name = "xgradcam"

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        activations = state.activations
        channels = len(activations)
        totals = activations.sum(axis=(1, 2), dtype=np.float64)
        normalised = np.divide(activations, totals[:, None, None], out=np.zeros_like(activations),
                               where=totals[:, None, None] != 0).astype(np.float32)

        def directions(start: int, stop: int) -> np.ndarray:
            result = np.zeros((stop - start, *activations.shape), dtype=np.float32)
            result[np.arange(stop - start), np.arange(start, stop)] = normalised[start:stop]
            return result

        weights = self.gradients(layer, state, target, extras).derivatives(directions, channels)
        return weighted_sum(weights, activations)
