"""Guided Backpropagation (Springenberg, Dosovitskiy, Brox and Riedmiller, "Striving for Simplicity: The All
Convolutional Net", ICLR workshop 2015) and the DeconvNet (Zeiler and Fergus, "Visualizing and Understanding
Convolutional Networks", ECCV 2014), as modified backward rules."""

from __future__ import annotations


import numpy as np

from ...model.onnx_model import OnnxModel
from ...targets import Target
from ..base import Attribution, Progress
from .base import GradientMethod, input_gradients, reduction


class GuidedBackprop(GradientMethod):
    """The backward pass with ReLUs that pass only positive gradients, and only where the forward input was
    positive (``rules="guided"`` of :mod:`blackbox_xai.autodiff`; its documentation says how ReLU6/Clip are
    treated).

    One forward-backward pass; ``extras["attribution"]`` keeps the signed result (H, W, 3), the map its "abs-max"
    channel reduction by default (a gradient-like map, as for :class:`Saliency`).

    Parameters
    ----------
    reduce : channel reduction, "abs-max" (default), "abs-sum" or "sum".
    """

    name = "guidedbackprop"
    aliases = ("guidedbp",)
    rules = "guided"
    parameter_constraints = {"reduce": reduction()}

    def __init__(self, reduce: str = "abs-max") -> None:
        self._set_params(locals())

    def attribution(self, model: OnnxModel, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                    progress: Progress) -> Attribution:
        scores, grads = input_gradients(model, pixels[None], target, rules=self.rules)
        progress(1, 1)
        return Attribution(grads[0], {"score": float(scores[0])})


class DeconvNet(GuidedBackprop):
    """The backward pass with ReLUs applied to the gradient alone, whatever the forward input
    (``rules="deconvnet"``). Parameters as :class:`GuidedBackprop`."""

    name = "deconvnet"
    rules = "deconvnet"
