"""Normalisation layers: BatchNormalization (inference), LRN, LayerNormalization, InstanceNormalization.

BatchNormalization in inference mode is the per-channel affine map ``x * scale / sqrt(var + eps) + shift``.
LRN's channel-window sums are computed with a ``Conv`` of ones over a (N, 1, C, H*W) view: the forward window
``[c - floor((size-1)/2), c + ceil((size-1)/2)]`` and its transpose (the mirrored pads).
Gradients with respect to the parameters (scale, shift, statistics) are not implemented.
"""

from __future__ import annotations

import numpy as np

from ..context import attributes
from .registry import register


def channel_view(ctx, vector: str, x: str) -> str:
    """A per-channel vector (C,) reshaped to (C, 1, ..., 1) to broadcast against ``x`` (N, C, ...)."""
    return ctx.node("Reshape", [vector, ctx.ints([-1] + [1] * (ctx.rank(x) - 2))], hint="per_channel")


@register("BatchNormalization", inputs=(0, 1, 2, 3, 4), outputs=(0,))
def batch_norm(ctx, node, grads, needed):
    attrs = attributes(node)
    if int(attrs.get("training_mode", 0)) or len([o for o in node.output if o]) > 1:
        raise ctx.unsupported("BatchNormalization in training mode")
    if any(needed[1:]):
        raise ctx.unsupported("gradient with respect to the normalisation parameters")
    x, scale, _, _, var = node.input[:5]
    eps = ctx.scalar(float(attrs.get("epsilon", 1e-5)), var)
    factor = ctx.node("Div", [scale, ctx.node("Sqrt", [ctx.node("Add", [var, eps])])], hint="bn_factor")
    return [ctx.like(ctx.node("Mul", [grads[0], channel_view(ctx, factor, x)]), x), None, None, None, None]


def _channel_window(ctx, tensor: str, x: str, before: int, after: int, size: int) -> str:
    """sum over c' in [c - before, c + after] of tensor[:, c', ...], for tensor shaped like x (N, C, ...)."""
    shape = ctx.shape(x)
    view_shape = ctx.node("Concat", [ctx.node("Slice", [shape, ctx.ints([0]), ctx.ints([1])]), ctx.ints([1]),
                                     ctx.node("Slice", [shape, ctx.ints([1]), ctx.ints([2])]), ctx.ints([-1])],
                          axis=0)
    view = ctx.node("Reshape", [tensor, view_shape])
    ones = ctx.const(np.ones((1, 1, size, 1), dtype=ctx.dtype(x)), hint="lrn_window")
    summed = ctx.node("Conv", [view, ones], kernel_shape=[size, 1], pads=[before, 0, after, 0])
    return ctx.node("Reshape", [summed, shape])


@register("LRN")
def lrn(ctx, node, grads, needed):
    attrs = attributes(node)
    x, g = node.input[0], grads[0]
    size = int(attrs["size"])
    alpha, beta, bias = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
    low, high = (size - 1) // 2, size - 1 - (size - 1) // 2
    square = ctx.node("Mul", [x, x])
    window = _channel_window(ctx, square, x, low, high, size)
    d = ctx.node("Add", [ctx.node("Mul", [window, ctx.scalar(alpha / size, x)]), ctx.scalar(bias, x)])
    d_beta = ctx.node("Pow", [d, ctx.scalar(beta, x)])
    direct = ctx.node("Div", [g, d_beta])
    # - 2 alpha beta / size * x * W^T(g x d^(-beta-1))
    inner = ctx.node("Div", [ctx.node("Mul", [g, x]), ctx.node("Mul", [d_beta, d])])
    spread = _channel_window(ctx, inner, x, high, low, size)
    cross = ctx.node("Mul", [ctx.node("Mul", [spread, x]), ctx.scalar(-2.0 * alpha * beta / size, x)])
    return [ctx.like(ctx.node("Add", [direct, cross]), x)]


def _normalise_vjp(ctx, x: str, g_hat: str, axes: list[int], eps: float) -> str:
    """d/dx of (x - mean) / sqrt(var + eps) over ``axes`` applied to the gradient ``g_hat`` of the normalised x."""
    mean = ctx.reduce("ReduceMean", x, axes, keepdims=1)
    centred = ctx.node("Sub", [x, mean])
    var = ctx.reduce("ReduceMean", ctx.node("Mul", [centred, centred]), axes, keepdims=1)
    inv_std = ctx.node("Reciprocal", [ctx.node("Sqrt", [ctx.node("Add", [var, ctx.scalar(eps, x)])])])
    x_hat = ctx.node("Mul", [centred, inv_std])
    mean_g = ctx.reduce("ReduceMean", g_hat, axes, keepdims=1)
    mean_gx = ctx.reduce("ReduceMean", ctx.node("Mul", [g_hat, x_hat]), axes, keepdims=1)
    inner = ctx.node("Sub", [ctx.node("Sub", [g_hat, mean_g]), ctx.node("Mul", [x_hat, mean_gx])])
    return ctx.like(ctx.node("Mul", [inner, inv_std]), x)


@register("LayerNormalization", inputs=(0, 1, 2), outputs=(0,))
def layer_norm(ctx, node, grads, needed):
    if any(needed[1:]):
        raise ctx.unsupported("gradient with respect to the normalisation parameters")
    attrs = attributes(node)
    x, scale = node.input[0], node.input[1]
    rank = ctx.rank(x)
    axis = int(attrs.get("axis", -1)) % rank
    g_hat = ctx.node("Mul", [grads[0], scale])
    gx = _normalise_vjp(ctx, x, g_hat, list(range(axis, rank)), float(attrs.get("epsilon", 1e-5)))
    return [gx] + [None] * (len(node.input) - 1)


@register("InstanceNormalization", inputs=(0, 1, 2))
def instance_norm(ctx, node, grads, needed):
    if any(needed[1:]):
        raise ctx.unsupported("gradient with respect to the normalisation parameters")
    attrs = attributes(node)
    x, scale = node.input[0], node.input[1]
    g_hat = ctx.node("Mul", [grads[0], channel_view(ctx, scale, x)])
    gx = _normalise_vjp(ctx, x, g_hat, list(range(2, ctx.rank(x))), float(attrs.get("epsilon", 1e-5)))
    return [gx, None, None]
