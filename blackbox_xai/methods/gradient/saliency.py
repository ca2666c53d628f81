"""Saliency maps: the gradient of the class score (Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional
Networks: Visualising Image Classification Models and Saliency Maps", ICLR workshop 2014)."""

from __future__ import annotations


import numpy as np

from ...model.onnx_model import OnnxModel
from ...targets import Target
from ..base import Attribution, Progress
from .base import GradientMethod, input_gradients, reduction


class Saliency(GradientMethod):
    """``|d score / d pixel|``, the maximum over the colour channels (the paper's map).

    One forward-backward pass. ``extras["attribution"]`` keeps the signed gradient (H, W, 3) (score units per
    pixel unit in [0, 255]).

    Parameters
    ----------
    reduce : channel reduction, "abs-max" (default, the paper's), "abs-sum" or "sum".
    """

    name = "saliency"
    aliases = ("vanillagradient",)
    parameter_constraints = {"reduce": reduction()}

    def __init__(self, reduce: str = "abs-max") -> None:
        self._set_params(locals())

    def attribution(self, model: OnnxModel, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                    progress: Progress) -> Attribution:
        scores, grads = input_gradients(model, pixels[None], target)
        progress(1, 1)
        return Attribution(grads[0], {"score": float(scores[0])})
