"""Adjoints of separable linear maps along axes: ``y = A_a x`` on each axis ``a`` (average pooling, Resize).

The matrices are computed at build time (numpy, static sizes along the mapped axes only; the batch and the
channels stay dynamic). The adjoint applies ``A_a^T`` on each axis: the last axis by a right ``MatMul``, the one
before by a left ``MatMul`` (no transposes in the common 2-D case), any other axis through a ``Transpose``.
"""

from __future__ import annotations

import numpy as np


def apply_adjoint(ctx, grad: str, x: str, matrices: dict[int, np.ndarray]) -> str:
    """``grad`` (shaped like the map's output) -> the gradient shaped like ``x``.

    ``matrices`` maps an axis of ``x`` to its matrix ``A`` of shape (output size, input size); axes where the map
    is the identity may be left out.
    """
    rank = ctx.rank(x)
    dtype = ctx.dtype(x)
    out = grad
    for axis in sorted(matrices, reverse=True):
        a = np.asarray(matrices[axis], dtype=dtype)
        if a.shape[0] == a.shape[1] and np.array_equal(a, np.eye(a.shape[0])):
            continue
        if axis == rank - 1:  # (..., out) @ (out, in)
            out = ctx.node("MatMul", [out, ctx.const(a, hint="adjoint_matrix")], hint="adjoint")
        elif axis == rank - 2:  # (in, out) @ (..., out, w)
            out = ctx.node("MatMul", [ctx.const(np.ascontiguousarray(a.T), hint="adjoint_matrix"), out],
                           hint="adjoint")
        else:
            perm = list(range(rank))
            perm[axis], perm[rank - 1] = perm[rank - 1], perm[axis]
            moved = ctx.node("Transpose", [out], perm=perm)
            moved = ctx.node("MatMul", [moved, ctx.const(a, hint="adjoint_matrix")], hint="adjoint")
            out = ctx.node("Transpose", [moved], perm=perm)
    return ctx.like(out, x)
