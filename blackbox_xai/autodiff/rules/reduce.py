"""Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceSumSquare, ReduceL1, ReduceL2,
ReduceLogSumExp (axes as attribute or constant input, keepdims, noop_with_empty_axes)."""

from __future__ import annotations

from ..context import attributes
from .pool import share_among_maxima
from .registry import register

REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL1", "ReduceL2",
              "ReduceLogSumExp")


def reduced_axes(ctx, node) -> list[int] | None:
    """The reduced axes (non-negative, sorted), or None when the reduction is the identity."""
    attrs = attributes(node)
    x = node.input[0]
    rank = ctx.rank(x)
    if "axes" in attrs:
        axes = list(attrs["axes"])
    elif len(node.input) > 1 and node.input[1]:
        value = ctx.const_value(node.input[1])
        if value is None:
            raise ctx.unsupported("axes given by a computed tensor")
        axes = [int(a) for a in value.reshape(-1)]
    else:
        axes = []
    if not axes:
        if int(attrs.get("noop_with_empty_axes", 0)):
            return None
        axes = list(range(rank))
    return sorted(a % rank for a in axes)


@register(*REDUCTIONS, inputs=(0,))
def reduce(ctx, node, grads, needed):
    x, y = node.input[0], node.output[0]
    g = grads[0]
    axes = reduced_axes(ctx, node)
    rest = [None] * (len(node.input) - 1)
    if axes is None:
        return [g] + rest
    keep = int(attributes(node).get("keepdims", 1))
    if not keep:
        g = ctx.node("Unsqueeze", [g, ctx.ints(axes)])
        y = ctx.node("Unsqueeze", [y, ctx.ints(axes)])
    op = node.op_type
    if op in ("ReduceMax", "ReduceMin"):
        return [share_among_maxima(ctx, x, y, g, axes)] + rest
    spread = ctx.node("Expand", [g, ctx.shape(x)])
    if op == "ReduceSum":
        out = spread
    elif op == "ReduceMean":
        shape = ctx.static_shape(x)
        if shape is not None and all(shape[a] is not None for a in axes):
            count = 1
            for a in axes:
                count *= shape[a]
            out = ctx.node("Mul", [spread, ctx.scalar(1.0 / count, x)])
        else:
            ratio = ctx.node("Div", [ctx.node("Size", [x]), ctx.node("Size", [node.output[0]])])
            out = ctx.node("Div", [spread, ctx.node("Cast", [ratio], to=ctx.elem_type(x))])
    elif op == "ReduceSumSquare":
        out = ctx.node("Mul", [spread, ctx.node("Mul", [x, ctx.scalar(2.0, x)])])
    elif op == "ReduceL1":
        out = ctx.node("Mul", [spread, ctx.node("Sign", [x])])
    elif op == "ReduceL2":
        out = ctx.node("Mul", [spread, ctx.node("Div", [x, y])])
    else:  # ReduceLogSumExp
        out = ctx.node("Mul", [spread, ctx.node("Exp", [ctx.node("Sub", [x, y])])])
    return [ctx.like(out, x)] + rest
