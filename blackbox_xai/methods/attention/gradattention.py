"""Gradient-weighted attention (Chefer, Gur and Wolf, "Generic Attention-model Explainability for Interpreting
Bi-Modal and Encoder-Decoder Transformers", ICCV 2021)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph.attention import AttentionLayout
from ...model.base import Model
from ...model.capabilities import ATTENTION, LAYER_GRADIENTS, LAYERS
from ...targets import Target
from .base import AttentionMethod, heads


def gradient_weighted_rollout(attentions: list[np.ndarray], gradients: list[np.ndarray]) -> np.ndarray:
    """``R = I``, then for each block ``R <- R + mean_heads((dy/dA * A)^+) R`` (the paper's self-attention rule).
    Returned as it is; the method reads ``R - I`` (see :class:`GradientWeightedAttention`)."""
    tokens = attentions[0].shape[-1]
    relevance = np.eye(tokens)
    for attention, gradient in zip(attentions, gradients):
        weighted = np.maximum(gradient * attention, 0.0).mean(axis=0)
        relevance = relevance + weighted @ relevance
    return relevance


class GradientWeightedAttention(AttentionMethod):
    """The positive part of gradient x attention, averaged over heads, accumulated through the blocks with the
    identity for the residual connections; class-specific, unlike rollout.

    The gradients of the target's logit score (``target.weights @ logits``) with respect to each attention
    probability tensor come from the backward graph (:meth:`~blackbox_xai.model.OnnxModel.gradient` with ``wrt``
    the attention tensors): one forward pass for the attention values and one backward pass. No parameters.

    The map reads ``R - I``: the identity's share is the same 1/N for every column once the rows of a globally
    pooled model are averaged (and only the class token's own column, which is dropped, otherwise), so removing
    it changes no ranking but keeps the scale for the evidence.
    """

    name = "gradattention"
    aliases = ("chefer", "genericattention", "gradientweightedattention")
    requires = (LAYERS, ATTENTION, LAYER_GRADIENTS)
    parameter_constraints: dict = {}

    def __init__(self) -> None:
        self._set_params(locals())

    def token_matrix(self, model: Model, pixels: np.ndarray, target: Target, layout: AttentionLayout,
                     attentions: list[np.ndarray], extras: dict[str, Any]) -> np.ndarray:
        names = [tensor.tensor for tensor in layout.tensors]
        _, found = model.gradient(pixels, target.weights, wrt=names)  # type: ignore[attr-defined]
        gradients = [heads(found[name], tensor) for name, tensor in zip(names, layout.tensors)]
        relevance = gradient_weighted_rollout(attentions, gradients)
        return relevance - np.eye(len(relevance))
