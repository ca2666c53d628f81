"""Methods for vision transformers: attention rollout, gradient-weighted attention (both read the attention
probabilities, :class:`~blackbox_xai.methods.attention.base.AttentionMethod`) and token masking (a CAM-family
method on any grid layer, head-only passes)."""

from .base import AttentionMethod
from .gradattention import GradientWeightedAttention, gradient_weighted_rollout
from .rollout import AttentionRollout, attention_rollout
from .tokenmasking import TokenMasking

__all__ = ["AttentionMethod", "AttentionRollout", "GradientWeightedAttention", "TokenMasking", "attention_rollout",
           "gradient_weighted_rollout"]
