"""Layer-wise Relevance Propagation (Bach, Binder, Montavon, Klauschen, Müller and Samek, "On Pixel-Wise
Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation", PLOS ONE 2015; the rules as
in Montavon, Binder, Lapuschkin, Samek and Müller, "Layer-Wise Relevance Propagation: An Overview", 2019)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ParameterError
from ...model.onnx_model import OnnxModel
from ...targets import Target
from .. import params as P
from ..base import Attribution, Progress
from .base import GradientMethod, input_gradients, reduction

RULES = ("epsilon", "alphabeta")


class LRP(GradientMethod):
    """The explained score redistributed layer by layer down to the pixels, summed over the colour channels.

    The relevance at the output is ``target.weights * logits`` (the explained logit, or y_p and -y_q for a
    contrast); the backward graph of :mod:`blackbox_xai.autodiff` applies the LRP-epsilon rule
    (``rule="epsilon"``) or the LRP-alpha-beta rule (``rule="alphabeta"``, ``alpha - beta = 1``) at each linear
    layer, and the z^B rule at the first layer with the exact per-channel bounds of the normalised input (what pixels
    0 and 255 become) unless ``zb=False``. Where the builder cannot carry the bounds to the first layer (an op
    other than element-wise affine ones between the input and it, e.g. an NHWC model's Transpose) the first layer
    keeps the LRP rule of its kind and ``extras["zb_unavailable"]`` says why. Relevance is conserved, not
    differentiated: the relevance of each model-input element goes to its pixel. ``extras`` report the output
    relevance (the explained score), the relevance that reached the pixels and their relative difference (what
    biases and epsilon absorbed).

    Parameters
    ----------
    rule : "epsilon" (default) or "alphabeta".
    epsilon : the stabiliser of the epsilon rule (default 1e-6, which makes it LRP-0).
    alpha, beta : the alpha-beta rule's weights of the positive and negative contributions (default 1 and 0,
        LRP-alpha1-beta0 = z+); alpha - beta must be 1.
    zb : the z^B rule at the input layer (default True).
    reduce : channel reduction, "sum" (default, conserving relevance), "abs-sum" or "abs-max".
    """

    name = "lrp"
    parameter_constraints = {
        "rule": P.Options(*RULES),
        "epsilon": P.Interval(0.0, None, closed="neither"),
        "alpha": P.Interval(1.0, None),
        "beta": P.Interval(0.0, None),
        "zb": P.Boolean(),
        "reduce": reduction(),
    }

    def __init__(self, rule: str = "epsilon", epsilon: float = 1e-6, alpha: float = 1.0, beta: float = 0.0,
                 zb: bool = True, reduce: str = "sum") -> None:
        self._set_params(locals())
        if abs(self.alpha - self.beta - 1.0) > 1e-9:
            raise self._refuse("alpha", alpha, f"beta + 1 = {self.beta + 1:g} (alpha - beta must be 1)")

    def attribution(self, model: OnnxModel, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                    progress: Progress) -> Attribution:
        params: dict[str, Any] = {"epsilon": self.epsilon} if self.rule == "epsilon" else {
            "alpha": self.alpha, "beta": self.beta}
        extras: dict[str, Any] = {}
        rules = f"lrp-{self.rule}"
        try:
            scores, relevance = input_gradients(model, pixels[None], target, rules=rules,
                                                input_bounds=None if self.zb else False, **params)
        except ParameterError as error:
            if not (self.zb and str(error).startswith("input_bounds")):
                raise
            extras["zb_unavailable"] = str(error)
            scores, relevance = input_gradients(model, pixels[None], target, rules=rules, input_bounds=False,
                                                **params)
        progress(1, 1)
        output = float(scores[0])
        total = float(relevance[0].astype(np.float64).sum())
        extras.update({"output_relevance": output, "input_relevance": total,
                       "conservation_error": abs(total - output) / abs(output) if output else float(abs(total) > 0)})
        return Attribution(relevance[0], extras)
