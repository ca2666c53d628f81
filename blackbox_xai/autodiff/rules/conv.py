"""Conv and ConvTranspose.

The vector-Jacobian product of ``Conv`` with respect to its input is ``ConvTranspose`` with the same weights,
strides, dilations and groups. With static spatial sizes the pads and ``output_padding`` are chosen so that the
result has the input's size; with dynamic sizes the full transposed convolution is computed and then cropped or
zero-padded to ``Shape(x)`` with one (negative-capable) ``Pad``. A stride-1 Conv with constant weights (most
layers) gets a plain ``Conv`` instead, with the kernel flipped and the channels swapped within each group:
onnxruntime's Conv kernels (depthwise, NCHWc with optimisations on) are faster than its ConvTranspose. The VJP of ``ConvTranspose`` is ``Conv`` with the
same attributes. Gradients with respect to the weights are not implemented (they are constants in the models
this package explains): such a request raises :class:`~..context.UnsupportedOpError`.
"""

from __future__ import annotations

import numpy as np

from ..context import attributes
from .registry import register


def conv_params(ctx, node, weight: str | None = None):
    """(spatial rank, kernel, strides, dilations, group, pads, auto_pad) of a Conv/ConvTranspose/pool node."""
    attrs = attributes(node)
    weight = weight or (node.input[1] if len(node.input) > 1 else "")
    kernel = attrs.get("kernel_shape")
    if kernel is None:
        kernel = ctx.static_dims(weight, range(2, ctx.rank(weight)))
    kernel = [int(k) for k in kernel]
    rank = len(kernel)
    strides = [int(s) for s in attrs.get("strides", [1] * rank)]
    dilations = [int(d) for d in attrs.get("dilations", [1] * rank)]
    pads = [int(p) for p in attrs.get("pads", [0] * (2 * rank))]
    auto_pad = str(attrs.get("auto_pad", "NOTSET"))
    return rank, kernel, strides, dilations, int(attrs.get("group", 1)), pads, auto_pad


def same_pads(size: int, kernel: int, stride: int, dilation: int, auto_pad: str) -> tuple[int, int]:
    """Explicit (begin, end) pads of auto_pad SAME_UPPER / SAME_LOWER / VALID for one axis (Conv, pools)."""
    if auto_pad == "VALID":
        return 0, 0
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    small = total // 2
    return (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)


def flipped_weight(weight: np.ndarray, group: int) -> np.ndarray:
    """Weights of the Conv that is the adjoint of a stride-1 Conv: input and output channels swapped within each
    group, kernel flipped. (M, C/g, k...) -> (C, M/g, k...)."""
    m, c_per = weight.shape[:2]
    kernel = weight.shape[2:]
    grouped = weight.reshape((group, m // group, c_per) + kernel)
    swapped = np.swapaxes(grouped, 1, 2).reshape((group * c_per, m // group) + kernel)
    return np.ascontiguousarray(np.flip(swapped, axis=tuple(range(2, 2 + len(kernel)))))


def _stride1_conv_vjp(ctx, node, grad, weight, kernel, dilations, group, begin, end):
    """The VJP of a stride-1 Conv with constant weights as a Conv (which onnxruntime optimises better than
    ConvTranspose, e.g. depthwise and NCHWc kernels), or None when it does not apply."""
    value = ctx.const_value(weight)
    if value is None:
        return None
    reach = [d * (k - 1) for k, d in zip(kernel, dilations)]
    pads = [r - b for r, b in zip(reach, begin)] + [r - e for r, e in zip(reach, end)]
    if any(p < 0 for p in pads):
        return None
    key = ("flipped", weight, group)
    if key not in ctx.extra:
        ctx.extra[key] = ctx.const(flipped_weight(value, group), hint="conv_vjp_weight")
    return ctx.node("Conv", [grad, ctx.extra[key]], hint="conv_vjp", kernel_shape=kernel, dilations=dilations,
                    group=group, pads=pads)


def conv_input_vjp(ctx, node, grad: str, weight: str) -> str:
    """The gradient of ``node`` (a Conv) w.r.t. its input for output gradient ``grad``, using ``weight``."""
    x, y = node.input[0], node.output[0]
    rank, kernel, strides, dilations, group, pads, auto_pad = conv_params(ctx, node, weight)
    x_shape, y_shape = ctx.static_shape(x), ctx.static_shape(y)
    if all(s == 1 for s in strides) and auto_pad in ("NOTSET", "VALID"):
        begin, end = (pads[:rank], pads[rank:]) if auto_pad == "NOTSET" else ([0] * rank, [0] * rank)
        out = _stride1_conv_vjp(ctx, node, grad, weight, kernel, dilations, group, begin, end)
        if out is not None:
            return ctx.like(out, x)
    common = dict(kernel_shape=kernel, strides=strides, dilations=dilations, group=group)
    if x_shape is not None and y_shape is not None and all(d is not None for d in x_shape[2:] + y_shape[2:]):
        sizes, outs = x_shape[2:], y_shape[2:]
        begin, end, extra = [], [], []
        for i in range(rank):
            if auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
                pb, pe = same_pads(sizes[i], kernel[i], strides[i], dilations[i], auto_pad)
            else:
                pb, pe = pads[i], pads[i + rank]
            full = (outs[i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1
            padding = sizes[i] + pb + pe - full
            if padding < 0 or padding >= max(strides[i], dilations[i]):
                break
            begin.append(pb)
            end.append(pe)
            extra.append(padding)
        else:
            out = ctx.node("ConvTranspose", [grad, weight], hint="conv_vjp", pads=begin + end,
                           output_padding=extra, **common)
            return ctx.like(out, x)
    # dynamic spatial sizes: full transposed convolution, then crop / pad to the input's size
    full = ctx.node("ConvTranspose", [grad, weight], hint="conv_vjp_full", **common)
    starts, big = ctx.ints([2]), ctx.ints([2 ** 62])
    x_sizes = ctx.node("Slice", [ctx.shape(x), starts, big])
    full_sizes = ctx.node("Slice", [ctx.node("Shape", [full]), starts, big])
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = ctx.node("Max", [ctx.node("Sub", [full_sizes, x_sizes]), ctx.ints([0] * rank)])
        small = ctx.node("Div", [total, ctx.ints([2] * rank)])
        begin = small if auto_pad == "SAME_UPPER" else ctx.node("Sub", [total, small])
    else:
        begin = ctx.ints(pads[:rank] if auto_pad != "VALID" else [0] * rank)
    end = ctx.node("Add", [ctx.node("Sub", [x_sizes, full_sizes]), begin])
    zeros = ctx.ints([0, 0])
    all_pads = ctx.node("Concat", [zeros, ctx.node("Neg", [begin]), zeros, end], axis=0)
    return ctx.like(ctx.node("Pad", [full, all_pads], hint="conv_vjp"), x)


def bias_vjp(ctx, grad: str, y: str) -> str:
    """Sum of the output gradient over every axis but the channels."""
    rank = ctx.rank(y)
    return ctx.reduce("ReduceSum", grad, [0] + list(range(2, rank)), keepdims=0)


@register("Conv")
def conv(ctx, node, grads, needed):
    (g,) = grads
    if len(needed) > 1 and needed[1]:
        raise ctx.unsupported("gradient with respect to the convolution weights")
    gx = conv_input_vjp(ctx, node, ctx.like(g, node.output[0]), node.input[1]) if needed[0] else None
    gb = bias_vjp(ctx, g, node.output[0]) if len(needed) > 2 and needed[2] else None
    return [gx, None, gb][: len(node.input)]


def conv_transpose_input_vjp(ctx, node, grad: str, weight: str) -> str:
    attrs = attributes(node)
    rank, kernel, strides, dilations, group, pads, auto_pad = conv_params(ctx, node, weight)
    if "output_shape" in attrs or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.unsupported("ConvTranspose with output_shape or auto_pad SAME (pads depend on the runtime)")
    if auto_pad == "VALID":
        pads = [0] * (2 * rank)
    out = ctx.node("Conv", [grad, weight], hint="convtranspose_vjp", kernel_shape=kernel, strides=strides,
                   dilations=dilations, group=group, pads=pads)
    return ctx.like(out, node.input[0])


@register("ConvTranspose")
def conv_transpose(ctx, node, grads, needed):
    (g,) = grads
    if len(needed) > 1 and needed[1]:
        raise ctx.unsupported("gradient with respect to the convolution weights")
    gx = conv_transpose_input_vjp(ctx, node, g, node.input[1]) if needed[0] else None
    gb = bias_vjp(ctx, g, node.output[0]) if len(needed) > 2 and needed[2] else None
    return [gx, None, gb][: len(node.input)]
