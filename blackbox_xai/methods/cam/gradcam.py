"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import Progress
from .base import BaseCAM, weighted_sum


class GradCAM(BaseCAM):
    """``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of d score / d A_k.

    With finite differences the K channel means cost 2K head passes (directional derivatives along each channel).

    Parameters
    ----------
    layer : tensor name (default: the last spatial layer before global pooling).
    relu : default True.
    gradient : "auto" (exact for an affine head, else finite differences), "affine" or "finite-difference".
    fd_step : c in the finite-difference step h = c * rms(A) (default 0.05).
    fd_check : re-compute at h/2 and report the disagreement (default True).
    """

    name = "gradcam"
    sign = 1.0

    def __init__(self, layer: str | None = None, relu: bool = True, gradient: str = "auto", fd_step: float = 0.05,
                 fd_check: bool = True) -> None:
        self._set_common(layer, relu, gradient, fd_step, fd_check)

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        _, height, width = state.activations.shape
        alpha = self.gradients(layer, state, target, extras).channel_sums() / (height * width)
        extras["channel_weights"] = (self.sign * alpha).astype(np.float32)
        return weighted_sum(self.sign * alpha, state.activations)
