"""Softmax and LogSoftmax (opset 13 semantics: normalised over one axis; older models are rewritten to it by
:func:`blackbox_xai.graph.normalise_opset` before the backward graph is built)."""

from __future__ import annotations

from ..context import attributes
from .registry import register


@register("Softmax")
def softmax(ctx, node, grads, needed):
    y, g = node.output[0], grads[0]
    axis = int(attributes(node).get("axis", -1))
    dot = ctx.reduce("ReduceSum", ctx.node("Mul", [g, y]), [axis], keepdims=1)
    return [ctx.like(ctx.node("Mul", [y, ctx.node("Sub", [g, dot])]), node.input[0])]


@register("LogSoftmax")
def log_softmax(ctx, node, grads, needed):
    y, g = node.output[0], grads[0]
    axis = int(attributes(node).get("axis", -1))
    total = ctx.reduce("ReduceSum", g, [axis], keepdims=1)
    return [ctx.like(ctx.node("Sub", [g, ctx.node("Mul", [ctx.node("Exp", [y]), total])]), node.input[0])]
