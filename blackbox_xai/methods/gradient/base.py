"""The gradient family's base class: exact input gradients from a backward graph, one override per method.

The gradients come from :meth:`blackbox_xai.model.OnnxModel.gradient`: a backward graph of ordinary ONNX ops built
by :mod:`blackbox_xai.autodiff` and run by the same onnxruntime (no training framework), with the chain rule
through the preprocessing so that every gradient is with respect to the pixels (H, W, 3) in [0, 255] RGB. The
explained score is ``target.weights @ logits`` (the logits: the Softmax's input when the model ends in one), so a
contrast (p, q) is explained as ``y_p - y_q`` at no extra cost.

A subclass implements :meth:`GradientMethod.attribution`, which returns the signed attribution (H, W, 3) in pixel
space (as the ``saliency`` of an :class:`~blackbox_xai.methods.base.Attribution`); the base reduces it over the
colour channels to the 2-D map and keeps it in ``extras["attribution"]`` (at the model's resolution). Channel reductions (``reduce``):

- ``"sum"``: the sum over R, G, B of the signed attribution: for the attribution methods (Input x Gradient,
  Integrated Gradients, LRP) whose attributions add up to the score, the map adds up to it too;
- ``"abs-max"``: max over R, G, B of the absolute value, Simonyan et al.'s reduction for gradient maps
  (Saliency, SmoothGrad, Guided Backprop, DeconvNet, Guided Grad-CAM);
- ``"abs-sum"``: the sum of the absolute values (the PAIR saliency library's visualisation).

Every explanation's ``timing`` counts ``backward_passes`` (images whose gradient was computed; each also counts as
a forward pass) and ``backward_seconds`` (the time of those forward-backward runs), as for every method.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ParameterError
from ...model.base import Model
from ...model.capabilities import INPUT_GRADIENTS
from ...model.onnx_model import OnnxModel
from ...targets import Target
from .. import params as P
from ..base import Attribution, Method, Progress
from ..zero_gradient import SCORE_STILL, ZERO_GRADIENT, input_score_moves, is_zero

REDUCTIONS = ("sum", "abs-max", "abs-sum")


def reduction() -> P.Options:
    """The constraint of ``reduce``: one of :data:`REDUCTIONS`."""
    return P.Options(*REDUCTIONS)


def reduce_channels(attribution: np.ndarray, reduce: str) -> np.ndarray:
    """The 2-D map (H, W) of an attribution (H, W, 3): see the module's documentation for ``reduce``."""
    attribution = np.asarray(attribution, dtype=np.float64)
    if reduce == "sum":
        result = attribution.sum(axis=-1)
    elif reduce == "abs-max":
        result = np.abs(attribution).max(axis=-1)
    elif reduce == "abs-sum":
        result = np.abs(attribution).sum(axis=-1)
    else:
        raise ParameterError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    return result.astype(np.float32)


def input_gradients(model: OnnxModel, batch: np.ndarray, target: Target, rules: str = "gradient",
                    **rule_params: Any) -> tuple[np.ndarray, np.ndarray]:
    """Explained scores (n,) (``target.weights @ logits``) and their gradients (or relevances, for the LRP rules)
    with respect to the pixels (n, H, W, 3) for a batch of images (n, H, W, 3)."""
    logits, grads = model.gradient(batch, target.weights, rules=rules, **rule_params)
    return logits.astype(np.float64) @ target.weights.astype(np.float64), grads


class GradientMethod(Method):
    """Base of the gradient methods; subclasses implement :meth:`attribution` and set ``reduce`` in ``__init__``.

    The model must be an :class:`~blackbox_xai.model.OnnxModel` whose ops all have backward rules (a clear error
    names the first op without one) and whose input is float (uint8 inputs are rounded: no gradient).
    """

    reduce: str = "sum"
    keep_attribution = True
    family = "gradient"
    requires = (INPUT_GRADIENTS,)

    def attribute(self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                  progress: Progress) -> Attribution:
        pixels = np.asarray(pixels, dtype=np.float32)
        result = self.attribution(model, pixels, target, clean_outputs, progress)
        attribution = np.asarray(result.saliency, dtype=np.float32)
        if self.keep_attribution:
            result.extras["attribution"] = attribution
        if is_zero(attribution):  # never silently wrong: is the gradient zero, or the score still?
            moves = input_score_moves(model, pixels, target.weights)
            result.extras["zero_gradient"] = ZERO_GRADIENT if moves else SCORE_STILL
        return Attribution(reduce_channels(attribution, self.reduce), result.extras, result.resolved_params)

    def constant_map_reason(self, extras: dict[str, Any]) -> str:
        """The zero-gradient check's verdict when the attribution is identically zero
        (:mod:`..zero_gradient`), else the base class's reason."""
        return extras.get("zero_gradient") or super().constant_map_reason(extras)

    def attribution(self, model: OnnxModel, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                    progress: Progress) -> Attribution:
        """The signed attribution (H, W, 3) in pixel space for ``pixels`` (H, W, 3) at the model size (as the
        result's ``saliency``), extras and resolved parameters."""
        raise NotImplementedError
