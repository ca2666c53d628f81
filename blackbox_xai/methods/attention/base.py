"""The attention family's base class: attention probabilities in, a map over the token grid out.

A subclass implements :meth:`AttentionMethod.token_matrix`: from the attention probabilities of every block (and,
for the gradient-weighted variant, their gradients) it builds an (N, N) matrix whose row i says how much each
token contributed to token i at the output. The base class finds the attention tensors (the Softmax over the keys
in each block, :func:`blackbox_xai.graph.attention.attention_layout`, through the model: methods never open
sessions), reads the rows of the tokens the classifier reads (the extra tokens' rows averaged: the class token, or
class and distillation tokens; with no extra token, as in a globally pooled ViT, the mean of all rows), drops the
extra tokens' columns, reshapes the rest to the (h, w) grid, scales the map so that its maximum is 1
(``extras["token_max"]`` keeps the scale) and upsamples it bilinearly to the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph.attention import AttentionLayout
from ...graph.tokens import AttentionTensor
from ...image import resize_map
from ...model.base import Model
from ...model.capabilities import ATTENTION, LAYERS
from ...model.tensors import attention, tensor_values
from ...targets import Target
from ..base import Attribution, Method, Progress


def heads(value: np.ndarray, tensor: AttentionTensor) -> np.ndarray:
    """One image's attention (heads, N, N) from a (1, heads, N, N) or a (heads, N, N) (batch 1 x heads) value."""
    value = np.asarray(value, dtype=np.float64)
    return value[0] if tensor.layout == "BHNN" else value


def read_rows(matrix: np.ndarray, extra: int) -> np.ndarray:
    """The relevance of every token (N,) for the classifier's readout: the mean of the extra tokens' rows, or of all
    rows without extra tokens."""
    return matrix[:extra].mean(axis=0) if extra else matrix.mean(axis=0)


class AttentionMethod(Method):
    """Base of the methods that read attention probabilities (see the module docstring)."""

    family = "attention"
    requires = (LAYERS, ATTENTION)

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        layout = attention(model)  # type: ignore[arg-type]
        names = [tensor.tensor for tensor in layout.tensors]
        _, values = tensor_values(model, pixels, names)  # type: ignore[arg-type]
        attentions = [heads(value, tensor) for value, tensor in zip(values, layout.tensors)]
        extras: dict[str, Any] = {"attention_tensors": names, "grid": list(layout.grid), "extra_tokens": layout.extra}
        matrix = self.token_matrix(model, pixels, target, layout, attentions, extras)
        relevance = read_rows(matrix, layout.extra)
        grid = relevance[layout.extra:].reshape(layout.grid)
        peak = float(np.abs(grid).max()) if grid.size else 0.0
        extras.update({"token_relevance": relevance.astype(np.float32), "token_max": peak})
        if peak > 0:
            grid = grid / peak
        progress(1, 1)
        return Attribution(resize_map(grid.astype(np.float32), pixels.shape[:2]), extras, {})

    def token_matrix(self, model: Model, pixels: np.ndarray, target: Target, layout: AttentionLayout,
                     attentions: list[np.ndarray], extras: dict[str, Any]) -> np.ndarray:
        """The (N, N) token-to-token relevance from the blocks' attention (heads, N, N), in order."""
        raise NotImplementedError
