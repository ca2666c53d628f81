"""Attention rollout (Abnar and Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph.attention import AttentionLayout
from ...model.base import Model
from ...targets import Target
from .. import params as P
from .base import AttentionMethod

FUSIONS = ("mean", "max", "min")


def attention_rollout(attentions: list[np.ndarray], head_fusion: str = "mean", discard_ratio: float = 0.9
                      ) -> np.ndarray:
    """``A_L ... A_1`` with ``A_l = normalise_rows((fuse_heads(attention_l) + I) / 2)``: the identity stands for the
    residual connection; ``discard_ratio`` of the fused entries, the smallest, are set to zero first (never the
    class token's attention to itself, entry (0, 0)), as in the reference code (jacobgil/vit-explain)."""
    tokens = attentions[0].shape[-1]
    identity = np.eye(tokens)
    result = identity.copy()
    for attention in attentions:
        fused = {"mean": np.mean, "max": np.max, "min": np.min}[head_fusion](attention, axis=0)
        if discard_ratio > 0:
            flat = fused.ravel().copy()
            lowest = np.argsort(flat, kind="stable")[:int(flat.size * discard_ratio)]
            flat[lowest[lowest != 0]] = 0.0
            fused = flat.reshape(fused.shape)
        step = (fused + identity) / 2
        step = step / step.sum(axis=-1, keepdims=True)
        result = step @ result
    return result


class AttentionRollout(AttentionMethod):
    """Attention rollout: how much of each input token flows into the class token through the attention of all
    blocks, the residual connections counted as identity.

    Parameters
    ----------
    head_fusion : how the heads of a block are combined: "mean" (default, the paper), "max" or "min" (the
        reference code's options).
    discard_ratio : the fraction of each block's fused attention set to zero, smallest first (default 0.9, the
        reference code's; 0 is the paper's formula exactly).

    The map is row 0 of the rollout (the class token's; the mean of the extra tokens' rows, or of all rows for a
    model without extra tokens) over the grid tokens. It does not depend on the target class.
    """

    name = "rollout"
    aliases = ("attentionrollout",)
    parameter_constraints = {"head_fusion": P.Options(*FUSIONS),
                             "discard_ratio": P.Interval(0.0, 1.0, closed="left")}

    def __init__(self, head_fusion: str = "mean", discard_ratio: float = 0.9) -> None:
        self._set_params(locals())

    def token_matrix(self, model: Model, pixels: np.ndarray, target: Target, layout: AttentionLayout,
                     attentions: list[np.ndarray], extras: dict[str, Any]) -> np.ndarray:
        return attention_rollout(attentions, self.head_fusion, self.discard_ratio)
