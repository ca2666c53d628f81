"""Build one ONNX model that returns an output and its exact gradients (or a modified backward signal).

Stock onnxruntime has no gradient operators, so the backward graph is written with ordinary ONNX operators, one
rule per forward operator (:mod:`.rules`), and appended to the forward graph: the result runs in any
onnxruntime, on any provider, with the forward model's dynamic batch.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

from ..errors import ModelError, ParameterError
from ..graph.analysis import (
    TensorInfo,
    constant_tensors,
    infer_shapes,
    info_from_value,
    opset_version,
    real_input_names,
    topological_order,
)
from ..graph.normalise import move_initializers_out_of_inputs, normalise_opset
from ..graph.quantised import materialise
from .context import FLOAT_TYPES, Context, UnsupportedOpError
from .rules import NO_GRADIENT, RULE_SETS, rule_table
from .rules.quantisation import INTEGER_PASS_OPS, INTEGER_SOURCE_OPS

log = logging.getLogger(__name__)

__all__ = ["GRAD_PREFIX", "SEED", "build_gradient_model"]

SEED = "seed"
GRAD_PREFIX = "grad:"
#: ScatterElements with reduction="add" (max pooling, selections) needs opset 16.
MIN_OPSET = 16
DEFAULT_DOMAINS = ("", "ai.onnx")


def build_gradient_model(
    model: ModelProto,
    output: str,
    wrt: Sequence[str] | str,
    rules: str = "gradient",
    epsilon: float = 1e-6,
    alpha: float = 1.0,
    beta: float = 0.0,
    input_bounds: tuple[float, float] | None = None,
) -> ModelProto:
    """A model computing ``output`` and the backward signal of ``sum(seed * output)`` at each ``wrt`` tensor.

    Parameters
    ----------
    model : the forward model (not modified). Old opsets are normalised first (to 13, then to at least 16,
        which the backward graph needs); initializers listed as inputs are removed from the inputs.
    output : the forward tensor to differentiate, shape (N, ...) (e.g. the logits).
    wrt : the tensors to get gradients for: real inputs and/or intermediate tensors.
    rules : one of :data:`RULE_SETS`: ``"gradient"`` (exact vector-Jacobian products), ``"guided"`` (Guided
        Backprop), ``"deconvnet"``, ``"lrp-epsilon"``, ``"lrp-alphabeta"`` (layer-wise relevance propagation;
        the outputs then hold the relevance at each ``wrt`` tensor, starting from ``seed * output``).
    epsilon : LRP stabiliser (``z + epsilon * sign(z)``).
    alpha, beta : LRP alpha-beta weights (``alpha - beta = 1``, ``beta >= 0``).
    input_bounds : (lowest, highest) value of the model input: the first Conv/Gemm/MatMul uses the LRP z^B rule.

    Returns
    -------
    An ``onnx.ModelProto`` with inputs: the forward model's real inputs, then ``"seed"`` (the element type and
    shape of ``output``, batch dimension dynamic); outputs: ``output``, then ``"grad:" + name`` for each ``wrt``
    tensor (same shape as it).

    Raises
    ------
    UnsupportedOpError : an operator on the path from ``wrt`` to ``output`` has no rule in this rule set.
    ParameterError : bad names or parameters. ModelError : a model that cannot be normalised.
    """
    wrt = [wrt] if isinstance(wrt, str) else list(wrt)
    _check_parameters(rules, wrt, epsilon, alpha, beta, input_bounds)
    prepared = materialise(_prepare(model), wrt)  # the float value of a QOperator activation (graph/quantised.py)
    graph = prepared.graph
    order = topological_order(prepared)
    produced = {name for node in order for name in node.output if name}
    inputs = real_input_names(prepared)
    initializers = {t.name: t for t in graph.initializer}
    known = produced | set(inputs) | set(initializers)
    if output not in known:
        raise ParameterError(f"the model has no tensor {output!r} to differentiate")
    for name in wrt:
        if name not in known:
            raise ParameterError(f"the model has no tensor {name!r} to differentiate with respect to")
    constants = constant_tensors(prepared)
    fixed = [name for name in wrt if name in constants]
    if fixed:
        raise ParameterError(f"{fixed[0]!r} is a constant of the model (it depends on no input)")
    for name in [SEED] + [GRAD_PREFIX + name for name in wrt]:
        if name in known:
            raise ModelError(f"the model already has a tensor named {name!r}")

    infos = infer_shapes(prepared)
    table = rule_table(rules)
    reach, carrying, blocked = _reachable(order, wrt, table, infos)
    ancestors = _ancestors(order, output)
    active = [node for index, node in enumerate(order)
              if index in carrying and any(name in reach and name in ancestors for name in node.output if name)]
    for node in active:
        if op_key(node) not in table:
            raise UnsupportedOpError(op_key(node), node.name, rules=rules)
        if id(node) in blocked:
            raise UnsupportedOpError(op_key(node), node.name, "it consumes an integer tensor of a quantised graph "
                                     "and has no straight-through rule", rules)

    ctx = Context(infos, known | {SEED}, _LazyConstants(graph), opset_version(prepared) or MIN_OPSET, rules,
                  epsilon, alpha, beta)
    ctx.extra["table"] = table  # quantised operators differentiate their float twin with the same rule set
    seed_info = _seed_info(infos, output, prepared)
    ctx.infos[SEED] = seed_info
    ctx.extra["producers"] = {name: node for node in order for name in node.output if name}  # read by rules
    if input_bounds is not None and rules.startswith("lrp"):
        ctx.extra["box"], ctx.extra["box_path"] = _box_layers(order, inputs, wrt, input_bounds, ctx)

    contributions: dict[str, list[str]] = defaultdict(list)

    def total(name: str) -> str | None:
        parts = contributions.get(name)
        if not parts:
            return None
        if len(parts) > 1:
            summed = ctx.like(ctx.node("Sum", parts, hint="accumulate"), name)
            contributions[name] = [summed]
        return contributions[name][0]

    start = SEED if not rules.startswith("lrp") else ctx.like(ctx.node("Mul", [SEED, output], hint="relevance"), output)
    contributions[output].append(start)
    for node in reversed(active):
        ctx.current = node
        rule = table[op_key(node)]
        outputs = range(len(node.output)) if rule.outputs is None else rule.outputs
        grads = [total(name) if i in outputs and name and name in reach else None for i, name in enumerate(node.output)]
        if all(g is None for g in grads):
            continue
        for g, name in zip(grads, node.output):
            if g is not None:
                ctx.like(g, name)
        needed = [bool(name) and name in reach and (rule.inputs is None or i in rule.inputs)
                  for i, name in enumerate(node.input)]
        if not any(needed):
            continue
        results = list(rule.fn(ctx, node, grads, needed)) + [None] * len(node.input)
        for i, name in enumerate(node.input):
            if needed[i] and results[i] is not None:
                contributions[name].append(results[i])
    ctx.current = None

    result_outputs = [_value_info(prepared, infos, output, output)]
    for name in wrt:
        grad = total(name) if name in ancestors or name == output else None
        if grad is None:
            grad = ctx.zeros_like(name)
        ctx.node("Identity", [grad], outputs=[GRAD_PREFIX + name])
        result_outputs.append(_value_info(prepared, infos, name, GRAD_PREFIX + name))
    return _assemble(prepared, order, ctx, inputs, seed_info, result_outputs)


# --------------------------------------------------------------------------------------------------------------
# Preparation and checks


def _check_parameters(rules, wrt, epsilon, alpha, beta, input_bounds) -> None:
    if rules not in RULE_SETS:
        raise ParameterError(f"rules must be one of {RULE_SETS}, not {rules!r}")
    if not wrt:
        raise ParameterError("wrt names no tensor")
    if len(set(wrt)) != len(wrt):
        raise ParameterError(f"wrt names a tensor twice: {wrt}")
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ParameterError(f"epsilon must be a finite number >= 0, not {epsilon}")
    if rules == "lrp-alphabeta" and not (
        math.isfinite(alpha) and math.isfinite(beta) and beta >= 0 and abs(alpha - beta - 1.0) < 1e-9
    ):
        raise ParameterError(f"alpha-beta LRP needs alpha - beta = 1 and beta >= 0 (got {alpha}, {beta})")
    if input_bounds is not None:
        low, high = (float(v) for v in input_bounds)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ParameterError(f"input_bounds must be finite with lowest < highest, not {input_bounds}")


def _prepare(model: ModelProto) -> ModelProto:
    """Opset >= 13 semantics (Softmax per axis, Clip inputs...), then at least 16 (ScatterElements add)."""
    prepared = move_initializers_out_of_inputs(model)
    version = opset_version(prepared)
    if version is None:
        raise ModelError("the model imports no default-domain opset")
    if version < 13:
        # onnx.version_converter turns Upsample-9 into a Resize without coordinate_transformation_mode="asymmetric"
        # (so half_pixel): a different function. The package's own rewrite keeps the semantics.
        upsample = any(node.op_type == "Upsample" for node in prepared.graph.node)
        prepared = normalise_opset(prepared, 13, use_converter=not upsample)
    if (opset_version(prepared) or 0) < MIN_OPSET:
        for node in prepared.graph.node:  # RoiAlign-16 changed its default coordinate mode
            if node.op_type == "RoiAlign" and not any(a.name == "coordinate_transformation_mode" for a in node.attribute):
                node.attribute.append(helper.make_attribute("coordinate_transformation_mode", "output_half_pixel"))
        prepared = normalise_opset(prepared, MIN_OPSET, use_converter=False)
    return prepared


def op_key(node: NodeProto) -> str:
    """The rule-table key of a node: its op type, prefixed with ``domain.`` outside the default domain."""
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"


def _carries_gradient(infos: dict[str, TensorInfo], name: str) -> bool:
    info = infos.get(name)
    return info is None or not info.elem_type or info.elem_type in FLOAT_TYPES


def _reachable(order: list[NodeProto], wrt: list[str], table, infos) -> tuple[set[str], set[int], set[int]]:
    """Tensors that depend differentiably on the ``wrt`` tensors, the positions in ``order`` of the nodes
    that carry the dependence (some differentiable input depends on ``wrt``), and the ids of the nodes that
    consume such an integer tensor without a straight-through rule (an error if they are on the path).

    Integer tensors carry gradient only when a quantiser wrote them (straight-through, rules/quantisation.py) or
    a structural operator moved such a tensor."""
    reach = set(wrt)
    carrying: set[int] = set()
    blocked: set[int] = set()
    for index, node in enumerate(order):
        key = op_key(node)
        if key in NO_GRADIENT:
            continue
        rule = table.get(key)
        positions = range(len(node.input)) if rule is None or rule.inputs is None else rule.inputs
        reached = [node.input[i] for i in positions if i < len(node.input) and node.input[i] in reach]
        if not reached:
            continue
        carrying.add(index)
        integer_in = any(not _carries_gradient(infos, name) for name in reached)
        if integer_in and key not in INTEGER_PASS_OPS:
            blocked.add(id(node))
        straight = key in INTEGER_SOURCE_OPS or (integer_in and key in INTEGER_PASS_OPS) or id(node) in blocked
        outputs = range(len(node.output)) if rule is None or rule.outputs is None else rule.outputs
        reach.update(node.output[i] for i in outputs
                     if i < len(node.output) and node.output[i]
                     and (straight or _carries_gradient(infos, node.output[i])))
    return reach, carrying, blocked


def _ancestors(order: list[NodeProto], output: str) -> set[str]:
    """``output`` and every tensor it is computed from."""
    made_by = {name: node for node in order for name in node.output if name}
    seen = {output}
    stack = [output]
    while stack:
        node = made_by.get(stack.pop())
        if node is None:
            continue
        for name in node.input:
            if name and name not in seen:
                seen.add(name)
                stack.append(name)
    return seen


def _declared_info(model: ModelProto, infos: dict[str, TensorInfo], tensor: str) -> TensorInfo:
    """Type and shape of a tensor for a graph input or output of the gradient model.

    Shapes the forward model declares for its own inputs and outputs are kept; for other tensors only the element
    type and the rank from shape inference are used (onnx shape inference and onnxruntime can disagree on sizes,
    e.g. pools with ``ceil_mode``, and onnxruntime rejects inputs that contradict a declared size).
    """
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name == tensor and value.type.tensor_type.HasField("shape"):
            declared = info_from_value(value)
            if declared.elem_type:
                return declared
    info = infos.get(tensor)
    elem_type = info.elem_type if info is not None and info.elem_type else TensorProto.FLOAT
    if info is None or info.shape is None:
        return TensorInfo(tensor, elem_type, None)
    return TensorInfo(tensor, elem_type, tuple(d if isinstance(d, str) and not d.startswith("unk__") else None
                                               for d in info.shape))


def _seed_info(infos: dict[str, TensorInfo], output: str, model: ModelProto) -> TensorInfo:
    info = _declared_info(model, infos, output)
    shape = info.shape
    if shape:
        batch = "batch"
        for value in model.graph.input:
            dims = value.type.tensor_type.shape.dim
            if dims and dims[0].HasField("dim_param") and dims[0].dim_param:
                batch = dims[0].dim_param
                break
        shape = (shape[0] if isinstance(shape[0], str) else batch,) + tuple(shape[1:])
    return TensorInfo(SEED, info.elem_type, shape)


def _value_info(model: ModelProto, infos: dict[str, TensorInfo], tensor: str, name: str):
    """The declared type of ``tensor`` under ``name``; the gradient of an integer tensor is float32."""
    info = _declared_info(model, infos, tensor)
    elem = info.elem_type if name == tensor or info.elem_type in FLOAT_TYPES else TensorProto.FLOAT
    return TensorInfo(name, elem, info.shape).value_info(name)


class _LazyConstants:
    """Values of initializers and Constant outputs, converted to numpy on first use."""

    def __init__(self, graph) -> None:
        self._protos = {t.name: t for t in graph.initializer}
        self._nodes = {node.output[0]: node for node in graph.node if node.op_type == "Constant" and node.output}
        self._cache: dict[str, np.ndarray | None] = {}

    def get(self, name: str) -> np.ndarray | None:
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def _load(self, name: str) -> np.ndarray | None:
        if name in self._protos:
            return numpy_helper.to_array(self._protos[name])
        node = self._nodes.get(name)
        if node is None:
            return None
        for attribute in node.attribute:
            value = helper.get_attribute_value(attribute)
            if attribute.name == "value":
                return numpy_helper.to_array(value)
            if attribute.name in ("value_float", "value_floats"):
                return np.asarray(value, dtype=np.float32)
            if attribute.name in ("value_int", "value_ints"):
                return np.asarray(value, dtype=np.int64)
        return None


# --------------------------------------------------------------------------------------------------------------
# LRP z^B: the first weighted layers and the input bounds carried to them


def _box_layers(order, inputs, wrt, input_bounds, ctx: Context) -> tuple[dict, set[str]]:
    """Map the output name of each first Conv/Gemm/MatMul to the (low, high) bounds of its data input; also the
    outputs of the element-wise nodes between the input and those layers (input normalisation), through which
    relevance then passes unchanged: the box rule already works in their output's coordinates."""
    low, high = (np.asarray(float(v), dtype=np.float64) for v in input_bounds)
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {name: (low, high) for name in inputs if name in wrt}
    if not bounds:
        raise ParameterError("input_bounds applies to a real model input; wrt names none")
    layers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for node in order:
        carried = [i for i, name in enumerate(node.input) if name in bounds]
        if not carried:
            continue
        op = node.op_type
        if op in ("Conv", "Gemm", "MatMul") and len(carried) == 1:
            data = carried[0]
            if (op == "Conv" and data == 0) or (op in ("Gemm", "MatMul") and data in (0, 1)):
                layers[node.output[0]] = bounds[node.input[data]]
            continue
        if op in ("Identity", "Cast", "Dropout") or op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze") and all(b.ndim == 0 for b in bounds[node.input[0]]):
            bounds[node.output[0]] = bounds[node.input[0]]
        elif op in ("Add", "Sub", "Mul", "Div") and len(carried) == 1:
            other = ctx.const_value(node.input[1 - carried[0]])
            if other is None:
                continue
            lo, hi = bounds[node.input[carried[0]]]
            c = other.astype(np.float64)
            if op == "Add":
                ends = (lo + c, hi + c)
            elif op == "Sub":
                ends = (lo - c, hi - c) if carried[0] == 0 else (c - hi, c - lo)
            elif op == "Mul":
                ends = (lo * c, hi * c)
            elif carried[0] == 0:
                ends = (lo / c, hi / c)
            else:
                continue
            bounds[node.output[0]] = (np.minimum(*ends), np.maximum(*ends))
    if not layers:
        raise ParameterError("input_bounds: no Conv/Gemm/MatMul is fed by the input through element-wise affine "
                             "operators with constant operands")
    return layers, set(bounds) - set(inputs)


# --------------------------------------------------------------------------------------------------------------
# Assembly


def _assemble(prepared: ModelProto, order: list[NodeProto], ctx: Context, inputs: list[str], seed_info: TensorInfo,
              outputs) -> ModelProto:
    result = ModelProto()
    result.CopyFrom(prepared)
    graph = result.graph
    # forward nodes in topological order (the MaxPool rule may have given some an Indices output), then the
    # backward nodes in the order they were emitted
    del graph.node[:]
    graph.node.extend(list(order) + ctx.nodes)
    graph.initializer.extend(ctx.initializers)
    kept_inputs = [value for value in prepared.graph.input if value.name in inputs]
    del graph.input[:]
    graph.input.extend(kept_inputs + [seed_info.value_info(SEED)])
    del graph.output[:]
    graph.output.extend(outputs)
    _prune(result)
    return result


def _prune(model: ModelProto) -> None:
    """Drop the nodes and initializers that no output needs."""
    graph = model.graph
    made_by = {}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name:
                made_by[name] = index
    needed_nodes: set[int] = set()
    needed = {value.name for value in graph.output}
    stack = list(needed)
    while stack:
        index = made_by.get(stack.pop())
        if index is None or index in needed_nodes:
            continue
        needed_nodes.add(index)
        for name in graph.node[index].input:
            if name and name not in needed:
                needed.add(name)
                stack.append(name)
        for attribute in graph.node[index].attribute:  # names used inside subgraphs
            for sub in list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else []):
                for inner in sub.node:
                    for name in inner.input:
                        if name and name not in needed:
                            needed.add(name)
                            stack.append(name)
    nodes = [node for index, node in enumerate(graph.node) if index in needed_nodes]
    del graph.node[:]
    graph.node.extend(nodes)
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    values = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(values)
