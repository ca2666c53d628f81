"""Input x Gradient (Shrikumar, Greenside, Shcherbina and Kundaje, "Not Just a Black Box: Learning Important
Features Through Propagating Activation Differences", 2016)."""

from __future__ import annotations


import numpy as np

from ...model.onnx_model import OnnxModel
from ...targets import Target
from ..base import Attribution, Progress
from .. import params as P
from ..fill import fill_image
from .base import GradientMethod, input_gradients, reduction


class InputXGradient(GradientMethod):
    """``(pixels - baseline) * d score / d pixel``, summed over the colour channels.

    With the default ``baseline="zero"`` (the pixel the model sees as zero: the data set's mean colour for a
    normalised model) this is exactly the input x gradient of the normalised model input, what Captum computes on
    the normalised tensor: ``x * dy/dx = (pixel - zero_pixel) * dy/dpixel``. ``baseline="black"`` multiplies the
    raw pixels. It is Integrated Gradients' first-order term for the same baseline.

    Parameters
    ----------
    baseline : the reference the input is measured from: "zero" (default), "black", "grey", "mean" or "blur"
        (:mod:`blackbox_xai.methods.fill`).
    reduce : channel reduction, "sum" (default), "abs-sum" or "abs-max".
    """

    name = "inputxgradient"
    aliases = ("inputtimesgradient",)
    parameter_constraints = {"baseline": P.fill(), "reduce": reduction()}

    def __init__(self, baseline: str = "zero", reduce: str = "sum") -> None:
        self._set_params(locals())

    def attribution(self, model: OnnxModel, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                    progress: Progress) -> Attribution:
        reference = fill_image(pixels, self.baseline, model.spec)
        scores, grads = input_gradients(model, pixels[None], target)
        progress(1, 1)
        return Attribution((pixels - reference) * grads[0], {"score": float(scores[0])})
