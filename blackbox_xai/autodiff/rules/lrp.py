"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019) as backward rules.

The backward signal is the relevance ``R`` itself, starting from ``R = seed * output`` at the explained output.

* Layers linear in their inputs (Conv, ConvTranspose, Gemm and MatMul with one constant operand, Add, Sub, Sum,
  Mean, Mul/Div by a constant, average pooling, ReduceSum/Mean, BatchNormalization as the affine map it is in
  inference, Resize): the **epsilon rule** ``R_x = x * VJP_x(R / (z + eps sign(z)))`` with ``z`` the layer's
  output, biases included (they absorb their share). With several activation operands (a residual Add) each
  gets its own share ``x_k * VJP_k(...)``, so relevance is conserved up to the biases and epsilon.
* Rule set ``lrp-alphabeta``: Conv, ConvTranspose, Gemm and MatMul use the **alpha-beta rule**
  ``R_x = alpha R+ - beta R-`` with positive and negative contributions ``x+ w+ + x- w-`` and ``x+ w- + x- w+``
  (positive biases join z+, negative ones z-); the other linear layers keep the epsilon rule.
* With ``input_bounds`` the first Conv/Gemm/MatMul fed by the input (through element-wise affine ops with
  constant operands, whose effect on the bounds is carried along) uses the **z^B box rule**
  ``z = x w - l w+ - h w-`` without bias, and relevance passes unchanged through those element-wise ops (the
  input normalisation). Without bounds the epsilon rule on them amounts to folding them into the first layer.
* Activations (ReLU, ReLU6, LeakyReLU, sigmoid-type gates...) and LRN pass relevance through unchanged.
* Re-arrangements and selections (Reshape, Transpose, Concat, Slice, Pad, Gather...) and max pooling
  (winner takes all) use their exact adjoints, which move relevance without changing its sum.
* Quantised graphs: QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear pass relevance like the clip they
  are; QLinear operators and ConvInteger/MatMulInteger use their float twin's rule (:mod:`.quantisation`).
* Transformers (:mod:`.transformer`, added to these tables by :func:`~blackbox_xai.autodiff.rules.rule_table`):
  LayerNormalization, attention (MatMul/Einsum with a Softmax's output) and
  GELU gates (x * g(x) with g through an Erf) by the conservative rules of Ali et al. (ICML 2022).
* Anything else (a Softmax that relevance reaches, other products of two activations...) raises
  :class:`~..context.UnsupportedOpError`: explain the logits, not the probabilities.
"""

from __future__ import annotations

from onnx import NodeProto

from ..context import attributes
from .quantisation import INTEGER_SOURCE_OPS, QUANTISERS
from .registry import GRADIENT, Rule

LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Sum", "Mean", "Mul", "Div", "Neg",
          "AveragePool", "GlobalAveragePool", "ReduceSum", "ReduceMean", "BatchNormalization", "Resize")
PASS = ("Relu", "LeakyRelu", "PRelu", "Clip", "Elu", "Selu", "Celu", "Softplus", "Softsign", "HardSwish",
        "HardSigmoid", "Sigmoid", "Tanh", "Gelu", "Mish", "ThresholdedRelu", "LRN", "Identity", "Dropout", "Cast",
        "CastLike")
ADJOINT = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Gather",
           "GatherElements", "GatherND", "Pad", "Tile", "Expand", "DepthToSpace", "SpaceToDepth", "MaxPool",
           "GlobalMaxPool", "ReduceMax", "ReduceMin", "Max", "Min", "TopK")
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
BILINEAR = ("Mul", "MatMul", "Gemm")


def stabilise(ctx, z: str) -> str:
    """z + eps * sign(z), with sign(0) = +1."""
    eps = ctx.epsilon
    shift = ctx.node("Where", [ctx.node("GreaterOrEqual", [z, ctx.scalar(0.0, z)]), ctx.scalar(eps, z),
                               ctx.scalar(-eps, z)])
    return ctx.node("Add", [z, shift], hint="stabilised")


def _check_linear(ctx, node, needed) -> None:
    count = sum(bool(n) for n in needed)
    if node.op_type in BILINEAR and count > 1:
        raise ctx.unsupported("a product of two input-dependent tensors has no LRP rule")
    if node.op_type == "Div" and len(needed) > 1 and needed[1]:
        raise ctx.unsupported("division by an input-dependent tensor has no LRP rule")


def epsilon_rule(gradient: Rule) -> Rule:
    def rule(ctx, node, grads, needed):
        if node.output[0] in ctx.extra.get("box_path", ()):
            return _pass(ctx, node, grads, needed)  # input normalisation before a z^B layer
        _check_linear(ctx, node, needed)
        box = ctx.extra.get("box", {}).get(node.output[0])
        if box is not None:
            return box_rule(ctx, node, grads, needed, box, gradient)
        y = node.output[0]
        signal = ctx.like(ctx.node("Div", [grads[0], stabilise(ctx, y)], hint="lrp_s"), y)
        vjps = gradient.fn(ctx, node, [signal] + [None] * (len(node.output) - 1), needed)
        return [ctx.node("Mul", [name, v], hint="lrp_r") if v is not None else None
                for name, v in zip(node.input, vjps)]

    return Rule(rule, gradient.inputs, gradient.outputs)


def _operands(ctx, node, needed) -> tuple[int, int, int | None]:
    """(data index, weight index, bias index or None) of a weighted layer."""
    if node.op_type in ("Conv", "ConvTranspose"):
        bias = 2 if len(node.input) > 2 and node.input[2] else None
        return 0, 1, bias
    data = 0 if needed[0] else 1
    bias = 2 if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else None
    return data, 1 - data, bias


def _positive(ctx, name):
    return ctx.like(ctx.node("Relu", [name], hint="pos"), name)


def _negative(ctx, name):
    return ctx.like(ctx.node("Neg", [ctx.node("Relu", [ctx.node("Neg", [name])])], hint="neg"), name)


def _forward_copy(ctx, node: NodeProto, replace: dict[int, str], bias: int | None, keep_bias: str | None) -> str:
    """Emit a copy of the forward node with some inputs replaced (the bias replaced by ``keep_bias`` or dropped)."""
    inputs = list(node.input)
    for index, name in replace.items():
        inputs[index] = name
    if bias is not None:
        if keep_bias is None:
            inputs = inputs[:bias]
        else:
            inputs[bias] = keep_bias
    out = ctx.node(node.op_type, inputs, hint=f"lrp_{node.op_type.lower()}", **attributes(node))
    return ctx.like(out, node.output[0])


def _vjp(ctx, gradient: Rule, node: NodeProto, data: int, weight: int, weight_name: str, signal: str) -> str:
    """VJP w.r.t. the data input of the node with its weight replaced by ``weight_name``."""
    copy = NodeProto()
    copy.CopyFrom(node)
    copy.input[weight] = weight_name
    needed = [i == data for i in range(len(node.input))]
    return gradient.fn(ctx, copy, [signal], needed)[data]


def alpha_beta_rule(gradient: Rule) -> Rule:
    eps_rule = epsilon_rule(gradient)

    def rule(ctx, node, grads, needed):
        _check_linear(ctx, node, needed)
        box = ctx.extra.get("box", {}).get(node.output[0])
        if box is not None:
            return box_rule(ctx, node, grads, needed, box, gradient)
        data, weight, bias = _operands(ctx, node, needed)
        if not needed[data]:
            return eps_rule.fn(ctx, node, grads, needed)
        x, w = node.input[data], node.input[weight]
        r = grads[0]
        xp, xn = _positive(ctx, x), _negative(ctx, x)
        wp, wn = _positive(ctx, w), _negative(ctx, w)
        bp = bn = None
        if bias is not None:
            bp, bn = _positive(ctx, node.input[bias]), _negative(ctx, node.input[bias])

        def part(w_first, w_second, b):
            z = ctx.node("Add", [_forward_copy(ctx, node, {data: xp, weight: w_first}, bias, b),
                                 _forward_copy(ctx, node, {data: xn, weight: w_second}, bias, None)])
            s = ctx.like(ctx.node("Div", [r, stabilise(ctx, ctx.like(z, node.output[0]))]), node.output[0])
            first = ctx.node("Mul", [xp, _vjp(ctx, gradient, node, data, weight, w_first, s)])
            second = ctx.node("Mul", [xn, _vjp(ctx, gradient, node, data, weight, w_second, s)])
            return ctx.node("Add", [first, second])

        relevance = part(wp, wn, bp)
        if ctx.alpha != 1.0:
            relevance = ctx.node("Mul", [relevance, ctx.scalar(ctx.alpha, x)])
        if ctx.beta:
            negative = ctx.node("Mul", [part(wn, wp, bn), ctx.scalar(ctx.beta, x)])
            relevance = ctx.node("Sub", [relevance, negative])
        result = [None] * len(node.input)
        result[data] = ctx.like(relevance, x)
        return result

    return Rule(rule, gradient.inputs, gradient.outputs)


def box_rule(ctx, node, grads, needed, box, gradient: Rule):
    """z^B rule for the first layer: bounds (low, high) broadcastable to the layer's input."""
    data, weight, bias = _operands(ctx, node, needed)
    x, w = node.input[data], node.input[weight]
    low, high = box
    shape = ctx.shape(x)
    lows = ctx.like(ctx.node("Expand", [ctx.const(low.astype(ctx.dtype(x)), hint="lrp_low"), shape]), x)
    highs = ctx.like(ctx.node("Expand", [ctx.const(high.astype(ctx.dtype(x)), hint="lrp_high"), shape]), x)
    wp, wn = _positive(ctx, w), _negative(ctx, w)
    z = _forward_copy(ctx, node, {}, bias, None)
    z = ctx.node("Sub", [z, _forward_copy(ctx, node, {data: lows, weight: wp}, bias, None)])
    z = ctx.node("Sub", [z, _forward_copy(ctx, node, {data: highs, weight: wn}, bias, None)])
    y = node.output[0]
    s = ctx.like(ctx.node("Div", [grads[0], stabilise(ctx, ctx.like(z, y))]), y)
    relevance = ctx.node("Mul", [x, _vjp(ctx, gradient, node, data, weight, w, s)])
    relevance = ctx.node("Sub", [relevance, ctx.node("Mul", [lows, _vjp(ctx, gradient, node, data, weight, wp, s)])])
    relevance = ctx.node("Sub", [relevance, ctx.node("Mul", [highs, _vjp(ctx, gradient, node, data, weight, wn, s)])])
    result = [None] * len(node.input)
    result[data] = ctx.like(relevance, x)
    return result


def _pass(ctx, node, grads, needed):
    """Relevance passes unchanged to the (one) input-dependent operand."""
    first = next((i for i, n in enumerate(needed) if n), 0)
    return [grads[0] if i == first else None for i in range(len(node.input))]


def lrp_table(alpha_beta: bool) -> dict[str, Rule]:
    """The rule table of ``lrp-epsilon`` (``alpha_beta`` False) or ``lrp-alphabeta``."""
    table: dict[str, Rule] = {}
    for op in LINEAR:
        if op in GRADIENT:
            wrap = alpha_beta_rule if alpha_beta and op in WEIGHTED else epsilon_rule
            table[op] = wrap(GRADIENT[op])
    for op in PASS:
        if op in GRADIENT:
            table[op] = Rule(_pass, GRADIENT[op].inputs, GRADIENT[op].outputs)
    for op in ADJOINT:
        if op in GRADIENT:
            table[op] = GRADIENT[op]
    for op in QUANTISERS:  # a quantiser is an activation (a clip): relevance passes
        table[op] = Rule(_pass, GRADIENT[op].inputs, GRADIENT[op].outputs)
    for op in INTEGER_SOURCE_OPS - QUANTISERS:  # QLinear/Integer ops: their float twin's rule in this table
        table[op] = GRADIENT[op]
    return table

