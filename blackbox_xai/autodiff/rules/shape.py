"""Shape and selection operators: Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Gather,
GatherElements, GatherND, Pad, Tile, DepthToSpace, SpaceToDepth, TopK.

Pure re-arrangements are inverted (Reshape to ``Shape(x)``, the inverse permutation). Selections use one
exact, shape-agnostic device: run the same operator on a tensor of flat positions ``0, 1, 2...`` shaped like the
input, which tells where each output element came from, then scatter-add the output gradient to those positions
(so duplicated indices add up). Constant-mode Pad is its own adjoint with negated pads, and Slice with unit steps
and static bounds is a Pad.
"""

from __future__ import annotations

from ..context import attributes
from .registry import register


@register("Flatten", "Reshape", "Squeeze", "Unsqueeze", inputs=(0,))
def reshape(ctx, node, grads, needed):
    return [ctx.reshape_like(grads[0], node.input[0])] + [None] * (len(node.input) - 1)


@register("Transpose")
def transpose(ctx, node, grads, needed):
    perm = attributes(node).get("perm")
    if perm is None:
        perm = list(reversed(range(ctx.rank(node.input[0]))))
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return [ctx.like(ctx.node("Transpose", [grads[0]], perm=inverse), node.input[0])]


@register("Concat")
def concat(ctx, node, grads, needed):
    x0 = node.input[0]
    axis = int(attributes(node)["axis"]) % ctx.rank(x0)
    sizes = []
    for name in node.input:
        shape = ctx.static_shape(name)
        sizes.append(shape[axis] if shape is not None else None)
    if all(s is not None for s in sizes):
        split = ctx.ints(sizes)
    else:
        pieces = [ctx.node("Slice", [ctx.shape(name), ctx.ints([axis]), ctx.ints([axis + 1])]) for name in node.input]
        split = ctx.node("Concat", pieces, axis=0)
    parts = ctx.node("Split", [grads[0], split], outputs=len(node.input), axis=axis)
    return [ctx.like(part, name) if need else None for part, name, need in zip(parts, node.input, needed)]


@register("Split", inputs=(0,), outputs=None)
def split(ctx, node, grads, needed):
    x = node.input[0]
    axis = int(attributes(node).get("axis", 0))
    parts = [g if g is not None else ctx.zeros_like(y) for g, y in zip(grads, node.output)]
    return [ctx.like(ctx.node("Concat", parts, axis=axis), x)] + [None] * (len(node.input) - 1)


def _same_op_on_positions(ctx, node, data_index: int = 0) -> str:
    """Run a copy of ``node`` with its data input replaced by flat positions: the source of each output."""
    positions = ctx.flat_index(node.input[data_index])
    inputs = list(node.input)
    inputs[data_index] = positions
    return ctx.node(node.op_type, inputs, hint=f"{node.op_type.lower()}_positions", **attributes(node))


def _selection(ctx, node, grads, data_index: int = 0):
    x = node.input[data_index]
    sources = _same_op_on_positions(ctx, node, data_index)
    result = [None] * len(node.input)
    result[data_index] = ctx.scatter_add(x, sources, grads[0])
    return result


@register("Gather", "GatherElements", "GatherND", "Tile", inputs=(0,))
def gather(ctx, node, grads, needed):
    return _selection(ctx, node, grads)


def _static_slice_pads(ctx, node):
    """Pads (begin..., end...) that invert the Slice, or None when it needs the general treatment."""
    shape = ctx.static_shape(node.input[0])
    names = [node.input[i] if len(node.input) > i and node.input[i] else None for i in range(1, 5)]
    values = [ctx.const_value(name) if name else None for name in names]
    if shape is None or any(name is not None and value is None for name, value in zip(names, values)):
        return None
    starts, ends, axes, steps = values
    rank = len(shape)
    axes = [int(a) % rank for a in axes] if axes is not None else list(range(len(starts)))
    steps = [int(s) for s in steps] if steps is not None else [1] * len(axes)
    begin, end = [0] * rank, [0] * rank
    for axis, start, stop, step in zip(axes, starts, ends, steps):
        if step != 1 or shape[axis] is None:
            return None
        size = shape[axis]
        clamp = lambda v: int(max(min(int(v), 2**62), -(2**62)))
        lo, hi, _ = slice(clamp(start), clamp(stop)).indices(size)
        begin[axis], end[axis] = lo, size - max(hi, lo)
    return begin + end


@register("Slice", inputs=(0,))
def slice_(ctx, node, grads, needed):
    pads = _static_slice_pads(ctx, node)
    if pads is not None:
        return [ctx.like(ctx.node("Pad", [grads[0], ctx.ints(pads)], hint="slice_vjp"), node.input[0])] + \
            [None] * (len(node.input) - 1)
    return _selection(ctx, node, grads)


@register("Pad", inputs=(0,))
def pad(ctx, node, grads, needed):
    mode = attributes(node).get("mode", "constant")
    if mode != "constant":
        copy = type(node)()
        copy.CopyFrom(node)
        if len(copy.input) > 2:
            copy.input[2] = ""  # no fill value (a float) for the positions (int64)
        return _selection(ctx, copy, grads)
    inputs = [grads[0], ctx.node("Neg", [node.input[1]])]
    if len(node.input) > 3 and node.input[3]:
        inputs += ["", node.input[3]]
    return [ctx.like(ctx.node("Pad", inputs, hint="pad_vjp"), node.input[0])] + [None] * (len(node.input) - 1)


@register("SpaceToDepth")
def space_to_depth(ctx, node, grads, needed):
    block = int(attributes(node)["blocksize"])
    return [ctx.like(ctx.node("DepthToSpace", [grads[0]], blocksize=block, mode="DCR"), node.input[0])]


@register("DepthToSpace")
def depth_to_space(ctx, node, grads, needed):
    attrs = attributes(node)
    block = int(attrs["blocksize"])
    x = node.input[0]
    if attrs.get("mode", "DCR") == "DCR":
        return [ctx.like(ctx.node("SpaceToDepth", [grads[0]], blocksize=block), x)]
    # CRD: y = reshape(transpose(reshape(x, (N, C, b, b, H, W)), (0, 1, 4, 2, 5, 3)), (N, C, H b, W b))
    shape = ctx.shape(x)
    h = ctx.node("Slice", [shape, ctx.ints([2]), ctx.ints([3])])
    w = ctx.node("Slice", [shape, ctx.ints([3]), ctx.ints([4])])
    b = ctx.ints([block])
    view = ctx.node("Concat", [ctx.ints([0, -1]), h, b, w, b], axis=0)
    g = ctx.node("Reshape", [grads[0], view])  # (N, C, H, b, W, b)
    g = ctx.node("Transpose", [g], perm=[0, 1, 3, 5, 2, 4])  # (N, C, b, b, H, W)
    return [ctx.reshape_like(g, x)]


@register("TopK", inputs=(0,), outputs=(0,))
def top_k(ctx, node, grads, needed):
    x = node.input[0]
    axis = int(attributes(node).get("axis", -1))
    zeros = ctx.zeros_like(x)
    out = ctx.node("ScatterElements", [zeros, node.output[1], grads[0]], axis=axis, reduction="add")
    return [ctx.like(out, x), None]
