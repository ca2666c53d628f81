"""Layer-CAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization",
IEEE TIP 2021)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import Progress
from .base import GradientCAM


class LayerCAM(GradientCAM):
    """``sum_k ReLU(g_k) * A_k`` element-wise.

    Needs element-wise gradients: free for an affine head, 2 x K x h x w head passes with finite differences.
    Parameters as :class:`~blackbox_xai.methods.cam.GradCAM`.
    """

    name = "layercam"

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        grads = self.gradients(layer, state, target, extras).gradient()
        return (np.maximum(grads, 0).astype(np.float64) * state.activations).sum(axis=0)
