"""Quantised graphs (onnxruntime.quantization) seen as float graphs: which tensors are quantised, where their
float value lives, and the shapes that ``onnx.shape_inference`` cannot find for ``com.microsoft`` operators.

onnxruntime.quantization writes three formats (GUIDE section 3):

* **QDQ**: ``QuantizeLinear``/``DequantizeLinear`` pairs around ordinary float operators; the float value of an
  activation is the output of its ``DequantizeLinear``;
* **QOperator**: ``QLinearConv``, ``QLinearMatMul`` and the ``com.microsoft`` ``QLinearAdd``, ``QLinearMul``,
  ``QLinearGlobalAveragePool``, ``QLinearSigmoid``, ``QLinearLeakyRelu``, ``QGemm``... with integer tensors
  between them; the float value of an activation is ``(q - zero_point) * scale`` with the scale and zero point
  of the operator that wrote it (:func:`quantisation_of`);
* **dynamic**: ``DynamicQuantizeLinear`` then ``ConvInteger``/``MatMulInteger`` and a float rescale.

This module only reads the ``onnx`` protobuf (no onnxruntime) and imports nothing from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Iterable

from onnx import GraphProto, ModelProto, NodeProto, TensorProto, helper

__all__ = [
    "CONTRIB_DOMAIN",
    "DEQUANTISED_SUFFIX",
    "QLINEAR_OPS",
    "QUANTISE_OPS",
    "contrib_value_infos",
    "dequantised_name",
    "is_quantised_graph",
    "materialise",
    "quantisation_of",
    "quantised_source",
]

CONTRIB_DOMAIN = "com.microsoft"

#: QOperator operators: name -> (positions of the quantised data inputs as (value, scale, zero point) triples,
#: positions of the output's (scale, zero point)). ``None`` for an output that may be float (QGemm without
#: y_scale).
QLINEAR_OPS: dict[str, tuple[tuple[tuple[int, int, int], ...], tuple[int, int] | None]] = {
    "QLinearConv": (((0, 1, 2), (3, 4, 5)), (6, 7)),
    "QLinearMatMul": (((0, 1, 2), (3, 4, 5)), (6, 7)),
    "QLinearAdd": (((0, 1, 2), (3, 4, 5)), (6, 7)),
    "QLinearMul": (((0, 1, 2), (3, 4, 5)), (6, 7)),
    "QLinearGlobalAveragePool": (((0, 1, 2),), (3, 4)),
    "QLinearAveragePool": (((0, 1, 2),), (3, 4)),
    "QLinearSigmoid": (((0, 1, 2),), (3, 4)),
    "QLinearLeakyRelu": (((0, 1, 2),), (3, 4)),
    "QLinearSoftmax": (((0, 1, 2),), (3, 4)),
    "QGemm": (((0, 1, 2), (3, 4, 5)), (7, 8)),
}

#: Operators whose output is an integer tensor holding a quantised float value.
QUANTISE_OPS = frozenset({"QuantizeLinear", "DynamicQuantizeLinear"}) | frozenset(QLINEAR_OPS)

_SAME_SHAPE = ("QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax")

#: The float value of a QOperator activation ``q`` is the tensor ``q + DEQUANTISED_SUFFIX`` (see :func:`materialise`).
DEQUANTISED_SUFFIX = "/dequantized"


def is_quantised_graph(graph: GraphProto) -> bool:
    """True when the graph holds quantisation operators (any of :data:`QUANTISE_OPS`, ``DequantizeLinear``,
    ``ConvInteger``, ``MatMulInteger``)."""
    ops = QUANTISE_OPS | {"DequantizeLinear", "ConvInteger", "MatMulInteger"}
    return any(node.op_type in ops for node in graph.node)


def quantisation_of(node: NodeProto) -> tuple[str, str] | None:
    """(scale, zero point) tensor names of the quantised output of ``node`` (QuantizeLinear or a QLinear
    operator), or None (a float output, or an operator that is not a quantiser). The zero point may be ""."""
    if node.op_type == "QuantizeLinear":
        return node.input[1], node.input[2] if len(node.input) > 2 else ""
    entry = QLINEAR_OPS.get(node.op_type)
    if entry is None or entry[1] is None:
        return None
    scale, zero = entry[1]
    if len(node.input) <= scale or not node.input[scale]:
        return None
    return node.input[scale], node.input[zero] if len(node.input) > zero else ""


def _broadcast(a: list, b: list) -> list:
    rank = max(len(a), len(b))
    a, b = [1] * (rank - len(a)) + a, [1] * (rank - len(b)) + b
    out = []
    for x, y in zip(a, b):
        out.append(y if x == 1 else x if y == 1 or x == y or y is None else x if isinstance(x, int) else y)
    return out


def _output_type(node: NodeProto, types: dict) -> tuple[int, list] | None:
    """(elem type, dims) of the first output of a contrib QLinear node from its inputs' types, or None."""
    def of(i):
        return types.get(node.input[i]) if i < len(node.input) and node.input[i] else None

    x = of(0)
    if x is None:
        return None
    elem, dims = x
    op = node.op_type
    if op in _SAME_SHAPE:
        return elem, list(dims)
    if op in ("QLinearAdd", "QLinearMul"):
        y = of(3)
        return None if y is None else (elem, _broadcast(list(dims), list(y[1])))
    if op == "QLinearGlobalAveragePool":
        last = any(a.name == "channels_last" and a.i for a in node.attribute)
        if len(dims) < 3:
            return None
        spatial = [1] * (len(dims) - 2)
        return elem, [dims[0]] + spatial + [dims[-1]] if last else [dims[0], dims[1]] + spatial
    if op == "QGemm":
        w = of(3)
        if w is None or len(dims) != 2 or len(w[1]) != 2:
            return None
        attrs = {a.name: a.i for a in node.attribute if a.type == a.INT}
        m = dims[1] if attrs.get("transA") else dims[0]
        n = w[1][0] if attrs.get("transB") else w[1][1]
        zero = of(8)
        quantised = len(node.input) > 7 and node.input[7]
        out_elem = (zero[0] if zero is not None else TensorProto.UINT8) if quantised else TensorProto.FLOAT
        return out_elem, [m, n]
    return None


def contrib_value_infos(graph: GraphProto) -> list:
    """Value infos for the outputs of ``com.microsoft`` QLinear nodes that ``graph`` (a shape-inferred graph)
    leaves untyped but whose inputs are typed; feed them back to shape inference to type what follows."""
    if not any(node.domain == CONTRIB_DOMAIN and node.op_type in QLINEAR_OPS for node in graph.node):
        return []
    types: dict[str, tuple[int, list]] = {}
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        tensor = value.type.tensor_type
        if value.type.HasField("tensor_type") and tensor.elem_type and tensor.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
            types[value.name] = (tensor.elem_type, dims)
    for tensor in graph.initializer:
        types[tensor.name] = (tensor.data_type, list(tensor.dims))
    result = []
    for node in graph.node:
        if node.domain != CONTRIB_DOMAIN or not node.output or node.output[0] in types:
            continue
        found = _output_type(node, types)
        if found is not None:
            elem, dims = found
            result.append(helper.make_tensor_value_info(node.output[0], elem, dims))
    return result


def dequantised_name(tensor: str) -> str:
    """The name under which the float value of the quantised activation ``tensor`` is listed and exposed."""
    return tensor + DEQUANTISED_SUFFIX


def quantised_source(graph: GraphProto, name: str) -> tuple[NodeProto, str, str, str] | None:
    """For a dequantised name (:func:`dequantised_name`) that the graph does not hold yet: (the QLinear node
    writing the quantised tensor, that tensor, its scale, its zero point); else None."""
    if not name.endswith(DEQUANTISED_SUFFIX):
        return None
    source = name[: -len(DEQUANTISED_SUFFIX)]
    for node in graph.node:
        if source in node.output[:1] and node.op_type in QLINEAR_OPS:
            found = quantisation_of(node)
            if found is not None:
                return node, source, found[0], found[1]
    return None


def materialise(model: ModelProto, names: Iterable[str]) -> ModelProto:
    """``model`` with the float value of each quantised activation named in ``names`` (dequantised names that the
    graph does not hold yet) made a real tensor: ``DequantizeLinear(q) -> name -> QuantizeLinear -> q'`` with the
    activation's own scale and zero point, and every reader of ``q`` reading ``q'`` instead. The round trip is
    exact (the requantised tensor equals ``q``), so the model computes the same values (a graph output ``q`` stays
    the original tensor); a cut or a gradient at ``name`` now sees a float activation. Returns ``model`` itself
    when nothing needs adding."""
    graph = model.graph
    existing = {out for node in graph.node for out in node.output} | {v.name for v in graph.input}
    wanted = [(name, quantised_source(graph, name)) for name in dict.fromkeys(names) if name not in existing]
    wanted = [(name, found) for name, found in wanted if found is not None]
    if not wanted:
        return model
    result = ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    for name, (_, source, scale, zero) in wanted:
        requantised = source + "/requantized"
        extra = [zero] if zero else []
        nodes = [helper.make_node("DequantizeLinear", [source, scale] + extra, [name], name=name),
                 helper.make_node("QuantizeLinear", [name, scale] + extra, [requantised], name=requantised)]
        for node in graph.node:
            for i, value in enumerate(node.input):
                if value == source:
                    node.input[i] = requantised
        position = next(i for i, node in enumerate(graph.node) if source in node.output)
        for offset, node in enumerate(nodes):
            graph.node.insert(position + 1 + offset, node)
    return result
