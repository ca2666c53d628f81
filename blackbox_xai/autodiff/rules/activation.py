"""Element-wise activations: Relu, LeakyRelu, PRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh, Elu, Selu,
Celu, Softplus, Softsign, ThresholdedRelu, Gelu, Mish; and the Guided Backprop and DeconvNet overrides of the
ReLU rule.

Conventions at kinks follow torch: ``Relu'(0) = 0``; Clip passes the gradient strictly inside (min, max) like
``hardtanh`` (ReLU6), HardSwish uses ``x / 3 + 1 / 2`` on [-3, 3].

The masks of ReLU, Clip and LeakyReLU are read from the node's output (``y > 0`` exactly when ``x > 0``), not
its input, so that the forward graph keeps no extra consumer of the pre-activation and onnxruntime can still
fuse Conv + activation.
"""

from __future__ import annotations

import math

from ..context import attributes
from .registry import Rule, register


def _where(ctx, cond, a, b):
    return ctx.node("Where", [cond, a, b])


def _zero(ctx, like):
    return ctx.scalar(0.0, like)


@register("Relu")
def relu(ctx, node, grads, needed):
    x, y = node.input[0], node.output[0]
    return [ctx.masked(grads[0], ctx.node("Greater", [y, _zero(ctx, y)]), x)]


def guided_relu(ctx, node, grads, needed):
    """Guided Backprop (Springenberg et al. 2015): pass the gradient where the input and the gradient are > 0."""
    x, y, g = node.input[0], node.output[0], grads[0]
    zero = _zero(ctx, x)
    both = ctx.node("And", [ctx.node("Greater", [y, zero]), ctx.node("Greater", [g, zero])])
    return [ctx.masked(g, both, x)]


def deconvnet_relu(ctx, node, grads, needed):
    """DeconvNet (Zeiler & Fergus 2014): the backward ReLU is a ReLU of the incoming signal."""
    return [ctx.node("Relu", [grads[0]])]


def _clip_bounds(ctx, node):
    low = node.input[1] if len(node.input) > 1 and node.input[1] else None
    high = node.input[2] if len(node.input) > 2 and node.input[2] else None
    return low, high


def _clip_mask(ctx, node):
    """min < x < max, read from y = clip(x) (the same set when min < max)."""
    y = node.output[0]
    low, high = _clip_bounds(ctx, node)
    conditions = []
    if low is not None:
        conditions.append(ctx.node("Greater", [y, low]))
    if high is not None:
        conditions.append(ctx.node("Less", [y, high]))
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else ctx.node("And", conditions)


@register("Clip", inputs=(0,))
def clip(ctx, node, grads, needed):
    mask = _clip_mask(ctx, node)
    x = node.input[0]
    grad = grads[0] if mask is None else ctx.masked(grads[0], mask, x)
    return [grad] + [None] * (len(node.input) - 1)


def _relu_like_clip(ctx, node) -> bool:
    """True for Clip(x, 0, ...) (ReLU, ReLU6): the guided and DeconvNet rules apply to it."""
    low, _ = _clip_bounds(ctx, node)
    value = ctx.const_value(low) if low else None
    return value is not None and value.size == 1 and float(value.reshape(-1)[0]) == 0.0


def guided_clip(ctx, node, grads, needed):
    if not _relu_like_clip(ctx, node):
        return clip(ctx, node, grads, needed)
    x, g = node.input[0], grads[0]
    both = ctx.node("And", [_clip_mask(ctx, node), ctx.node("Greater", [g, _zero(ctx, x)])])
    return [ctx.masked(g, both, x)] + [None] * (len(node.input) - 1)


def deconvnet_clip(ctx, node, grads, needed):
    if not _relu_like_clip(ctx, node):
        return clip(ctx, node, grads, needed)
    return [ctx.node("Relu", [grads[0]])] + [None] * (len(node.input) - 1)


#: Overrides of the ReLU-like rules for the rule sets "guided" and "deconvnet".
GUIDED = {"Relu": Rule(guided_relu), "Clip": Rule(guided_clip, inputs=(0,))}
DECONVNET = {"Relu": Rule(deconvnet_relu), "Clip": Rule(deconvnet_clip, inputs=(0,))}


@register("LeakyRelu")
def leaky_relu(ctx, node, grads, needed):
    x, g = node.input[0], grads[0]
    alpha = float(attributes(node).get("alpha", 0.01))
    sign_of = node.output[0] if alpha > 0 else x  # y > 0 exactly when x > 0 (alpha > 0)
    # slope = alpha + (1 - alpha) [x > 0]
    mask = ctx.node("Cast", [ctx.node("Greater", [sign_of, _zero(ctx, x)])], to=ctx.elem_type(x))
    slope = ctx.node("Add", [ctx.node("Mul", [mask, ctx.scalar(1.0 - alpha, x)]), ctx.scalar(alpha, x)])
    return [ctx.node("Mul", [g, slope])]


@register("PRelu")
def prelu(ctx, node, grads, needed):
    x, slope = node.input
    g = grads[0]
    negative = ctx.node("Less", [x, _zero(ctx, x)])
    gx = gs = None
    if needed[0]:
        gx = ctx.like(_where(ctx, negative, ctx.node("Mul", [g, slope]), g), x)
    if needed[1]:
        gs = ctx.like(_where(ctx, negative, ctx.node("Mul", [g, x]), _zero(ctx, x)), x)
        gs = ctx.unbroadcast(gs, slope)
    return [gx, gs]


@register("ThresholdedRelu")
def thresholded_relu(ctx, node, grads, needed):
    x = node.input[0]
    alpha = float(attributes(node).get("alpha", 1.0))
    return [ctx.masked(grads[0], ctx.node("Greater", [x, ctx.scalar(alpha, x)]), x)]


@register("Sigmoid")
def sigmoid(ctx, node, grads, needed):
    y = node.output[0]
    slope = ctx.node("Mul", [y, ctx.node("Sub", [ctx.scalar(1.0, y), y])])
    return [ctx.node("Mul", [grads[0], slope])]


@register("HardSigmoid")
def hard_sigmoid(ctx, node, grads, needed):
    x, y = node.input[0], node.output[0]
    alpha = float(attributes(node).get("alpha", 0.2))
    inside = ctx.node("And", [ctx.node("Greater", [y, _zero(ctx, y)]), ctx.node("Less", [y, ctx.scalar(1.0, y)])])
    return [ctx.masked(ctx.node("Mul", [grads[0], ctx.scalar(alpha, x)]), inside, x)]


@register("HardSwish")
def hard_swish(ctx, node, grads, needed):
    x = node.input[0]
    slope = ctx.node("Add", [ctx.node("Mul", [x, ctx.scalar(1.0 / 3.0, x)]), ctx.scalar(0.5, x)])
    slope = _where(ctx, ctx.node("Less", [x, ctx.scalar(-3.0, x)]), _zero(ctx, x), slope)
    slope = _where(ctx, ctx.node("Greater", [x, ctx.scalar(3.0, x)]), ctx.scalar(1.0, x), slope)
    return [ctx.node("Mul", [grads[0], slope])]


@register("Tanh")
def tanh(ctx, node, grads, needed):
    y = node.output[0]
    slope = ctx.node("Sub", [ctx.scalar(1.0, y), ctx.node("Mul", [y, y])])
    return [ctx.node("Mul", [grads[0], slope])]


@register("Elu")
def elu(ctx, node, grads, needed):
    x, y, g = node.input[0], node.output[0], grads[0]
    alpha = float(attributes(node).get("alpha", 1.0))
    negative = ctx.node("Mul", [g, ctx.node("Add", [y, ctx.scalar(alpha, y)])])
    return [_where(ctx, ctx.node("Greater", [x, _zero(ctx, x)]), g, negative)]


@register("Selu")
def selu(ctx, node, grads, needed):
    x, y, g = node.input[0], node.output[0], grads[0]
    attrs = attributes(node)
    alpha = float(attrs.get("alpha", 1.67326319217681884765625))
    gamma = float(attrs.get("gamma", 1.05070102214813232421875))
    positive = ctx.node("Mul", [g, ctx.scalar(gamma, x)])
    negative = ctx.node("Mul", [g, ctx.node("Add", [y, ctx.scalar(alpha * gamma, y)])])
    return [_where(ctx, ctx.node("Greater", [x, _zero(ctx, x)]), positive, negative)]


@register("Celu")
def celu(ctx, node, grads, needed):
    x, y, g = node.input[0], node.output[0], grads[0]
    alpha = float(attributes(node).get("alpha", 1.0))
    # x <= 0: y = alpha (exp(x / alpha) - 1), y' = exp(x / alpha) = y / alpha + 1
    slope = ctx.node("Add", [ctx.node("Mul", [y, ctx.scalar(1.0 / alpha, y)]), ctx.scalar(1.0, y)])
    return [_where(ctx, ctx.node("Greater", [x, _zero(ctx, x)]), g, ctx.node("Mul", [g, slope]))]


@register("Softplus")
def softplus(ctx, node, grads, needed):
    return [ctx.node("Mul", [grads[0], ctx.node("Sigmoid", [node.input[0]])])]


@register("Softsign")
def softsign(ctx, node, grads, needed):
    x = node.input[0]
    denominator = ctx.node("Add", [ctx.scalar(1.0, x), ctx.node("Abs", [x])])
    return [ctx.node("Div", [grads[0], ctx.node("Mul", [denominator, denominator])])]


@register("Mish")
def mish(ctx, node, grads, needed):
    # y = x tanh(softplus(x)); y' = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2)
    x = node.input[0]
    t = ctx.node("Tanh", [ctx.node("Softplus", [x])])
    one_minus = ctx.node("Sub", [ctx.scalar(1.0, x), ctx.node("Mul", [t, t])])
    slope = ctx.node("Add", [t, ctx.node("Mul", [ctx.node("Mul", [x, ctx.node("Sigmoid", [x])]), one_minus])])
    return [ctx.node("Mul", [grads[0], slope])]


@register("Gelu")
def gelu(ctx, node, grads, needed):
    x = node.input[0]
    approximate = attributes(node).get("approximate", "none")
    if approximate == "tanh":
        # y = x/2 (1 + tanh(u)), u = c (x + 0.044715 x^3); y' = (1 + t)/2 + x/2 (1 - t^2) c (1 + 3 0.044715 x^2)
        c = math.sqrt(2.0 / math.pi)
        square = ctx.node("Mul", [x, x])
        cube = ctx.node("Mul", [square, x])
        u = ctx.node("Mul", [ctx.node("Add", [x, ctx.node("Mul", [cube, ctx.scalar(0.044715, x)])]),
                             ctx.scalar(c, x)])
        t = ctx.node("Tanh", [u])
        first = ctx.node("Mul", [ctx.node("Add", [ctx.scalar(1.0, x), t]), ctx.scalar(0.5, x)])
        du = ctx.node("Mul", [ctx.node("Add", [ctx.scalar(1.0, x), ctx.node("Mul", [square, ctx.scalar(3 * 0.044715, x)])]),
                              ctx.scalar(c, x)])
        second = ctx.node("Mul", [ctx.node("Mul", [x, ctx.scalar(0.5, x)]),
                                  ctx.node("Mul", [ctx.node("Sub", [ctx.scalar(1.0, x), ctx.node("Mul", [t, t])]), du])])
        slope = ctx.node("Add", [first, second])
    else:
        # y = x Phi(x); y' = Phi(x) + x phi(x)
        phi_big = ctx.node("Mul", [ctx.node("Add", [ctx.scalar(1.0, x), ctx.node("Erf", [ctx.node("Mul", [x, ctx.scalar(1 / math.sqrt(2), x)])])]),
                                   ctx.scalar(0.5, x)])
        density = ctx.node("Mul", [ctx.node("Exp", [ctx.node("Mul", [ctx.node("Mul", [x, x]), ctx.scalar(-0.5, x)])]),
                                   ctx.scalar(1 / math.sqrt(2 * math.pi), x)])
        slope = ctx.node("Add", [phi_big, ctx.node("Mul", [x, density])])
    return [ctx.node("Mul", [grads[0], slope])]
