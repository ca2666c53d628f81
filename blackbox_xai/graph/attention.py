"""A transformer's global attention over its token grid, found with ``onnx`` alone (see
:mod:`blackbox_xai.graph.tokens` for token grids and attention probabilities)."""

from __future__ import annotations

from dataclasses import dataclass

from onnx import ModelProto

from .analysis import depends_on_input, tensor_info, topological_order
from .layers import candidate_layers
from .tokens import AttentionTensor, attention_probabilities

__all__ = ["AttentionLayout", "attention_layout"]


@dataclass(frozen=True)
class AttentionLayout:
    """The attention probabilities of a transformer over its token grid: ``tensors`` (one per block, in order),
    the ``grid`` (h, w) and the number of ``extra`` tokens in front of the grid tokens."""

    tensors: tuple[AttentionTensor, ...]
    grid: tuple[int, int]
    extra: int


def attention_layout(model: ModelProto, input_name: str | None = None) -> AttentionLayout | str:
    """The global attention of a transformer over its token grid, or one line saying why there is none (no token
    grid, no Softmax over keys, or attention inside windows whose N is not the grid's token count)."""
    order = topological_order(model)
    dependent = depends_on_input(model, input_name)
    infos = tensor_info(model, [name for node in order for name in node.output if name in dependent])
    grids = [layer for layer in candidate_layers(model, input_name, infos=infos) if layer.layout == "tokens"]
    if not grids:
        return "the graph has no token grid (B, N, D) below a patch embedding: not a vision transformer"
    height, width = grids[-1].grid  # type: ignore[misc]
    found = attention_probabilities(model, infos, dependent, order)
    if not found:
        return "the graph has no attention probabilities (a Softmax over the keys of (B, heads, N, N))"
    tokens = grids[-1].shape[1]
    matching = tuple(a for a in found if a.tokens == tokens)
    if not matching:
        sizes = sorted({a.tokens for a in found})
        return (f"its attention covers {sizes} tokens, not the {tokens} tokens of the {height}x{width} grid "
                "(windowed attention): no attention over the whole image")
    return AttentionLayout(matching, (height, width), int(tokens) - height * width)
