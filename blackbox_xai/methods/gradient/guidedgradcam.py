"""Guided Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017, section 3.2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.onnx_model import OnnxModel
from ...targets import Target
from .. import params as P
from ..base import Attribution, Progress
from ..cam.gradcam import GradCAM
from ..cam.gradients import SOURCES
from .base import GradientMethod, input_gradients, reduction


class GuidedGradCAM(GradientMethod):
    """Guided Backpropagation times the Grad-CAM map: ``guided(x) * gradcam(x)[..., None]``, element-wise.

    The Grad-CAM map is the CAM family's :class:`~blackbox_xai.methods.cam.GradCAM` at ``layer`` (after its ReLU,
    scaled to a maximum of 1 and upsampled bilinearly to the image), kept in ``extras["gradcam"]``; the guided
    backpropagation is ``extras["guided"]`` (H, W, 3) and the product ``extras["attribution"]``. The map is the
    "abs-max" channel reduction of the product by default.

    Parameters
    ----------
    layer : Grad-CAM's layer (default: the last spatial layer before global pooling).
    gradient : Grad-CAM's gradient: "auto" (default), "exact" or "finite-difference" ("affine" and "backward"
        force that exact source); ``params`` record it as Grad-CAM does.
    reduce : channel reduction, "abs-max" (default), "abs-sum" or "sum".
    """

    name = "guidedgradcam"
    parameter_constraints = {"layer": P.Optional(P.Text()), "gradient": P.Options(*SOURCES), "reduce": reduction()}

    def __init__(self, layer: str | None = None, gradient: str = "auto", reduce: str = "abs-max") -> None:
        self._set_params(locals())

    def attribution(self, model: OnnxModel, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                    progress: Progress) -> Attribution:
        gradcam = GradCAM(layer=self.layer, gradient=self.gradient).attribute(
            model, pixels, target, clean_outputs, lambda done, total: None)
        scores, guided = input_gradients(model, pixels[None], target, rules="guided")
        progress(1, 1)
        cam = np.asarray(gradcam.saliency, dtype=np.float32)
        extras: dict[str, Any] = {"gradcam": cam, "guided": guided[0], "score": float(scores[0])}
        extras.update({f"gradcam_{k}": v for k, v in gradcam.extras.items()})
        return Attribution(guided[0] * cam[..., None], extras, gradcam.resolved_params)
