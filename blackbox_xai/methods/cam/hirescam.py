"""HiResCAM (Draelos and Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional
neural networks", arXiv:2011.08891, 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import Progress
from .base import GradientCAM


class HiResCAM(GradientCAM):
    """``sum_k g_k * A_k`` element-wise (no spatial averaging of the gradients).

    Each position's value is the derivative along the activations at that position: with finite differences,
    2 x h x w head passes. Parameters as :class:`~blackbox_xai.methods.cam.GradCAM`.
    """

    name = "hirescam"

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        activations = state.activations
        channels, height, width = activations.shape
        flat = activations.reshape(channels, height * width)

        def directions(start: int, stop: int) -> np.ndarray:
            result = np.zeros((stop - start, channels, height * width), dtype=np.float32)
            positions = np.arange(start, stop)
            result[np.arange(stop - start), :, positions] = flat[:, positions].T
            return result.reshape(stop - start, channels, height, width)

        values = self.gradients(layer, state, target, extras).derivatives(directions, height * width)
        return values.reshape(height, width)
