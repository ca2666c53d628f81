"""Eigen-CAM (Muhammad and Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import Progress
from .base import BaseCAM


class EigenCAM(BaseCAM):
    """The activations projected on their first principal component (class-agnostic, no gradients).

    The sign of a principal component is arbitrary; it is fixed so that the map correlates positively with the
    channel sum of the activations (where the layer responds most).

    Parameters
    ----------
    layer : tensor name (default: the last spatial layer before global pooling).
    relu : default True.
    """

    name = "eigencam"

    def __init__(self, layer: str | None = None, relu: bool = True) -> None:
        self._set_params(locals())

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        channels, height, width = state.activations.shape
        samples = state.activations.reshape(channels, -1).T.astype(np.float64)  # (positions, channels)
        centred = samples - samples.mean(axis=0)
        _, singular, components = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ components[0]
        total = samples.sum(axis=1)
        if np.dot(projection - projection.mean(), total - total.mean()) < 0:
            projection = -projection
        energy = singular ** 2
        extras["explained_variance"] = float(energy[0] / energy.sum()) if energy.sum() > 0 else 0.0
        return projection.reshape(height, width)
