"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import Progress
from .base import GradientCAM, weighted_sum


class GradCAM(GradientCAM):
    """``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of d score / d A_k.

    With finite differences the K channel means cost 2K head passes (directional derivatives along each channel).
    Parameters as :class:`~blackbox_xai.methods.cam.base.GradientCAM`.
    """

    name = "gradcam"
    sign = 1.0

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        _, height, width = state.activations.shape
        alpha = self.gradients(layer, state, target, extras).channel_sums() / (height * width)
        extras["channel_weights"] = (self.sign * alpha).astype(np.float32)
        return weighted_sum(self.sign * alpha, state.activations)
