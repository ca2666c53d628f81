"""CAM: Class Activation Mapping (Zhou et al., "Learning Deep Features for Discriminative Localization",
CVPR 2016)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ParameterError
from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import Progress
from .base import BaseCAM, weighted_sum


class CAM(BaseCAM):
    """``sum_k W[c, k] A_k`` with the weights of the linear layer after global average pooling, read from the
    graph. Only for heads of that form (the layer must feed global average pooling then one linear layer).

    Parameters
    ----------
    layer : tensor name (default: the last spatial layer before global pooling).
    relu : keep positive evidence only (default True).
    """

    name = "cam"

    def __init__(self, layer: str | None = None, relu: bool = True) -> None:
        self._set_params(locals())

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        if layer.affine is None:
            raise ParameterError(f"CAM needs global average pooling then a linear layer after {layer.layer.tensor!r}; "
                                 "this head is not of that form: use gradcam")
        return weighted_sum(target.weights @ layer.affine.weight, state.activations)
