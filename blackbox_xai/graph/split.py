"""Split a model at an intermediate tensor into a body (input -> tensor) and a head (tensor -> outputs).

The cut is validated rather than assumed. Besides the cut tensor, a head may need tensors that the body computes
and that do not flow through the cut: a residual connection that skips over it, a ``Shape(x)`` taken before it,
the raw input itself. ``onnx.utils.Extractor`` silently drops such dependencies and yields heads that fail or
compute something else; :func:`split` finds every one of them ("crossing" tensors), makes them extra body
outputs and extra head inputs, and checks that each part reads only what it has.

Constant subgraphs (weights made by ``Constant``/``ConstantOfShape``...) that the head needs are copied into the
head rather than passed across; initializers go to whichever part uses them (both if both do).
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

from onnx import GraphProto, ModelProto, NodeProto, ValueInfoProto, helper

from ..errors import ModelError, ParameterError
from .analysis import (
    Runner,
    TensorInfo,
    ancestor_nodes,
    constant_tensors,
    depends_on_input,
    info_from_value,
    node_inputs,
    producers,
    real_input_names,
    real_inputs,
    tensor_info,
    topological_order,
)
from .quantised import materialise

__all__ = ["Split", "split", "cut_dependencies"]


class Split(NamedTuple):
    """The two halves of a model. Run ``body`` on the model inputs; feed its outputs, by name, to ``head``.

    ``body`` outputs the cut tensor(s) then ``crossing``; ``head`` takes the same names as inputs, in the same
    order, and returns the original outputs.
    """

    body: ModelProto
    head: ModelProto
    crossing: list[str]


def cut_dependencies(model: ModelProto, tensors: str | Sequence[str]) -> tuple[list[NodeProto], list[str]]:
    """The head's nodes and its crossing tensors for a cut at ``tensors``.

    Walking back from the outputs and stopping at the cut: a node belongs to the head when it depends on the
    cut, or when it is a deterministic constant (it is then copied). Any other tensor the head reads depends on
    the model input along a path that avoids the cut: it crosses.

    Returns (head nodes in topological order, crossing tensor names in the order their producers run).
    """
    cuts = _check_cuts(model, tensors)
    order = topological_order(model)
    position = {name: i for i, node in enumerate(order) for name in node.output if name}
    downstream = set(cuts)
    for node in order:
        if any(name in downstream for name in node_inputs(node)):
            downstream.update(name for name in node.output if name)
    constant = constant_tensors(model)
    inputs = set(real_input_names(model))
    head: set[int] = set()
    crossing: set[str] = set()
    stack = [output.name for output in model.graph.output]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or name in cuts:
            continue
        seen.add(name)
        index = position.get(name)
        if index is None:
            if name in inputs:
                crossing.add(name)  # the head reads a model input directly
            continue  # initializers are copied
        if name in downstream or name in constant:
            if index not in head:
                head.add(index)
                stack.extend(node_inputs(order[index]))
        else:
            crossing.add(name)
    nodes = [node for i, node in enumerate(order) if i in head]
    ordered = sorted(crossing, key=lambda name: (position.get(name, -1), name))
    return nodes, ordered


def split(
    model: ModelProto,
    tensor: str | Sequence[str],
    run: Runner | None = None,
    batch_dim: str | None = "N",
) -> Split:
    """Split ``model`` at ``tensor`` into a body and a head.

    Parameters
    ----------
    model : the model (not modified). Graph inputs that are initializers (old IR) are treated as weights.
    tensor : the cut: a tensor name (or several) computed from the model input; the float value of a QOperator
        activation ``q`` is cut as ``q + "/dequantized"`` (:func:`~blackbox_xai.graph.quantised.materialise`).
    run : optional ``run(model, feeds)`` for shapes that shape inference cannot find (see
        :func:`~blackbox_xai.graph.analysis.tensor_info`); without it such head inputs are typed by element
        type only, or left untyped.
    batch_dim : name of the symbolic batch dimension given to the head's inputs and outputs where the model fixes
        the batch (dimension 0 of floating tensors of rank >= 2 that equals the input's batch). None keeps the
        inferred shapes as they are. A head whose graph hard-codes the batch (Reshape to (1, ...)) still runs one
        sample at a time; see :func:`~blackbox_xai.graph.batch.make_batch_dynamic`.

    Returns
    -------
    :class:`Split` ``(body, head, crossing)``.

    Raises
    ------
    ParameterError : the tensor is unknown, a graph input, or does not depend on the input.
    ModelError : a part would read a tensor it does not have (a bug; reported rather than returned).
    """
    model = materialise(model, [tensor] if isinstance(tensor, str) else tensor)  # QOperator float activations
    cuts = _check_cuts(model, tensor)
    head_nodes, crossing = cut_dependencies(model, cuts)
    boundary = cuts + crossing
    body_nodes = ancestor_nodes(model, boundary)
    infos = tensor_info(model, boundary, run=run)
    graph = model.graph
    inputs = {value.name: value for value in real_inputs(model)}
    input_batch = _input_batch(model)
    dependent = depends_on_input(model)

    body_reads = _reads(body_nodes) | set(boundary)
    body_inputs = [inputs[name] for name in inputs if name in body_reads]
    body_outputs = [_typed(name, infos.get(name), None, None, dependent) for name in boundary]
    body = _make_part(model, "body", body_nodes, body_inputs, body_outputs, keep_value_info=True)

    head_inputs = [_typed(name, infos.get(name), input_batch, batch_dim, dependent) for name in boundary]
    head_outputs = []
    for output in graph.output:
        info = info_from_value(output)
        if output.type.HasField("tensor_type"):
            head_outputs.append(_typed(output.name, info, input_batch, batch_dim, dependent))
        else:
            head_outputs.append(output)
    head = _make_part(model, "head", head_nodes, head_inputs, head_outputs, keep_value_info=batch_dim is None)
    _validate(body, "body")
    _validate(head, "head")
    return Split(body, head, list(crossing))


def _check_cuts(model: ModelProto, tensors: str | Sequence[str]) -> list[str]:
    cuts = [tensors] if isinstance(tensors, str) else list(tensors)
    if not cuts:
        raise ParameterError("split needs at least one tensor to cut at")
    made_by = producers(model)
    inputs = real_input_names(model)
    dependent = depends_on_input(model)
    for name in cuts:
        if name in inputs:
            raise ParameterError(f"{name!r} is a model input: there is nothing before it to split off")
        if name not in made_by:
            raise ParameterError(f"model has no intermediate tensor {name!r}; see blackbox_xai.graph.candidate_layers")
        if name not in dependent:
            raise ParameterError(f"tensor {name!r} does not depend on the model input: it cannot be a cut")
    return cuts


def _input_batch(model: ModelProto) -> int | str | None:
    for value in real_inputs(model):
        shape = info_from_value(value).shape
        if shape:
            return shape[0]
    return None


def _typed(
    name: str,
    info: TensorInfo | None,
    input_batch: int | str | None,
    batch_dim: str | None,
    dependent: set[str],
) -> ValueInfoProto:
    """A value info for ``name`` with what is known of its type, dimension 0 made symbolic if it is the batch."""
    if info is None or not info.elem_type:
        return ValueInfoProto(name=name)
    shape = info.shape
    if (
        batch_dim is not None
        and shape
        and len(shape) >= 2
        and info.is_float
        and name in dependent
        and isinstance(input_batch, int)
        and shape[0] == input_batch
    ):
        shape = (batch_dim,) + tuple(shape[1:])
    return TensorInfo(name, info.elem_type, shape).value_info()


def _reads(nodes: Iterable[NodeProto]) -> set[str]:
    return {name for node in nodes for name in node_inputs(node)}


def _make_part(
    model: ModelProto,
    suffix: str,
    nodes: list[NodeProto],
    inputs: list[ValueInfoProto],
    outputs: list[ValueInfoProto],
    keep_value_info: bool,
) -> ModelProto:
    graph = model.graph
    reads = _reads(nodes) | {output.name for output in outputs}
    input_names = {value.name for value in inputs}
    produced = {name for node in nodes for name in node.output if name}
    part = GraphProto(name=f"{graph.name or 'graph'}_{suffix}", doc_string=graph.doc_string)
    part.node.extend(nodes)
    part.input.extend(inputs)
    part.output.extend(outputs)
    part.initializer.extend(t for t in graph.initializer if t.name in reads and t.name not in input_names)
    part.sparse_initializer.extend(
        t for t in graph.sparse_initializer if t.values.name in reads and t.values.name not in input_names
    )
    if keep_value_info:
        part.value_info.extend(v for v in graph.value_info if v.name in produced)
    result = helper.make_model(part, opset_imports=list(model.opset_import))
    result.ir_version = max(int(model.ir_version), 4)  # weights are no longer listed as graph inputs
    result.producer_name, result.producer_version = model.producer_name, model.producer_version
    result.domain, result.model_version, result.doc_string = model.domain, model.model_version, model.doc_string
    result.functions.extend(model.functions)
    result.metadata_props.extend(model.metadata_props)
    return result


def _validate(part: ModelProto, what: str) -> None:
    """Check that every node of ``part`` reads only tensors that its inputs, weights or earlier nodes provide."""
    graph = part.graph
    available = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    available |= {t.values.name for t in graph.sparse_initializer}
    for node in graph.node:
        for name in node_inputs(node):
            if name not in available:
                raise ModelError(
                    f"split produced an invalid {what}: node {node.name or node.op_type!r} reads {name!r}, "
                    "which the part does not have"
                )
        available.update(name for name in node.output if name)
    missing = [value.name for value in graph.output if value.name not in available]
    if missing:
        raise ModelError(f"split produced an invalid {what}: it cannot compute its outputs {missing}")
