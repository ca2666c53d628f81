"""Guided Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, section 3.2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ParameterError
from ...model.onnx_model import OnnxModel
from ...targets import Target
from ..base import Progress
from ..cam.gradcam import GradCAM
from ..cam.gradients import SOURCES
from .base import GradientMethod, check_reduce, input_gradients


class GuidedGradCAM(GradientMethod):
    """Guided Backpropagation times the Grad-CAM map: ``guided(x) * gradcam(x)[..., None]``, element-wise.

    The Grad-CAM map is the CAM family's :class:`~blackbox_xai.methods.cam.GradCAM` at ``layer`` (after its ReLU,
    scaled to a maximum of 1 and upsampled bilinearly to the image), kept in ``extras["gradcam"]``; the guided
    backpropagation is ``extras["guided"]`` (H, W, 3) and the product ``extras["attribution"]``. The map is the
    "abs-max" channel reduction of the product by default.

    Parameters
    ----------
    layer : Grad-CAM's layer (default: the last spatial layer before global pooling).
    gradient : Grad-CAM's gradient source: "auto" (default), "affine", "backward" or "finite-difference".
    reduce : channel reduction, "abs-max" (default), "abs-sum" or "sum".
    """

    name = "guidedgradcam"

    def __init__(self, layer: str | None = None, gradient: str = "auto", reduce: str = "abs-max") -> None:
        if gradient not in SOURCES:
            raise ParameterError(f"gradient must be one of {SOURCES}, got {gradient!r}")
        self.layer = layer
        self.gradient = gradient
        self.reduce = check_reduce(reduce)

    def attribution(self, model: OnnxModel, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                    progress: Progress) -> tuple[np.ndarray, dict[str, Any]]:
        cam, cam_extras = GradCAM(layer=self.layer, gradient=self.gradient).attribute(
            model, pixels, target, clean_outputs, lambda done, total: None)
        scores, guided = input_gradients(model, pixels[None], target, rules="guided")
        progress(1, 1)
        cam = np.asarray(cam, dtype=np.float32)
        extras: dict[str, Any] = {"gradcam": cam, "guided": guided[0], "score": float(scores[0]),
                                  "resolved_params": cam_extras.pop("resolved_params", {})}
        extras.update({f"gradcam_{k}": v for k, v in cam_extras.items()})
        return guided[0] * cam[..., None], extras
