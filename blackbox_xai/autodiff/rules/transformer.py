"""What transformer exports contain beyond the CNN rule set: Einsum's exact gradient, and LRP through attention,
LayerNormalization and GELU gates.

* ``Einsum`` (gradient, :data:`EINSUM`): the gradient of operand i is the Einsum of the incoming gradient with
  the other operands, ``"out,others->term_i"``, summed back over broadcast axes. Equations with a repeated index
  inside one term (diagonals) or an index of an operand that appears nowhere else (summed away) are refused.
  Not yet in the default table: the existing tests use Einsum as their example of an op without a backward rule;
  :func:`register_einsum` adds it (to :data:`~.registry.GRADIENT`, and from there to the LRP tables).
* LRP (Ali, Schnake, Eberle, Montavon, Müller and Wolf, "XAI for Transformers: Better Explanations through
  Conservative Propagation", ICML 2022): normalisation factors and attention weights are held constant during
  relevance propagation, which makes each of these layers linear in the propagated activation and the epsilon
  rule applies:

  - **LN-rule**, ``LayerNormalization``: ``y = scale * (x - mean) / std + bias`` with ``std`` constant is linear in
    ``x`` (the centring is), so ``R_x = x * L^T(R / y)`` with ``L^T(s) = (scale * s - mean(scale * s)) / std``;
    relevance is conserved up to the bias's share.
  - **AH-rule**, a ``MatMul`` (or two-operand ``Einsum``) of attention probabilities (a Softmax's output, through
    Dropout/Identity/Cast) with values: the probabilities are constants, the values get all the relevance by the
    epsilon rule; nothing flows into the Softmax, so queries and keys get none.
  - **GELU gates**, a ``Mul`` of a tensor by its Erf gate (GELU exported as ``x * 0.5 * (1 + erf(x / sqrt 2))``):
    the gate is a constant, so relevance passes to ``x`` unchanged, as through the ``Gelu`` op (opset 20). Other
    self-gates (SiLU's ``x * sigmoid(x)``) are still refused, as before.

  Softmax and Erf then sit on branches that no relevance reaches; their LRP rules only say so if it ever does.
"""

from __future__ import annotations

from typing import Any

from ..context import attributes
from .lrp import epsilon_rule, stabilise
from .registry import GRADIENT, Rule

PASS_OPS = ("Dropout", "Identity", "Cast", "CastLike")
GATE_DEPTH = 6


def _terms(equation: str) -> tuple[list[str], str]:
    equation = equation.replace(" ", "")
    if "->" not in equation:
        raise ValueError("implicit output")
    left, out = equation.split("->")
    return left.split(","), out


def einsum(ctx, node, grads, needed):
    equation = str(attributes(node).get("equation", ""))
    if isinstance(attributes(node).get("equation"), bytes):
        equation = attributes(node)["equation"].decode()
    try:
        terms, out = _terms(equation)
    except ValueError:
        raise ctx.unsupported("an Einsum without an explicit output ('->') has no rule") from None
    plain = [t.replace("...", "") for t in terms]
    for i, term in enumerate(plain):
        if len(set(term)) != len(term):
            raise ctx.unsupported(f"Einsum term {terms[i]!r} repeats an index (a diagonal)")
        others = set(out.replace("...", "")).union(*(set(p) for j, p in enumerate(plain) if j != i))
        if needed[i] and not set(term) <= others:
            raise ctx.unsupported(f"Einsum term {terms[i]!r} sums an index away on its own")
    results: list[Any] = []
    for i, name in enumerate(node.input):
        if not needed[i]:
            results.append(None)
            continue
        inputs = [grads[0]] + [other for j, other in enumerate(node.input) if j != i]
        # an operand without the ellipsis gets it back in its gradient's term (onnxruntime wants the output to keep
        # an ellipsis that the inputs have); the broadcast axes are then summed away
        target = terms[i] if "..." in terms[i] or "..." not in out else "..." + terms[i]
        spec = ",".join([out] + [t for j, t in enumerate(terms) if j != i]) + "->" + target
        grad = ctx.node("Einsum", inputs, hint="einsum_vjp", equation=spec)
        if "..." in target:
            ctx.infos[grad] = _broadcast_info(ctx, grad, name, node.output[0], target, out)
            results.append(ctx.unbroadcast(grad, name))
        else:
            results.append(ctx.like(grad, name))
    return results


def _broadcast_info(ctx, grad: str, name: str, output: str, target: str, out: str) -> Any:
    """The shape of an ellipsis gradient: the output's ellipsis axes, then the operand's own named axes."""
    from ...graph.analysis import TensorInfo

    out_shape = ctx.symbolic_shape(output)
    own = ctx.symbolic_shape(name)
    if out_shape is None or own is None:
        raise ctx.unsupported("Einsum with an ellipsis and unknown ranks")
    named = len(target.replace("...", ""))
    leading = out_shape[:len(out_shape) - len(out.replace("...", ""))]
    return TensorInfo(grad, ctx.elem_type(name), tuple(leading) + tuple(own[len(own) - named:]))


EINSUM = Rule(einsum)
"""The Einsum rule (module docstring)."""


def register_einsum(table: dict[str, Rule] | None = None) -> None:
    """Add :data:`EINSUM` to ``table`` (default: the exact-gradient table :data:`~.registry.GRADIENT`)."""
    (GRADIENT if table is None else table)["Einsum"] = EINSUM


# ----------------------------------------------------------------------------------------------------------------
# LRP


def _producer(ctx, name: str):
    return ctx.extra.get("producers", {}).get(name)


def _is_attention(ctx, name: str) -> bool:
    """A Softmax's output, possibly through Dropout/Identity/Cast."""
    for _ in range(4):
        node = _producer(ctx, name)
        if node is None:
            return False
        if node.op_type == "Softmax":
            return True
        if node.op_type not in PASS_OPS:
            return False
        name = node.input[0]
    return False


def _gelu_gate(ctx, name: str, source: str) -> bool:
    """Whether ``name`` is computed from ``source`` within a few nodes through an Erf: the gate
    ``0.5 * (1 + erf(x / sqrt 2))`` of an exported GELU."""
    frontier, seen, erf = [name], set(), False
    for _ in range(GATE_DEPTH):
        following = []
        for tensor in frontier:
            node = _producer(ctx, tensor)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            erf = erf or node.op_type == "Erf"
            if source in node.input:
                return erf
            following.extend(i for i in node.input if i)
        frontier = following
    return False


def attention_detached(linear: Rule, gradient: Rule) -> Rule:
    """The LRP rule of MatMul/Einsum: the AH-rule when one of two input-dependent operands is attention, else the
    LRP rule ``linear`` (which refuses a product of two input-dependent tensors)."""

    def rule(ctx, node, grads, needed):
        if len(node.input) == 2 and all(needed[:2]):
            attention = [i for i in range(2) if _is_attention(ctx, node.input[i])]
            if attention:
                values = 1 - attention[0]
                only = [i == values for i in range(len(node.input))]
                y = node.output[0]
                signal = ctx.like(ctx.node("Div", [grads[0], stabilise(ctx, y)], hint="lrp_s"), y)
                vjp = gradient.fn(ctx, node, [signal], only)[values]
                result: list[Any] = [None] * len(node.input)
                result[values] = ctx.like(ctx.node("Mul", [node.input[values], vjp], hint="lrp_r"),
                                          node.input[values])
                return result
        return linear.fn(ctx, node, grads, needed)

    return Rule(rule, linear.inputs, linear.outputs)


def gated(linear: Rule) -> Rule:
    """The LRP rule of Mul: a GELU gate of its other operand (x * g(x), g through an Erf) passes relevance to x;
    else ``linear``."""

    def rule(ctx, node, grads, needed):
        if len(node.input) == 2 and all(needed[:2]):
            for source, gate in ((0, 1), (1, 0)):
                if _gelu_gate(ctx, node.input[gate], node.input[source]):
                    result: list[Any] = [None, None]
                    result[source] = grads[0]
                    return result
        return linear.fn(ctx, node, grads, needed)

    return Rule(rule, linear.inputs, linear.outputs)


def layer_norm_lrp(ctx, node, grads, needed):
    """The LN-rule (module docstring): epsilon rule on the normalisation with its standard deviation held
    constant."""
    if any(needed[1:]):
        raise ctx.unsupported("relevance for the normalisation parameters")
    attrs = attributes(node)
    x, scale, y = node.input[0], node.input[1], node.output[0]
    rank = ctx.rank(x)
    axes = list(range(int(attrs.get("axis", -1)) % rank, rank))
    centred = ctx.node("Sub", [x, ctx.reduce("ReduceMean", x, axes)])
    variance = ctx.reduce("ReduceMean", ctx.node("Mul", [centred, centred]), axes)
    std = ctx.node("Sqrt", [ctx.node("Add", [variance, ctx.scalar(float(attrs.get("epsilon", 1e-5)), x)])])
    signal = ctx.like(ctx.node("Div", [grads[0], stabilise(ctx, y)], hint="lrp_s"), y)
    scaled = ctx.node("Mul", [signal, scale])
    adjoint = ctx.node("Div", [ctx.node("Sub", [scaled, ctx.reduce("ReduceMean", scaled, axes)]), std])
    return [ctx.like(ctx.node("Mul", [x, adjoint], hint="lrp_r"), x)] + [None] * (len(node.input) - 1)


def _unreached(what: str):
    def rule(ctx, node, grads, needed):
        raise ctx.unsupported(f"relevance reached {what}; explain the logits (attention weights and gates are "
                              "held constant by the transformer rules)")

    return rule


def transformer_lrp(table: dict[str, Rule]) -> dict[str, Rule]:
    """Add the transformer rules to an LRP rule table (in place; returned for convenience)."""
    if "Einsum" in GRADIENT:
        table["Einsum"] = epsilon_rule(GRADIENT["Einsum"])
    for op in ("MatMul", "Einsum"):
        if op in table:
            table[op] = attention_detached(table[op], GRADIENT[op])
    table["Mul"] = gated(table["Mul"])
    table["LayerNormalization"] = Rule(layer_norm_lrp, (0, 1, 2), (0,))
    table["Softmax"] = Rule(_unreached("a Softmax"), (0,), (0,))
    table["Erf"] = Rule(_unreached("an Erf outside a GELU gate"), (0,), (0,))
    return table
