"""Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep
Convolutional Networks", WACV 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import Progress
from .base import GradientCAM, weighted_sum


class GradCAMPlusPlus(GradientCAM):
    """Channel weights ``w_k = sum_ij a_kij ReLU(g_kij)`` with
    ``a_kij = g^2 / (2 g^2 + sum_ab A_kab g^3)`` (the paper's closed form for an exponential of the score).

    Needs element-wise gradients: free for an affine head, 2 x K x h x w head passes with finite differences.
    Parameters as :class:`~blackbox_xai.methods.cam.GradCAM`.
    """

    name = "gradcampp"
    aliases = ("gradcam++", "gradcamplusplus")

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        activations = state.activations.astype(np.float64)
        grads = self.gradients(layer, state, target, extras).gradient().astype(np.float64)
        squared = grads ** 2
        denominator = 2 * squared + activations.sum(axis=(1, 2), keepdims=True) * grads ** 3
        alpha = np.divide(squared, denominator, out=np.zeros_like(squared), where=denominator != 0)
        weights = (alpha * np.maximum(grads, 0)).sum(axis=(1, 2))
        return weighted_sum(weights, state.activations)
