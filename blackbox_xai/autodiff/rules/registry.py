"""The rule tables: operator type -> backward rule, one table per rule set.

A rule is a function ``rule(ctx, node, grads, needed) -> list`` where ``grads`` holds, for each output of the
forward ``node``, the name of the incoming gradient (None when no gradient reaches that output) and ``needed``
says, for each input, whether its gradient is wanted. It returns one entry per input: a tensor name (the
gradient, same shape as the input) or None. Rules only emit nodes through the :class:`~..context.Context`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from onnx import NodeProto

from ..context import Context

RuleFn = Callable[[Context, NodeProto, Sequence[str | None], Sequence[bool]], list]

__all__ = ["GRADIENT", "NO_GRADIENT", "Rule", "register"]


@dataclass(frozen=True)
class Rule:
    """A backward rule and the positions of the inputs and outputs that carry gradient.

    ``inputs``/``outputs`` None means every position. Inputs outside ``inputs`` (shapes, indices, axes...) and
    outputs outside ``outputs`` (MaxPool's indices...) never carry gradient.
    """

    fn: RuleFn
    inputs: tuple[int, ...] | None = None
    outputs: tuple[int, ...] | None = (0,)


#: The exact vector-Jacobian products (rule set "gradient"); the other rule sets start from a copy.
GRADIENT: dict[str, Rule] = {}

#: Operators whose outputs carry no gradient (shapes, comparisons, indices, piecewise-constant functions).
NO_GRADIENT = frozenset({
    "Shape", "Size", "Constant", "ConstantOfShape", "Range", "EyeLike", "NonZero", "OneHot",
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Xor", "BitShift",
    "IsNaN", "IsInf", "ArgMax", "ArgMin", "Hardmax", "Floor", "Ceil", "Round", "Sign",
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "NonMaxSuppression", "StringNormalizer", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
})  # fmt: skip


def register(*ops: str, inputs: tuple[int, ...] | None = None, outputs: tuple[int, ...] | None = (0,),
             table: dict[str, Rule] | None = None) -> Callable[[RuleFn], RuleFn]:
    """Decorator: register ``fn`` as the rule of ``ops`` in ``table`` (default :data:`GRADIENT`)."""

    def decorate(fn: RuleFn) -> RuleFn:
        for op in ops:
            (GRADIENT if table is None else table)[op] = Rule(fn, inputs, outputs)
        return fn

    return decorate
