"""Quantisation operators: straight-through gradients (the quantisation-aware-training convention).

The true derivative of rounding is zero almost everywhere, so the exact gradient of a quantised graph is zero
wherever it exists and explains nothing. These rules use the **straight-through estimator** (Bengio, Leonard &
Courville 2013, "Estimating or propagating gradients through stochastic neurons"; the convention of
quantisation-aware training, e.g. Jacob et al. 2018): rounding counts as the identity, saturation does not. The
result is the exact gradient of the *dequantised float graph*, the same graph with every rounding removed and every
quantiser replaced by a clip to its representable range ``[(qmin - zero_point) * scale, (qmax - zero_point) *
scale]`` (``qmin``/``qmax`` those of the zero point's type: 0..255 for uint8, -128..127 for int8): the gradient is
zero outside that range (ends included inside). PyTorch's FakeQuantize masks on the rounded value instead, which
also passes values within half a step outside either end; the clip's own derivative is kept here so that the
gradient is exactly that of the dequantised float graph. This is also how a ReLU or ReLU6 folded into a
quantiser's range keeps its gradient.

Convention for integer tensors: the gradient at an integer tensor ``q`` is the derivative with respect to ``q``
read as a real number (float32). So

* ``QuantizeLinear(x, s, z)``: ``dq/dx = 1/s`` inside the range, 0 outside;
* ``DequantizeLinear(q, s, z)``: ``dy/dq = s`` (per-axis scales broadcast along ``axis``);
* ``DynamicQuantizeLinear(x)``: ``dy/dx = 1/y_scale`` (the range covers ``x`` by construction); the scale and
  zero point, computed from the data, count as constants (no gradient), as in quantisation-aware training;
* ``QLinearConv``, ``QLinearMatMul``, ``QGemm``, ``QLinearAdd``, ``QLinearMul``, ``QLinearGlobalAveragePool``,
  ``QLinearAveragePool``, ``QLinearSigmoid``, ``QLinearLeakyRelu``, ``QLinearSoftmax`` (``com.microsoft`` for all
  but the first two): the inputs are dequantised, the float operator is emitted in the backward graph and
  differentiated with its own rule (:func:`float_twin`), and the requantisation of the output is
  straight-through (``1/y_scale`` inside the output range, 0 outside);
* ``ConvInteger``, ``MatMulInteger``: ``Conv``/``MatMul`` of ``x - x_zero_point`` and ``w - w_zero_point`` (an
  exact linear map of the integers; the int32 result carries no rounding).

Structural operators over integer tensors (Reshape, Flatten, Transpose...) pass the gradient as on float tensors
(:data:`INTEGER_PASS_OPS`); any other operator that consumes an integer tensor on the differentiated path raises
:class:`~..context.UnsupportedOpError` naming it rather than stopping the gradient silently. In the LRP rule sets
(:mod:`.lrp`) relevance passes the quantisers unchanged (neither rescaled nor masked) and the QLinear operators
use the LRP rule of their float twin.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ..context import attributes
from .registry import GRADIENT, register

__all__ = ["INTEGER_PASS_OPS", "INTEGER_SOURCE_OPS", "QUANTISERS", "float_twin", "integer_range"]

#: The quantisers proper (no float twin): relevance passes through them in the LRP rule sets.
QUANTISERS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})

#: Operators whose integer output carries a (straight-through) gradient.
INTEGER_SOURCE_OPS = frozenset({
    "QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
    "com.microsoft.QLinearAdd", "com.microsoft.QLinearMul", "com.microsoft.QLinearGlobalAveragePool",
    "com.microsoft.QLinearAveragePool", "com.microsoft.QLinearSigmoid", "com.microsoft.QLinearLeakyRelu",
    "com.microsoft.QLinearSoftmax", "com.microsoft.QGemm",
})  # fmt: skip
#: Operators that may consume an integer tensor on a differentiated path (their rules work on float gradients).
INTEGER_PASS_OPS = frozenset({
    "DequantizeLinear", "Cast", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat",
    "Split", "Slice",
}) | INTEGER_SOURCE_OPS  # fmt: skip

_RANGES = {
    TensorProto.UINT8: (0, 255), TensorProto.INT8: (-128, 127), TensorProto.UINT16: (0, 65535),
    TensorProto.INT16: (-32768, 32767), TensorProto.INT32: (-(2**31), 2**31 - 1),
    TensorProto.UINT4: (0, 15), TensorProto.INT4: (-8, 7),
}  # fmt: skip


def integer_range(elem_type: int) -> tuple[int, int]:
    """(qmin, qmax) of an integer element type."""
    if elem_type not in _RANGES:
        raise ValueError(f"not a quantised element type: {elem_type}")
    return _RANGES[elem_type]


def _scaling(ctx) -> bool:
    """False for the LRP rule sets: relevance is not rescaled by quantisation scales nor masked by saturation
    (a quantiser passes relevance like the clip it is)."""
    return not ctx.rules.startswith("lrp")


def _param(ctx, name: str, like: str, axis: int | None, default: float = 0.0) -> str:
    """A float tensor broadcastable against ``like`` holding the scale or zero point ``name`` ("" = ``default``);
    a 1-D per-axis parameter is laid along ``axis``."""
    dtype = ctx.grad_dtype(like)
    rank = ctx.rank(like)
    value = ctx.const_value(name) if name else np.asarray(default)
    if value is not None:
        value = np.asarray(value, dtype=np.float64)
        if value.ndim == 1 and value.size > 1:
            shape = [1] * rank
            shape[axis % rank] = value.size
            value = value.reshape(shape)
        return ctx.const(value.astype(dtype), hint="qparam")
    out = ctx.node("Cast", [name], hint="qparam", to=helper.np_dtype_to_tensor_dtype(dtype))
    info = ctx.info(name)
    if info is not None and info.shape is not None and len(info.shape) == 1 and axis is not None:
        shape = [1] * rank
        shape[axis % rank] = -1
        out = ctx.node("Reshape", [out, ctx.ints(shape)], hint="qparam")
    return out


def _quantised_type(ctx, zero: str, node) -> int:
    """Element type of a quantiser's output: its zero point's, else the ``output_dtype`` attribute, else uint8."""
    if zero and ctx.info(zero) is not None and ctx.info(zero).elem_type:
        return ctx.info(zero).elem_type
    return int(attributes(node).get("output_dtype", 0)) or TensorProto.UINT8


def saturation_mask(ctx, x: str, scale: str, zero: str, elem_type: int, axis: int | None) -> str:
    """Where float ``x`` lies in the representable range of quantiser (scale, zero point), ends included: a 0/1
    tensor of x's type (the derivative of the clip to that range)."""
    qmin, qmax = integer_range(elem_type)
    s, z = _param(ctx, scale, x, axis, 1.0), _param(ctx, zero, x, axis, 0.0)
    s_value, z_value = ctx.const_value(s), ctx.const_value(z)
    if s_value is not None and z_value is not None:
        dtype = ctx.grad_dtype(x)
        low = ctx.const(((qmin - z_value.astype(np.float64)) * s_value).astype(dtype), hint="qlow")
        high = ctx.const(((qmax - z_value.astype(np.float64)) * s_value).astype(dtype), hint="qhigh")
    else:
        low = ctx.node("Mul", [ctx.node("Sub", [ctx.scalar(qmin, s), z]), s], hint="qlow")
        high = ctx.node("Mul", [ctx.node("Sub", [ctx.scalar(qmax, s), z]), s], hint="qhigh")
    inside = ctx.node("And", [ctx.node("GreaterOrEqual", [x, low]), ctx.node("LessOrEqual", [x, high])],
                      hint="in_range")
    return ctx.node("Cast", [inside], hint="in_range", to=ctx.elem_type(x))


def _check_axis_attrs(ctx, node) -> int:
    attrs = attributes(node)
    if int(attrs.get("block_size", 0) or 0):
        raise ctx.unsupported("blocked quantisation (block_size) is not supported")
    return int(attrs.get("axis", 1))


@register("QuantizeLinear", inputs=(0,))
def quantize_linear(ctx, node, grads, needed):
    x = node.input[0]
    scale, zero = node.input[1], node.input[2] if len(node.input) > 2 else ""
    axis = _check_axis_attrs(ctx, node)
    mask = saturation_mask(ctx, x, scale, zero, _quantised_type(ctx, zero, node), axis)
    grad = ctx.node("Mul", [grads[0], mask], hint="ste")
    if _scaling(ctx):
        grad = ctx.node("Div", [grad, _param(ctx, scale, x, axis, 1.0)], hint="ste")
    return [ctx.like(grad, x)]


@register("DequantizeLinear", inputs=(0,))
def dequantize_linear(ctx, node, grads, needed):
    q = node.input[0]
    axis = _check_axis_attrs(ctx, node)
    if not _scaling(ctx):
        return [ctx.like(grads[0], q)]
    return [ctx.like(ctx.node("Mul", [grads[0], _param(ctx, node.input[1], q, axis, 1.0)], hint="dq_vjp"), q)]


@register("DynamicQuantizeLinear", inputs=(0,), outputs=(0,))
def dynamic_quantize_linear(ctx, node, grads, needed):
    x = node.input[0]
    if not _scaling(ctx):
        return [ctx.like(grads[0], x)]
    return [ctx.like(ctx.node("Div", [grads[0], node.output[1]], hint="dq_ste"), x)]


# ----------------------------------------------------------------------------------------------------------------
# QLinear operators: dequantise, differentiate the float operator, straight-through on the requantisation


def _dequantised(ctx, value: str, scale: str, zero: str, axis: int) -> str:
    """The float value of a quantised tensor: a constant when value, scale and zero point are constants (weights;
    then the float rules can read it), else a DequantizeLinear node."""
    v, s = ctx.const_value(value), ctx.const_value(scale)
    z = ctx.const_value(zero) if zero else np.asarray(0)
    if v is not None and s is not None and z is not None:
        s, z = np.asarray(s, np.float64), np.asarray(z, np.float64)
        if s.ndim == 1 and s.size > 1:
            shape = [1] * v.ndim
            shape[axis % v.ndim] = s.size
            s, z = s.reshape(shape), (z.reshape(shape) if z.size > 1 else z)
        return ctx.const(((v.astype(np.float64) - z) * s).astype(np.float32), hint="dequantised")
    inputs = [value, scale] + ([zero] if zero else [])
    return ctx.like(ctx.node("DequantizeLinear", inputs, hint="dequantised", axis=axis), value)


def float_twin(ctx, node, float_op: str, float_inputs: list[str], attrs: dict, grad: str,
               output_q: tuple[str, str] | None, data: dict[int, tuple[int, str, int]]) -> list:
    """The straight-through gradient of a quantised operator through its float twin.

    ``float_inputs``: the float operator's inputs (dequantised); ``output_q``: (scale, zero point) of the
    quantised output, or None for a float output; ``data``: float input position -> (position of the quantised
    input in ``node``, its scale, its quantisation axis). Emits the float operator (pruned if no rule reads it),
    scales and masks the incoming gradient, calls the float operator's rule, and returns the gradients of the
    quantised inputs in ``node``'s input order.
    """
    y_float = ctx.like(ctx.node(float_op, float_inputs, hint=f"twin_{float_op}", **attrs), node.output[0])
    g = grad
    if output_q is not None and _scaling(ctx):
        scale, zero = output_q
        mask = saturation_mask(ctx, y_float, scale, zero, _quantised_type(ctx, zero, node), 1)
        g = ctx.node("Mul", [g, mask], hint="ste")
        g = ctx.node("Div", [g, _param(ctx, scale, y_float, 1, 1.0)], hint="ste")
    ctx.like(g, y_float)
    twin = helper.make_node(float_op, float_inputs, [y_float], name=node.name or node.output[0], **attrs)
    rule = ctx.extra.get("table", GRADIENT).get(float_op)
    if rule is None:
        raise ctx.unsupported(f"no rule for its float operator {float_op} in rule set {ctx.rules!r}")
    needed = [i in data and ctx.const_value(float_inputs[i]) is None for i in range(len(float_inputs))]
    results = list(rule.fn(ctx, twin, [g], needed)) + [None] * len(float_inputs)
    out: list = [None] * len(node.input)
    for i, (position, scale, axis) in data.items():
        if not needed[i] or results[i] is None:
            continue
        quantised = node.input[position]
        grad_q = results[i]
        if _scaling(ctx) and scale:
            grad_q = ctx.node("Mul", [grad_q, _param(ctx, scale, quantised, axis, 1.0)], hint="twin_vjp")
        out[position] = ctx.like(grad_q, quantised)
    return out


def _triple(node, start: int) -> tuple[str, str, str]:
    get = (lambda i: node.input[i] if i < len(node.input) else "")
    return get(start), get(start + 1), get(start + 2)


def _bias(ctx, node, bias: str, scale_a: str, scale_b: str) -> str | None:
    """The float value of an int32 bias quantised with scale ``scale_a * scale_b`` and zero point 0."""
    if not bias:
        return None
    b, sa, sb = ctx.const_value(bias), ctx.const_value(scale_a), ctx.const_value(scale_b)
    if b is None or sa is None or sb is None:
        raise ctx.unsupported("a bias that is not a constant")
    return ctx.const((b.astype(np.float64) * np.asarray(sa, np.float64) * np.asarray(sb, np.float64).reshape(-1))
                     .astype(np.float32), hint="bias")


@register("QLinearConv", inputs=(0,))
def qlinear_conv(ctx, node, grads, needed):
    x, xs, xz = _triple(node, 0)
    w, ws, wz = _triple(node, 3)
    inputs = [_dequantised(ctx, x, xs, xz, 1), _dequantised(ctx, w, ws, wz, 0)]
    bias = _bias(ctx, node, node.input[8] if len(node.input) > 8 else "", xs, ws)
    if bias is not None:
        inputs.append(bias)
    return float_twin(ctx, node, "Conv", inputs, attributes(node), grads[0], (node.input[6], node.input[7]),
                      {0: (0, xs, 1), 1: (3, ws, 0)})


@register("QLinearMatMul", inputs=(0, 3))
def qlinear_matmul(ctx, node, grads, needed):
    a, as_, az = _triple(node, 0)
    b, bs, bz = _triple(node, 3)
    inputs = [_dequantised(ctx, a, as_, az, -2), _dequantised(ctx, b, bs, bz, -1)]
    return float_twin(ctx, node, "MatMul", inputs, {}, grads[0], (node.input[6], node.input[7]),
                      {0: (0, as_, -2), 1: (3, bs, -1)})


@register("com.microsoft.QGemm", inputs=(0, 3))
def qgemm(ctx, node, grads, needed):
    a, as_, az = _triple(node, 0)
    b, bs, bz = _triple(node, 3)
    attrs = {k: v for k, v in attributes(node).items() if k in ("alpha", "transA", "transB")}
    b_axis = 0 if attrs.get("transB") else 1
    inputs = [_dequantised(ctx, a, as_, az, 1), _dequantised(ctx, b, bs, bz, b_axis)]
    bias = _bias(ctx, node, node.input[6] if len(node.input) > 6 else "", as_, bs)
    if bias is not None:
        inputs.append(bias)
    quantised = len(node.input) > 7 and bool(node.input[7])
    output_q = (node.input[7], node.input[8] if len(node.input) > 8 else "") if quantised else None
    return float_twin(ctx, node, "Gemm", inputs, attrs, grads[0], output_q, {0: (0, as_, 1), 1: (3, bs, b_axis)})


@register("com.microsoft.QLinearAdd", "com.microsoft.QLinearMul", inputs=(0, 3))
def qlinear_binary(ctx, node, grads, needed):
    a, as_, az = _triple(node, 0)
    b, bs, bz = _triple(node, 3)
    inputs = [_dequantised(ctx, a, as_, az, 1), _dequantised(ctx, b, bs, bz, 1)]
    for name, source in zip(inputs, (a, b)):
        ctx.like(name, source)
    float_op = "Add" if node.op_type == "QLinearAdd" else "Mul"
    return float_twin(ctx, node, float_op, inputs, {}, grads[0], (node.input[6], node.input[7]),
                      {0: (0, as_, 1), 1: (3, bs, 1)})


_UNARY = {"QLinearGlobalAveragePool": "GlobalAveragePool", "QLinearAveragePool": "AveragePool",
          "QLinearSigmoid": "Sigmoid", "QLinearLeakyRelu": "LeakyRelu", "QLinearSoftmax": "Softmax"}


@register(*(f"com.microsoft.{op}" for op in _UNARY), inputs=(0,))
def qlinear_unary(ctx, node, grads, needed):
    attrs = attributes(node)
    if attrs.pop("channels_last", 0):
        raise ctx.unsupported("channels_last layout")
    if node.op_type == "QLinearSoftmax" and int(attrs.pop("opset", 13)) < 13:
        raise ctx.unsupported("the opset < 13 (2-D) Softmax semantics")
    x, xs, xz = _triple(node, 0)
    inputs = [_dequantised(ctx, x, xs, xz, 1)]
    ctx.like(inputs[0], x)
    output_q = (node.input[3], node.input[4] if len(node.input) > 4 else "")
    return float_twin(ctx, node, _UNARY[node.op_type], inputs, attrs, grads[0], output_q, {0: (0, xs, 1)})


def _shifted(ctx, value: str, zero: str, axis: int) -> str:
    """``value - zero`` as float32 (a constant when both are constants)."""
    v = ctx.const_value(value)
    z = ctx.const_value(zero) if zero else np.asarray(0)
    if v is not None and z is not None:
        z = np.asarray(z, np.float64)
        if z.ndim == 1 and z.size > 1:
            shape = [1] * v.ndim
            shape[axis % v.ndim] = z.size
            z = z.reshape(shape)
        return ctx.const((v.astype(np.float64) - z).astype(np.float32), hint="shifted")
    out = ctx.node("Cast", [value], hint="shifted", to=TensorProto.FLOAT)
    if zero:
        out = ctx.node("Sub", [out, _param(ctx, zero, value, axis, 0.0)], hint="shifted")
    return ctx.like(out, value)


@register("ConvInteger", inputs=(0,))
def conv_integer(ctx, node, grads, needed):
    get = (lambda i: node.input[i] if i < len(node.input) else "")
    inputs = [_shifted(ctx, get(0), get(2), 1), _shifted(ctx, get(1), get(3), 0)]
    return float_twin(ctx, node, "Conv", inputs, attributes(node), grads[0], None, {0: (0, "", 1), 1: (1, "", 0)})


@register("MatMulInteger", inputs=(0, 1))
def matmul_integer(ctx, node, grads, needed):
    get = (lambda i: node.input[i] if i < len(node.input) else "")
    inputs = [_shifted(ctx, get(0), get(2), -2), _shifted(ctx, get(1), get(3), -1)]
    return float_twin(ctx, node, "MatMul", inputs, {}, grads[0], None, {0: (0, "", -2), 1: (1, "", -1)})
