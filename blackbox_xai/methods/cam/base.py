"""The CAM family's base class: activations from a graph split, one small override per variant.

Like pytorch-grad-cam's ``BaseCAM``, the base owns the shared machinery: it splits the ONNX graph at the target
layer (:class:`~blackbox_xai.model.layer_model.LayerModel`, cached on the model), reads the activations of the
image, asks the variant for its map at the layer's resolution, then applies ReLU, upsamples bilinearly to the
image, and scales the map so that its maximum is 1 (``extras["cam_max"]`` keeps the scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ParameterError
from ...image import resize_map
from ...model.base import Model
from ...model.layer_model import LayerModel, LayerState
from ...model.capabilities import LAYERS
from ...targets import Target
from ..base import Method, Progress
from .gradients import SOURCES, GradientSource, gradient_source


class BaseCAM(Method):
    """Base of the class activation map methods; subclasses implement :meth:`layer_map`.

    Shared parameters: ``layer`` (tensor name; default: the last spatial layer before global pooling, see
    ``blackbox-xai layers MODEL``), ``relu`` (keep only positive evidence, default True).
    Gradient-based variants also take ``gradient`` ("auto", "affine", "backward" or "finite-difference"), ``fd_step`` (c in
    h = c * rms(A), default 0.05) and ``fd_check`` (re-check at h/2, default True).
    """

    uses_gradients = True
    requires = (LAYERS,)

    def _set_common(self, layer: str | None, relu: bool, gradient: str = "auto", fd_step: float = 0.05,
                    fd_check: bool = True) -> None:
        if gradient not in SOURCES:
            raise ParameterError(f"gradient must be one of {SOURCES}, got {gradient!r}")
        if not 0 < float(fd_step) < 1:
            raise ParameterError(f"fd_step must be in (0, 1) (a fraction of the activations' rms), got {fd_step}")
        self.layer = layer
        self.relu = bool(relu)
        if self.uses_gradients:
            self.gradient = gradient
            self.fd_step = float(fd_step)
            self.fd_check = bool(fd_check)

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> tuple[np.ndarray, dict[str, Any]]:
        layer = model.layer_model(self.layer)
        state = layer.state(pixels)
        passes_before = layer.head_passes
        extras: dict[str, Any] = {"layer_shape": list(state.activations.shape),
                                  "resolved_params": {"layer": layer.layer.tensor}}
        grid = np.asarray(self.layer_map(layer, state, target, pixels, extras, progress), dtype=np.float64)
        if self.relu:
            grid = np.maximum(grid, 0.0)
        peak = float(grid.max()) if grid.size else 0.0
        extras.update({"cam_max": peak, "head_passes": layer.head_passes - passes_before})
        if peak > 0:
            grid = grid / peak
        return resize_map(grid.astype(np.float32), pixels.shape[:2]), extras

    def gradients(self, layer: LayerModel, state: LayerState, target: Target, extras: dict[str, Any]
                  ) -> GradientSource:
        """The gradient source for this call; its report (source, step, disagreement) goes into ``extras``."""
        source = gradient_source(layer, state, target, self.gradient, self.fd_step, self.fd_check)
        extras["resolved_params"]["gradient"] = source.name
        extras["gradient_report"] = source.report
        return source

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        """The map (h, w) at the layer's resolution, before ReLU and upsampling."""
        raise NotImplementedError


class GradientCAM(BaseCAM):
    """Base of the variants that use gradients: they share these parameters.

    Parameters
    ----------
    layer : tensor name (default: the last spatial layer before global pooling).
    relu : keep positive evidence only (default True).
    gradient : "auto" (the affine head's weights, else the head's backward graph, else finite differences),
        "affine", "backward" or "finite-difference".
    fd_step : c in the finite-difference step h = c * rms(A) (default 0.05).
    fd_check : re-compute finite differences at h/2 and report the disagreement (default True).
    """

    def __init__(self, layer: str | None = None, relu: bool = True, gradient: str = "auto", fd_step: float = 0.05,
                 fd_check: bool = True) -> None:
        self._set_common(layer, relu, gradient, fd_step, fd_check)


def weighted_sum(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """sum_k weights_k * A_k -> (h, w)."""
    return np.tensordot(np.asarray(weights, np.float64), activations.astype(np.float64), axes=(0, 0))
