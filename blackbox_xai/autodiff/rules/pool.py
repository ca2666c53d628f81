"""Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.

* MaxPool: the forward node is given its ``Indices`` output (flat positions of the winners in the input,
  batch and channel offsets included); the gradient is a ``ScatterElements`` with ``reduction="add"`` of the
  output gradient at those positions, so overlapping windows that share a winner add up.
* AveragePool: a separable linear map; its per-axis matrices are built at build time with onnxruntime's exact
  windows (``count_include_pad``, ``ceil_mode`` with the last window dropped when it starts in the end padding,
  dilations) and applied transposed (:mod:`.separable`). Needs static spatial sizes.
* GlobalAveragePool: ``Expand`` of the gradient divided by the number of pooled elements.
* GlobalMaxPool: the gradient goes to the maxima, split evenly between ties (as torch's ``amax``).
"""

from __future__ import annotations

import numpy as np

from ..context import attributes
from .conv import conv_params, same_pads
from .registry import register
from .separable import apply_adjoint


@register("MaxPool", outputs=(0,))
def max_pool(ctx, node, grads, needed):
    attrs = attributes(node)
    if int(attrs.get("storage_order", 0)) != 0:
        raise ctx.unsupported("MaxPool with storage_order=1 (column-major indices)")
    x = node.input[0]
    if len(node.output) < 2 or not node.output[1]:
        indices = ctx.fresh("maxpool_indices")
        del node.output[1:]
        node.output.append(indices)  # the forward node now also returns the winners' positions
    return [ctx.scatter_add(x, node.output[1], grads[0])]


def pool_matrix(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int,
                ceil_mode: bool, count_include_pad: bool) -> np.ndarray:
    """The (output, input) matrix of a 1-D average pooling as onnxruntime computes it."""
    span = (kernel - 1) * dilation + 1
    room = size + pad_begin + pad_end - span
    out = (-(-room // stride) if ceil_mode else room // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1  # the last window would start in the end padding
    matrix = np.zeros((max(out, 0), size))
    for o in range(max(out, 0)):
        start = o * stride - pad_begin
        end = min(start + span, size + pad_end)
        taps = [start + j * dilation for j in range(kernel) if start + j * dilation < end]
        inside = [t for t in taps if 0 <= t < size]
        divisor = len(taps) if count_include_pad else len(inside)
        for t in inside:
            matrix[o, t] += 1.0 / divisor
    return matrix


@register("AveragePool")
def average_pool(ctx, node, grads, needed):
    attrs = attributes(node)
    x = node.input[0]
    rank, kernel, strides, dilations, _, pads, auto_pad = conv_params(ctx, node)
    sizes = ctx.static_dims(x, range(2, 2 + rank))
    matrices = {}
    for i in range(rank):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
            pb, pe = same_pads(sizes[i], kernel[i], strides[i], dilations[i], auto_pad)
        else:
            pb, pe = pads[i], pads[i + rank]
        matrices[2 + i] = pool_matrix(sizes[i], kernel[i], strides[i], pb, pe, dilations[i],
                                      bool(attrs.get("ceil_mode", 0)), bool(attrs.get("count_include_pad", 0)))
    return [apply_adjoint(ctx, grads[0], x, matrices)]


def _count(ctx, x: str, y: str) -> str:
    """Number of input elements per output element (Size(x) / Size(y)), in x's dtype."""
    x_shape = ctx.static_shape(x)
    if x_shape is not None and all(d is not None for d in x_shape[2:]):
        return ctx.scalar(float(np.prod(x_shape[2:])), x)
    ratio = ctx.node("Div", [ctx.node("Size", [x]), ctx.node("Size", [y])])
    return ctx.node("Cast", [ratio], to=ctx.elem_type(x))


@register("GlobalAveragePool")
def global_average_pool(ctx, node, grads, needed):
    x, y = node.input[0], node.output[0]
    spread = ctx.node("Expand", [grads[0], ctx.shape(x)])
    return [ctx.like(ctx.node("Div", [spread, _count(ctx, x, y)]), x)]


def share_among_maxima(ctx, x: str, y_kept: str, grad_kept: str, axes) -> str:
    """Gradient of a max over ``axes`` (``y_kept`` and ``grad_kept`` with those axes kept as size 1)."""
    mask = ctx.node("Cast", [ctx.node("Equal", [x, y_kept])], to=ctx.elem_type(x))
    count = ctx.reduce("ReduceSum", mask, axes, keepdims=1)
    return ctx.like(ctx.node("Mul", [mask, ctx.node("Div", [grad_kept, count])]), x)


@register("GlobalMaxPool")
def global_max_pool(ctx, node, grads, needed):
    x, y = node.input[0], node.output[0]
    return [share_among_maxima(ctx, x, y, grads[0], list(range(2, ctx.rank(x))))]
