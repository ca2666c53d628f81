"""Element-wise arithmetic with broadcasting: Add, Sub, Mul, Div, Sum, Mean, Max, Min, Where, Neg, Pow, Sqrt, Exp,
Log, Abs, Reciprocal, Erf, Identity, Dropout, Cast, Expand.

Gradients of broadcast operands are summed back to the operand's shape (:meth:`Context.unbroadcast`).
"""

from __future__ import annotations

import math

from onnx import TensorProto

from ..context import FLOAT_TYPES
from .registry import register


def _unb(ctx, grad, node, index):
    return ctx.unbroadcast(ctx.like(grad, node.output[0]), node.input[index])


@register("Add", "Sum")
def add(ctx, node, grads, needed):
    (g,) = grads
    return [_unb(ctx, g, node, i) if needed[i] else None for i in range(len(node.input))]


@register("Sub")
def sub(ctx, node, grads, needed):
    (g,) = grads
    ga = _unb(ctx, g, node, 0) if needed[0] else None
    gb = _unb(ctx, ctx.node("Neg", [g]), node, 1) if needed[1] else None
    return [ga, gb]


@register("Mean")
def mean(ctx, node, grads, needed):
    (g,) = grads
    scaled = ctx.node("Mul", [g, ctx.scalar(1.0 / len(node.input), node.output[0])])
    return [_unb(ctx, scaled, node, i) if needed[i] else None for i in range(len(node.input))]


@register("Mul")
def mul(ctx, node, grads, needed):
    (g,) = grads
    a, b = node.input
    ga = _unb(ctx, ctx.node("Mul", [g, b]), node, 0) if needed[0] else None
    gb = _unb(ctx, ctx.node("Mul", [g, a]), node, 1) if needed[1] else None
    return [ga, gb]


@register("Div")
def div(ctx, node, grads, needed):
    (g,) = grads
    b = node.input[1]
    ga = _unb(ctx, ctx.node("Div", [g, b]), node, 0) if needed[0] else None
    gb = None
    if needed[1]:  # d(a/b)/db = -y/b
        gb = _unb(ctx, ctx.node("Neg", [ctx.node("Div", [ctx.node("Mul", [g, node.output[0]]), b])]), node, 1)
    return [ga, gb]


@register("Max", "Min")
def max_min(ctx, node, grads, needed):
    """The gradient goes to the operands equal to the result, split evenly between ties (as torch does)."""
    (g,) = grads
    y = node.output[0]
    masks = [ctx.node("Cast", [ctx.node("Equal", [y, x])], to=ctx.elem_type(y)) for x in node.input]
    count = masks[0] if len(masks) == 1 else ctx.node("Sum", masks)
    share = ctx.node("Div", [g, count])
    return [_unb(ctx, ctx.node("Mul", [share, m]), node, i) if needed[i] else None
            for i, m in enumerate(masks)]


@register("Where", inputs=(1, 2))
def where(ctx, node, grads, needed):
    (g,) = grads
    cond = node.input[0]
    zero = ctx.scalar(0.0, node.output[0])
    ga = _unb(ctx, ctx.node("Where", [cond, g, zero]), node, 1) if needed[1] else None
    gb = _unb(ctx, ctx.node("Where", [cond, zero, g]), node, 2) if needed[2] else None
    return [None, ga, gb]


@register("Neg")
def neg(ctx, node, grads, needed):
    return [ctx.node("Neg", [grads[0]])]


@register("Identity")
def identity(ctx, node, grads, needed):
    return [grads[0]]


@register("Dropout", inputs=(0,))
def dropout(ctx, node, grads, needed):
    """Inference Dropout is the identity; training mode (``training_mode`` input true) is refused."""
    if len(node.input) > 2 and node.input[2]:
        value = ctx.const_value(node.input[2])
        if value is None or bool(value):
            raise ctx.unsupported("Dropout in training mode")
    return [grads[0]] + [None] * (len(node.input) - 1)


@register("Cast")
def cast(ctx, node, grads, needed):
    # an integer input only carries gradient on a quantised path (straight-through, rules/quantisation.py):
    # its gradient stays float32
    x = node.input[0]
    to = ctx.elem_type(x) if ctx.elem_type(x) in FLOAT_TYPES else TensorProto.FLOAT
    return [ctx.node("Cast", [grads[0]], to=to)]


@register("CastLike", inputs=(0,))
def cast_like(ctx, node, grads, needed):
    x = node.input[0]
    if ctx.elem_type(x) not in FLOAT_TYPES:
        return [None, None]
    return [ctx.node("Cast", [grads[0]], to=ctx.elem_type(x)), None]


@register("Expand", inputs=(0,))
def expand(ctx, node, grads, needed):
    return [_unb(ctx, grads[0], node, 0), None]


@register("Pow")
def pow_(ctx, node, grads, needed):
    (g,) = grads
    x, p = node.input
    y = node.output[0]
    gx = gp = None
    if needed[0]:  # p * x^(p-1)
        one = ctx.const(1.0, dtype=ctx.dtype(p)) if ctx.dtype(p).kind == "f" else ctx.const(1, dtype=ctx.dtype(p))
        pm1 = ctx.node("Sub", [p, one])
        xp = ctx.node("Pow", [x, pm1])
        p_cast = p if ctx.dtype(p) == ctx.dtype(x) else ctx.node("Cast", [p], to=ctx.elem_type(x))
        gx = _unb(ctx, ctx.node("Mul", [g, ctx.node("Mul", [xp, p_cast])]), node, 0)
    if needed[1]:  # y * log(x)
        gp = _unb(ctx, ctx.node("Mul", [g, ctx.node("Mul", [y, ctx.node("Log", [x])])]), node, 1)
    return [gx, gp]


@register("Sqrt")
def sqrt(ctx, node, grads, needed):
    y = node.output[0]
    return [ctx.node("Div", [ctx.node("Mul", [grads[0], ctx.scalar(0.5, y)]), y])]


@register("Exp")
def exp(ctx, node, grads, needed):
    return [ctx.node("Mul", [grads[0], node.output[0]])]


@register("Log")
def log(ctx, node, grads, needed):
    return [ctx.node("Div", [grads[0], node.input[0]])]


@register("Reciprocal")
def reciprocal(ctx, node, grads, needed):
    y = node.output[0]
    return [ctx.node("Neg", [ctx.node("Mul", [grads[0], ctx.node("Mul", [y, y])])])]


@register("Abs")
def abs_(ctx, node, grads, needed):
    return [ctx.node("Mul", [grads[0], ctx.node("Sign", [node.input[0]])])]


@register("Erf")
def erf(ctx, node, grads, needed):
    x = node.input[0]
    square = ctx.node("Mul", [x, x])
    bump = ctx.node("Exp", [ctx.node("Neg", [square])])
    return [ctx.node("Mul", [grads[0], ctx.node("Mul", [bump, ctx.scalar(2.0 / math.sqrt(math.pi), x)])])]


@register("Sin")
def sin(ctx, node, grads, needed):
    return [ctx.node("Mul", [grads[0], ctx.node("Cos", [node.input[0]])])]


@register("Cos")
def cos(ctx, node, grads, needed):
    return [ctx.node("Neg", [ctx.node("Mul", [grads[0], ctx.node("Sin", [node.input[0]])])])]

