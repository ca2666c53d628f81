"""The CAM family's base class: activations from a graph split, one small override per variant.

Like pytorch-grad-cam's ``BaseCAM``, the base owns the shared machinery: it splits the ONNX graph at the target
layer (:class:`~blackbox_xai.model.layer_model.LayerModel`, cached on the model), reads the activations of the
image, asks the variant for its map at the layer's resolution, then applies ReLU, upsamples bilinearly to the
image, and scales the map so that its maximum is 1 (``extras["cam_max"]`` keeps the scale).

A transformer's token layer (B, N, D) or channels-last grid (B, h, w, C) is read as maps (D, h, w) with the extra
tokens (class, distillation, registers) dropped, and perturbed maps go back through the head with the image's
extra tokens unchanged (:mod:`blackbox_xai.methods.cam.grid`), so every variant works on it as on a CNN's layer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...image import resize_map
from ...model.base import Model
from ...model.layer_model import LayerModel, LayerState
from ...model.capabilities import LAYERS
from ...targets import Target
from .. import params as P
from ..base import Attribution, Method, Progress
from .grid import grid_view
from .gradients import SOURCES, GradientSource, gradient_source, resolved_gradient

COMMON_CONSTRAINTS: dict[str, P.Constraint] = {"layer": P.Optional(P.Text()), "relu": P.Boolean()}
"""The constraints of the parameters every CAM variant takes."""
GRADIENT_CONSTRAINTS: dict[str, P.Constraint] = {
    **COMMON_CONSTRAINTS,
    "gradient": P.Options(*SOURCES),
    "fd_step": P.Interval(0.0, 1.0, closed="neither"),
    "fd_check": P.Boolean(),
}
"""The constraints of the gradient-based variants' parameters (:class:`GradientCAM`)."""


class BaseCAM(Method):
    """Base of the class activation map methods; subclasses implement :meth:`layer_map`.

    Shared parameters: ``layer`` (tensor name; default: the last spatial layer before global pooling, see
    ``blackbox-xai layers MODEL``), ``relu`` (keep only positive evidence, default True).
    Gradient-based variants also take ``gradient`` ("auto", "exact" or "finite-difference"; "affine" and
    "backward" force that exact source), ``fd_step`` (c in h = c * rms(A), default 0.05) and ``fd_check``
    (re-check at h/2, default True). ``params`` record the layer used, and for the gradient-based variants
    ``gradient`` ("exact" or "finite-difference") and ``gradient_source`` ("affine", "backward" or
    "finite-difference").
    """

    family = "cam"
    requires = (LAYERS,)
    parameter_constraints = COMMON_CONSTRAINTS
    uses_gradients: ClassVar[bool] = False
    """True for the variants that take ``gradient``, ``fd_step`` and ``fd_check`` (:class:`GradientCAM`)."""

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        layer = grid_view(model.layer_model(self.layer))
        state = layer.state(pixels)
        passes_before = layer.head_passes
        extras: dict[str, Any] = {"layer_shape": list(state.activations.shape),
                                  "layer_layout": getattr(layer.layer, "layout", "NCHW")}
        grid = np.asarray(self.layer_map(layer, state, target, pixels, extras, progress), dtype=np.float64)
        if self.relu:
            grid = np.maximum(grid, 0.0)
        peak = float(grid.max()) if grid.size else 0.0
        extras.update({"cam_max": peak, "head_passes": layer.head_passes - passes_before})
        if peak > 0:
            grid = grid / peak
        resolved = {"layer": layer.layer.tensor}
        if "gradient_report" in extras:
            resolved.update(resolved_gradient(extras["gradient_report"]["gradient_source"]))
        return Attribution(resize_map(grid.astype(np.float32), pixels.shape[:2]), extras, resolved)

    def gradients(self, layer: LayerModel, state: LayerState, target: Target, extras: dict[str, Any]
                  ) -> GradientSource:
        """The gradient source for this call; its report (source, step, disagreement) goes into
        ``extras["gradient_report"]``."""
        source = gradient_source(layer, state, target, self.gradient, self.fd_step, self.fd_check)
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
    gradient : "auto" (default: the affine head's weights, else the head's backward graph, else finite
        differences), "exact" (the first two only) or "finite-difference"; "affine" and "backward" (legacy
        spellings) force that exact source.
    fd_step : c in the finite-difference step h = c * rms(A) (default 0.05).
    fd_check : re-compute finite differences at h/2 and report the disagreement (default True).
    """

    parameter_constraints = GRADIENT_CONSTRAINTS
    uses_gradients = True

    def __init__(self, layer: str | None = None, relu: bool = True, gradient: str = "auto", fd_step: float = 0.05,
                 fd_check: bool = True) -> None:
        self._set_params(locals())


def weighted_sum(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """sum_k weights_k * A_k -> (h, w)."""
    return np.tensordot(np.asarray(weights, np.float64), activations.astype(np.float64), axes=(0, 0))
