"""Gemm and MatMul (with numpy broadcasting over the batch axes and 1-D operands)."""

from __future__ import annotations

from ...graph.analysis import TensorInfo
from ..context import attributes
from .registry import register


@register("Gemm")
def gemm(ctx, node, grads, needed):
    attrs = attributes(node)
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
    a, b = node.input[0], node.input[1]
    g = grads[0]
    ga = gb = gc = None
    if needed[0]:  # dA' = alpha g B'^T
        if not trans_a:
            ga = ctx.node("Gemm", [g, b], hint="gemm_vjp", alpha=alpha, transB=0 if trans_b else 1)
        else:
            ga = ctx.node("Gemm", [b, g], hint="gemm_vjp", alpha=alpha, transA=trans_b, transB=1)
        ga = ctx.like(ga, a)
    if needed[1]:  # dB' = alpha A'^T g
        if not trans_b:
            gb = ctx.node("Gemm", [a, g], hint="gemm_vjp", alpha=alpha, transA=0 if trans_a else 1)
        else:
            gb = ctx.node("Gemm", [g, a], hint="gemm_vjp", alpha=alpha, transA=1, transB=trans_a)
        gb = ctx.like(gb, b)
    if len(node.input) > 2 and needed[2]:
        scaled = g if beta == 1.0 else ctx.node("Mul", [g, ctx.scalar(beta, node.output[0])])
        gc = ctx.unbroadcast(ctx.like(scaled, node.output[0]), node.input[2])
    return [ga, gb, gc][: len(node.input)]


def _swap_last(ctx, tensor: str, rank: int) -> str:
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return ctx.node("Transpose", [tensor], perm=perm)


@register("MatMul")
def matmul(ctx, node, grads, needed):
    a, b = node.input
    y = node.output[0]
    g = grads[0]
    rank_a, rank_b = ctx.rank(a), ctx.rank(b)
    y_shape = ctx.symbolic_shape(y)
    # promote 1-D operands to matrices: a (k,) -> (1, k); b (k,) -> (k, 1); the gradient gains the same axes
    a2, b2, g2 = a, b, g
    if rank_a == 1:
        a2 = ctx.node("Unsqueeze", [a, ctx.ints([0])])
    if rank_b == 1:
        b2 = ctx.node("Unsqueeze", [b, ctx.ints([1])])
    if rank_a == 1 and rank_b == 1:
        g2 = ctx.node("Reshape", [g, ctx.ints([1, 1])])
    elif rank_a == 1:
        g2 = ctx.node("Unsqueeze", [g, ctx.ints([-2])])
    elif rank_b == 1:
        g2 = ctx.node("Unsqueeze", [g, ctx.ints([-1])])
    ra, rb = max(rank_a, 2), max(rank_b, 2)
    batch = list(y_shape[: len(y_shape) - (2 - (rank_a == 1) - (rank_b == 1))]) if y_shape is not None else None
    ga = gb = None
    if needed[0]:
        full = ctx.node("MatMul", [g2, _swap_last(ctx, b2, rb)], hint="matmul_vjp")  # (..., m, k)
        ga = _reduce_to(ctx, full, batch, a, rank_a)
    if needed[1]:
        full = ctx.node("MatMul", [_swap_last(ctx, a2, ra), g2], hint="matmul_vjp")  # (..., k, n)
        gb = _reduce_to(ctx, full, batch, b, rank_b)
    return [ga, gb]


def _reduce_to(ctx, full: str, batch: list | None, target: str, target_rank: int) -> str:
    """Sum a (batch..., r, c) gradient over broadcast batch axes; drop the axis added to a 1-D operand."""
    if batch is None:
        raise ctx.unsupported("MatMul output rank unknown")
    if target_rank == 1:
        if batch:
            full = ctx.reduce("ReduceSum", full, list(range(len(batch))), keepdims=0)
        return ctx.like(ctx.node("Reshape", [full, ctx.ints([-1])]), target)
    target_shape = ctx.symbolic_shape(target)
    ctx.infos[full] = TensorInfo(full, ctx.elem_type(target), tuple(batch) + tuple(target_shape[-2:]))
    return ctx.unbroadcast(full, target)
