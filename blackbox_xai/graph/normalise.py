"""Bring old models to one opset (13 by default) and one layout of weights, so that later surgery sees one dialect.

Between opsets some operators changed meaning or signature, and code that edits or differentiates a graph must
not guess which version it reads:

* ``Softmax``/``LogSoftmax``/``Hardmax`` before 13 flatten the input to 2-D at ``axis`` and normalise over
  everything after it; from 13 they normalise over the one ``axis``.
* ``Clip`` before 11 takes ``min``/``max`` as attributes; from 11 as inputs.
* ``Squeeze``/``Unsqueeze``/``Split`` (and ``ReduceSum``) take ``axes``/``split`` as inputs from 13; the other
  reductions (``ReduceMean``...) from 18. ``Slice`` from 10, ``Pad`` from 11, ``TopK``'s k from 10, ``Dropout``'s
  ratio from 12; ``Upsample`` is replaced by ``Resize`` from 10.

:func:`normalise_opset` uses ``onnx.version_converter`` and, when it fails, rewrites these operators itself (and
only bumps the version of the others). :func:`move_initializers_out_of_inputs` removes weights from the graph
inputs of old (IR 3) models, where every initializer is also listed as an input.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, helper, numpy_helper

from ..errors import ModelError
from .analysis import PROTOBUF_LIMIT, TensorInfo, infer_shapes, initializer_names, opset_version

log = logging.getLogger(__name__)

__all__ = [
    "SEMANTIC_CHANGES",
    "move_initializers_out_of_inputs",
    "normalise_opset",
    "semantic_changes",
]

#: Operator -> the opset version at which its meaning or signature changed in a way that matters to us.
SEMANTIC_CHANGES: dict[str, int] = {
    "Softmax": 13, "LogSoftmax": 13, "Hardmax": 13,
    "Clip": 11, "Pad": 11, "Slice": 10, "TopK": 10, "Upsample": 10, "Dropout": 12,
    "Squeeze": 13, "Unsqueeze": 13, "Split": 13, "ReduceSum": 13,
    "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18, "ReduceProd": 18, "ReduceL1": 18, "ReduceL2": 18,
    "ReduceLogSum": 18, "ReduceLogSumExp": 18, "ReduceSumSquare": 18,
}  # fmt: skip

DEFAULT_DOMAINS = ("", "ai.onnx")


def semantic_changes(model: ModelProto, target: int = 13) -> list[str]:
    """The operators of ``model`` whose meaning or signature differs between its opset and ``target``."""
    source = opset_version(model)
    if source is None:
        return []
    low, high = sorted((source, target))
    ops = {node.op_type for node in model.graph.node if node.domain in DEFAULT_DOMAINS}
    return sorted(op for op in ops if op in SEMANTIC_CHANGES and low < SEMANTIC_CHANGES[op] <= high)


def move_initializers_out_of_inputs(model: ModelProto) -> ModelProto:
    """A copy of ``model`` whose graph inputs are only its real inputs (IR version raised to at least 4)."""
    result = ModelProto()
    result.CopyFrom(model)
    weights = initializer_names(result)
    if any(value.name in weights for value in result.graph.input):
        kept = [value for value in result.graph.input if value.name not in weights]
        del result.graph.input[:]
        result.graph.input.extend(kept)
    result.ir_version = max(int(result.ir_version), 4)
    return result


def normalise_opset(
    model: ModelProto, target: int = 13, use_converter: bool = True, move_initializers: bool = True
) -> ModelProto:
    """A copy of ``model`` with the default-domain opset ``target``.

    Parameters
    ----------
    model : the model (not modified).
    target : the opset version wanted (13 by default: the first where Softmax is per-axis and Squeeze/Unsqueeze/
        Split take their axes as inputs).
    use_converter : try ``onnx.version_converter`` first (default); otherwise, or when it fails, upgrade with this
        module's own rewrites of the operators in :data:`SEMANTIC_CHANGES`.
    move_initializers : also drop initializers from the graph inputs (:func:`move_initializers_out_of_inputs`).

    Raises :class:`ModelError` when the model cannot be converted (a downgrade the converter refuses, an
    operator that does not exist at ``target``).
    """
    source = opset_version(model)
    result = model
    if source is not None and source != target:
        converted, reason = None, "not tried"
        # onnx.version_converter turns a linear Upsample-9 into a Resize without the "asymmetric" coordinate
        # transformation (outputs change by up to ~1 on unit inputs): this module's rewrite is exact there.
        has_upsample = any(node.op_type == "Upsample" for node in model.graph.node)
        if use_converter and not has_upsample:
            converted, reason = _try_converter(model, target)
        if converted is None:
            if source > target:
                raise ModelError(f"cannot convert opset {source} down to {target}: {reason}")
            if use_converter:
                log.info("onnx.version_converter failed (%s); rewriting operators directly", reason)
            converted = _upgrade(model, source, target)
        result = converted
    if move_initializers:
        result = move_initializers_out_of_inputs(result)
    elif result is model:
        result = ModelProto()
        result.CopyFrom(model)
    result.ir_version = max(
        int(result.ir_version), helper.find_min_ir_version_for(list(result.opset_import), ignore_unknown=True)
    )
    return result


def _try_converter(model: ModelProto, target: int) -> tuple[ModelProto | None, str]:
    try:
        converted = onnx.version_converter.convert_version(model, target)
    except Exception as error:  # ConvertError, RuntimeError, IndexError... from the C++ converter
        return None, str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    problem = _unsupported_ops(converted, target)
    if problem:
        return None, problem
    if model.ByteSize() < PROTOBUF_LIMIT and _passes_checker(model) and not _passes_checker(converted):
        return None, "the converted model fails onnx.checker"
    return converted, ""


def _unsupported_ops(model: ModelProto, target: int) -> str:
    if opset_version(model) != target:
        return f"the result has opset {opset_version(model)}, not {target}"
    for node in model.graph.node:
        if node.domain not in DEFAULT_DOMAINS:
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, target, "")
        except Exception:  # SchemaError: unknown operator
            return f"operator {node.op_type} does not exist at opset {target}"
        if schema.deprecated:
            return f"operator {node.op_type} is deprecated at opset {target}"
    return ""


def _passes_checker(model: ModelProto) -> bool:
    try:
        onnx.checker.check_model(model)
    except Exception:  # ValidationError and friends
        return False
    return True


# --------------------------------------------------------------------------------------------------------------
# Direct rewrites (upgrades only)


class _Context:
    """What a rewrite needs: the graph being built, tensor types, and fresh names."""

    def __init__(self, model: ModelProto, source: int, target: int) -> None:
        self.model, self.source, self.target = model, source, target
        self.infos: dict[str, TensorInfo] = infer_shapes(model)
        graph = model.graph
        self.taken = {o for node in graph.node for o in node.output} | {v.name for v in graph.input}
        self.taken |= {t.name for t in graph.initializer}
        self.counter = 0

    def name(self, base: str) -> str:
        while True:
            self.counter += 1
            candidate = f"{base}__n{self.counter}"
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate

    def constant(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def dtype(self, tensor: str) -> np.dtype:
        info = self.infos.get(tensor)
        return info.dtype if info is not None and info.dtype is not None else np.dtype(np.float32)


Rewrite = Callable[[NodeProto, _Context], list[NodeProto]]


def _attrs(node: NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _remake(node: NodeProto, inputs: list[str], drop: tuple[str, ...], **extra: object) -> NodeProto:
    attributes = {k: v for k, v in _attrs(node).items() if k not in drop}
    attributes.update(extra)
    return helper.make_node(node.op_type, inputs, list(node.output), name=node.name, domain=node.domain, **attributes)


def _softmax(node: NodeProto, ctx: _Context) -> list[NodeProto]:
    axis = int(_attrs(node).get("axis", 1))
    data = node.input[0]
    info = ctx.infos.get(data)
    rank = info.rank if info is not None else None
    if rank is not None and axis % rank == rank - 1:
        return [_remake(node, [data], ("axis",), axis=-1)]
    flat, normed, shape = ctx.name(f"{data}_2d"), ctx.name(f"{node.output[0]}_2d"), ctx.name(f"{data}_shape")
    return [
        helper.make_node("Flatten", [data], [flat], axis=axis),
        helper.make_node(node.op_type, [flat], [normed], name=node.name, axis=1),
        helper.make_node("Shape", [data], [shape]),
        helper.make_node("Reshape", [normed, shape], [node.output[0]]),
    ]


def _clip(node: NodeProto, ctx: _Context) -> list[NodeProto]:
    attrs = _attrs(node)
    dtype = ctx.dtype(node.input[0])
    low = ctx.constant("clip_min", np.asarray(attrs["min"], dtype=dtype)) if "min" in attrs else ""
    high = ctx.constant("clip_max", np.asarray(attrs["max"], dtype=dtype)) if "max" in attrs else ""
    inputs = [node.input[0], low, high]
    while inputs[-1] == "":
        inputs.pop()
    return [_remake(node, inputs, ("min", "max"))]


def _ints_to_input(attribute: str) -> Rewrite:
    def rewrite(node: NodeProto, ctx: _Context) -> list[NodeProto]:
        attrs = _attrs(node)
        if attribute not in attrs:
            return [_remake(node, list(node.input), ())]
        values = ctx.constant(f"{node.op_type.lower()}_{attribute}", np.asarray(attrs[attribute], dtype=np.int64))
        return [_remake(node, [node.input[0], values], (attribute,))]

    return rewrite


def _pad(node: NodeProto, ctx: _Context) -> list[NodeProto]:
    attrs = _attrs(node)
    pads = attrs.get("pads", attrs.get("paddings"))
    inputs = [node.input[0], ctx.constant("pad_pads", np.asarray(pads, dtype=np.int64))]
    if "value" in attrs:
        inputs.append(ctx.constant("pad_value", np.asarray(attrs["value"], dtype=ctx.dtype(node.input[0]))))
    return [_remake(node, inputs, ("pads", "paddings", "value"))]


def _slice(node: NodeProto, ctx: _Context) -> list[NodeProto]:
    attrs = _attrs(node)
    inputs = [node.input[0]]
    for key in ("starts", "ends", "axes"):
        if key in attrs:
            inputs.append(ctx.constant(f"slice_{key}", np.asarray(attrs[key], dtype=np.int64)))
    return [_remake(node, inputs, ("starts", "ends", "axes"))]


def _topk(node: NodeProto, ctx: _Context) -> list[NodeProto]:
    k = ctx.constant("topk_k", np.asarray([_attrs(node)["k"]], dtype=np.int64))
    return [_remake(node, [node.input[0], k], ("k",))]


def _dropout(node: NodeProto, ctx: _Context) -> list[NodeProto]:
    attrs = _attrs(node)
    inputs = [node.input[0]]
    if "ratio" in attrs:
        inputs.append(ctx.constant("dropout_ratio", np.asarray(attrs["ratio"], dtype=ctx.dtype(node.input[0]))))
    return [_remake(node, inputs, ("ratio", "is_test", "consumed_inputs"))]


def _upsample(node: NodeProto, ctx: _Context) -> list[NodeProto]:
    attrs = _attrs(node)
    mode = attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if len(node.input) > 1:
        scales = node.input[1]
    else:
        scales = ctx.constant("upsample_scales", np.asarray(attrs["scales"], dtype=np.float32))
    if ctx.target < 11:
        return [helper.make_node("Resize", [node.input[0], scales], list(node.output), name=node.name, mode=mode)]
    extra = {"nearest_mode": "floor"} if mode == "nearest" else {}
    resize_mode = "linear" if mode in ("linear", "bilinear") else mode
    return [
        helper.make_node(
            "Resize", [node.input[0], "", scales], list(node.output), name=node.name, mode=resize_mode,
            coordinate_transformation_mode="asymmetric", **extra,
        )
    ]


REWRITES: dict[str, Rewrite] = {
    "Softmax": _softmax, "LogSoftmax": _softmax, "Hardmax": _softmax,
    "Clip": _clip, "Pad": _pad, "Slice": _slice, "TopK": _topk, "Dropout": _dropout, "Upsample": _upsample,
    "Squeeze": _ints_to_input("axes"), "Unsqueeze": _ints_to_input("axes"), "Split": _ints_to_input("split"),
}  # fmt: skip
for _op in SEMANTIC_CHANGES:
    if _op.startswith("Reduce"):
        REWRITES[_op] = _ints_to_input("axes")


def _upgrade(model: ModelProto, source: int, target: int) -> ModelProto:
    """Rewrite the operators whose meaning changed in (source, target] and set the opset to ``target``."""
    result = ModelProto()
    result.CopyFrom(model)
    ctx = _Context(result, source, target)
    nodes: list[NodeProto] = []
    unchecked: set[str] = set()
    for node in list(result.graph.node):
        changed = SEMANTIC_CHANGES.get(node.op_type)
        if node.domain in DEFAULT_DOMAINS and changed is not None and source < changed <= target:
            nodes.extend(REWRITES[node.op_type](node, ctx))
            continue
        if node.domain in DEFAULT_DOMAINS:
            _check_available(node, source, target, unchecked)
        nodes.append(node)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    for entry in result.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            entry.version = target
    if unchecked:
        log.debug("operators whose schema changed between opsets %d and %d (kept as they are): %s",
                  source, target, sorted(unchecked))
    return result


def _check_available(node: NodeProto, source: int, target: int, unchecked: set[str]) -> None:
    try:
        old = onnx.defs.get_schema(node.op_type, source, "")
        new = onnx.defs.get_schema(node.op_type, target, "")
    except Exception:  # SchemaError
        raise ModelError(f"operator {node.op_type} has no definition at opset {target}") from None
    if new.deprecated:
        raise ModelError(f"operator {node.op_type} is deprecated at opset {target}; cannot upgrade the model")
    if new.since_version != old.since_version:
        unchecked.add(node.op_type)

