"""Read-only analysis of an ONNX graph: order, producers and consumers, constants, input dependence, shapes.

Everything here works on the ``onnx`` protobuf alone. The one exception is the optional *probe* in
:func:`tensor_info`: when ``onnx.shape_inference`` leaves some shapes unknown, the caller may pass ``run``, a
callable that evaluates a model (see :mod:`blackbox_xai.model.runner` for one built on onnxruntime), and the
unknown tensors are measured in one run on zero inputs.

Conventions:

* A *real input* is a graph input that is not also an initializer. Old models (IR version 3) list every
  initializer among the graph inputs; those are weights, not inputs.
* A *constant* tensor does not depend on any real input and is deterministic: initializers, ``Constant``
  outputs, and the outputs of any node (``ConstantOfShape``, ``Reshape`` of a weight...) whose inputs are all
  constant, except random generators (``RandomNormal``...), whose outputs change from run to run.
* Node inputs include the names that a node's subgraphs (``If``/``Loop``/``Scan`` bodies) take from the
  enclosing graph, so that orderings and dependencies stay correct for control flow.
"""

from __future__ import annotations

import heapq
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence, Union

import numpy as np
import onnx
from onnx import GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto, helper, numpy_helper

from ..errors import ModelError, ParameterError
from .quantised import contrib_value_infos

log = logging.getLogger(__name__)

Graphish = Union[ModelProto, GraphProto]
Dim = Union[int, str, None]
#: ``run(model, feeds) -> {output name: array}``: evaluates a model on named inputs (all graph outputs).
Runner = Callable[[ModelProto, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]

RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
#: Protobuf sizes above this cannot be serialised in one message (2 GiB), with a margin for the graph itself.
PROTOBUF_LIMIT = 2**31 - 2**26


def graph_of(model: Graphish) -> GraphProto:
    """The main graph of a model (or the graph itself)."""
    return model.graph if isinstance(model, ModelProto) else model


# --------------------------------------------------------------------------------------------------------------
# Structure


def subgraph_references(node: NodeProto) -> list[str]:
    """Names that the subgraphs of ``node`` (If/Loop/Scan bodies) read from the enclosing scope."""
    names: list[str] = []
    for attribute in node.attribute:
        graphs = list(attribute.graphs)
        if attribute.HasField("g"):
            graphs.append(attribute.g)
        for sub in graphs:
            names.extend(_free_names(sub))
    return names


def _free_names(graph: GraphProto) -> list[str]:
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.values.name for t in graph.sparse_initializer}
    free: list[str] = []
    for node in graph.node:
        for name in list(node.input) + subgraph_references(node):
            if name and name not in defined and name not in free:
                free.append(name)
        defined.update(o for o in node.output if o)
    free.extend(o.name for o in graph.output if o.name not in defined and o.name not in free)
    return free


def node_inputs(node: NodeProto) -> list[str]:
    """The tensors a node reads: its non-empty inputs, then the outer names its subgraphs use."""
    names = [name for name in node.input if name]
    names.extend(name for name in subgraph_references(node) if name not in names)
    return names


def initializer_names(model: Graphish) -> set[str]:
    """Names of the initializers (dense and sparse) of the main graph."""
    graph = graph_of(model)
    return {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}


def real_inputs(model: Graphish) -> list[ValueInfoProto]:
    """Graph inputs that are not initializers (old IR versions list weights among the inputs)."""
    weights = initializer_names(model)
    return [value for value in graph_of(model).input if value.name not in weights]


def real_input_names(model: Graphish) -> list[str]:
    """Names of :func:`real_inputs`."""
    return [value.name for value in real_inputs(model)]


def producers(model: Graphish) -> dict[str, NodeProto]:
    """Map each tensor name to the node that produces it."""
    return {name: node for node in graph_of(model).node for name in node.output if name}


def consumers(model: Graphish) -> dict[str, list[NodeProto]]:
    """Map each tensor name to the nodes that read it (subgraph references included), in graph order."""
    result: dict[str, list[NodeProto]] = defaultdict(list)
    for node in graph_of(model).node:
        for name in node_inputs(node):
            if not result[name] or result[name][-1] is not node:
                result[name].append(node)
    return dict(result)


def topological_order(model: Graphish) -> list[NodeProto]:
    """The nodes in an order where every node comes after the producers of its inputs.

    The original order is kept wherever it is already valid (a stable Kahn sort). Names that no node produces
    (graph inputs, initializers, outer-scope names) count as available. Raises :class:`ModelError` on a cycle.
    """
    nodes = list(graph_of(model).node)
    made_by = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    waiting = [0] * len(nodes)
    followers: dict[int, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        sources = {made_by[name] for name in node_inputs(node) if name in made_by}
        if i in sources:
            raise ModelError(f"node {node.name or node.op_type!r} reads its own output: the graph has a cycle")
        waiting[i] = len(sources)
        for source in sources:
            followers[source].append(i)
    ready = [i for i in range(len(nodes)) if waiting[i] == 0]
    heapq.heapify(ready)
    order: list[NodeProto] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for follower in followers[i]:
            waiting[follower] -= 1
            if waiting[follower] == 0:
                heapq.heappush(ready, follower)
    if len(order) != len(nodes):
        stuck = [nodes[i].name or nodes[i].op_type for i in range(len(nodes)) if waiting[i] > 0][:5]
        raise ModelError(f"the graph has a cycle (nodes {stuck} can never run)")
    return order


def ancestor_nodes(model: Graphish, tensors: Iterable[str], stop: Iterable[str] = ()) -> list[NodeProto]:
    """The nodes needed to compute ``tensors``, in topological order, not looking past the ``stop`` tensors."""
    order = topological_order(model)
    made_by = {name: i for i, node in enumerate(order) for name in node.output if name}
    stop_set = set(stop)
    needed: set[int] = set()
    stack = [name for name in tensors if name not in stop_set]
    seen = set(stack)
    while stack:
        index = made_by.get(stack.pop())
        if index is None or index in needed:
            continue
        needed.add(index)
        for name in node_inputs(order[index]):
            if name not in seen and name not in stop_set:
                seen.add(name)
                stack.append(name)
    return [node for i, node in enumerate(order) if i in needed]


def depends_on_input(model: Graphish, input_name: str | Sequence[str] | None = None) -> set[str]:
    """Names of the tensors whose value depends on ``input_name`` (default: on any real input), inputs included.

    Raises :class:`ParameterError` when the model has no such real input.
    """
    available = real_input_names(model)
    if input_name is None:
        starts = set(available)
    else:
        starts = {input_name} if isinstance(input_name, str) else set(input_name)
        missing = sorted(starts - set(available))
        if missing:
            raise ParameterError(f"model has no input {missing[0]!r}; its inputs are {available}")
    reached = set(starts)
    for node in topological_order(model):
        if any(name in reached for name in node_inputs(node)):
            reached.update(name for name in node.output if name)
    return reached


def constant_tensors(model: Graphish) -> set[str]:
    """Names of the tensors that are deterministic and independent of every real input.

    Initializers (also those listed as graph inputs), ``Constant`` outputs, and the outputs of nodes such as
    ``ConstantOfShape`` whose inputs are all constant. Outputs of random generators are not constant.
    """
    constant = initializer_names(model)
    for node in topological_order(model):
        if node.op_type in RANDOM_OPS:
            continue
        if all(name in constant for name in node_inputs(node)):
            constant.update(name for name in node.output if name)
    return constant


def all_tensor_names(model: Graphish) -> list[str]:
    """Every tensor name of the main graph: real inputs, initializers, then node outputs in topological order."""
    names = real_input_names(model) + sorted(initializer_names(model))
    names += [name for node in topological_order(model) for name in node.output if name]
    return names


def opset_version(model: ModelProto, domain: str = "") -> int | None:
    """The imported opset version of ``domain`` (the default ONNX domain unless told), or None."""
    for entry in model.opset_import:
        if (entry.domain or "ai.onnx") == (domain or "ai.onnx"):
            return int(entry.version)
    return None


# --------------------------------------------------------------------------------------------------------------
# Types and shapes


@dataclass(frozen=True)
class TensorInfo:
    """Element type and shape of a tensor as far as they are known.

    ``shape`` is None when even the rank is unknown; otherwise each dimension is an int, a symbolic name (str),
    or None (unknown). ``elem_type`` is an ``onnx.TensorProto`` data type (0 = unknown).
    """

    name: str
    elem_type: int
    shape: tuple[Dim, ...] | None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def dtype(self) -> np.dtype | None:
        """The numpy dtype, or None when the element type is unknown."""
        if not self.elem_type:
            return None
        return np.dtype(helper.tensor_dtype_to_np_dtype(self.elem_type))

    @property
    def is_float(self) -> bool:
        return self.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)

    @property
    def known(self) -> bool:
        """True when the element type, the rank and every dimension are known: a number or a symbolic name, but not
        one of the ``unk__<n>`` placeholders that shape inference invents for data-dependent sizes."""
        return (
            bool(self.elem_type)
            and self.shape is not None
            and all(d is not None and not (isinstance(d, str) and d.startswith("unk__")) for d in self.shape)
        )

    def value_info(self, name: str | None = None) -> ValueInfoProto:
        """A ``ValueInfoProto`` with this type (unknown dimensions left blank)."""
        shape = None if self.shape is None else [d if d is not None else "" for d in self.shape]
        value = helper.make_tensor_value_info(name or self.name, self.elem_type or TensorProto.UNDEFINED, shape)
        if shape is not None:  # helper turns "" into dim_param ""; leave such dims empty
            for dim in value.type.tensor_type.shape.dim:
                if dim.HasField("dim_param") and not dim.dim_param:
                    dim.ClearField("dim_param")
        return value


def info_from_value(value: ValueInfoProto) -> TensorInfo:
    """TensorInfo of a ``ValueInfoProto`` (non-tensor types give an unknown element type and shape)."""
    if not value.type.HasField("tensor_type"):
        return TensorInfo(value.name, 0, None)
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return TensorInfo(value.name, tensor.elem_type, None)
    dims: list[Dim] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return TensorInfo(value.name, tensor.elem_type, tuple(dims))


def _skeleton(model: ModelProto) -> ModelProto:
    """A copy small enough for shape inference: initializers over 1 MB become external references to nothing
    (shape inference reads only their type and dims)."""
    skeleton = ModelProto()
    _copy_without_initializers(model, skeleton)
    for tensor in model.graph.initializer:
        light = skeleton.graph.initializer.add()
        if tensor.ByteSize() < 2**20:
            light.CopyFrom(tensor)
            continue
        light.name, light.data_type = tensor.name, tensor.data_type
        light.dims.extend(tensor.dims)
        light.data_location = TensorProto.EXTERNAL
        entry = light.external_data.add()
        entry.key, entry.value = "location", "__shape_inference_only__"
    return skeleton


def _copy_without_initializers(model: ModelProto, target: ModelProto) -> None:
    """Copy every field of ``model`` into ``target`` except the main graph's initializers."""
    _copy_fields(model, target, skip=("graph",))
    _copy_fields(model.graph, target.graph, skip=("initializer",))


def _copy_fields(source, target, skip: tuple[str, ...]) -> None:
    for field, value in source.ListFields():
        if field.name in skip:
            continue
        if _repeated(field):
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 5.28; ``label`` is gone from newer upb builds
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def infer_shapes(model: ModelProto) -> dict[str, TensorInfo]:
    """Types and shapes of the tensors as ``onnx.shape_inference`` (with data propagation) finds them.

    Includes the graph inputs and outputs, initializers and ``Constant`` outputs. Inference errors are logged
    and what the model itself declares is returned.
    """
    inferred = model
    try:
        skeleton = inferred = onnx.shape_inference.infer_shapes(_skeleton(model), strict_mode=False, data_prop=True)
        for _ in range(len(model.graph.node)):  # com.microsoft QLinear ops (graph/quantised.py), a layer a round
            if not (extra := contrib_value_infos(inferred.graph)):
                break
            skeleton.graph.value_info.extend(extra)
            inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
    except Exception as error:  # onnx raises InferenceError, ValidationError, RuntimeError...
        log.warning("onnx shape inference failed (%s); using the shapes the model declares", error)
    graph = inferred.graph
    infos: dict[str, TensorInfo] = {}
    for tensor in model.graph.initializer:
        infos[tensor.name] = TensorInfo(tensor.name, tensor.data_type, tuple(int(d) for d in tensor.dims))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.HasField("t"):
                    dims = tuple(int(d) for d in attribute.t.dims)
                    infos[node.output[0]] = TensorInfo(node.output[0], attribute.t.data_type, dims)
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        info = info_from_value(value)
        old = infos.get(value.name)
        if old is None or _better(info, old):
            infos[value.name] = info
    return infos


def _better(new: TensorInfo, old: TensorInfo) -> bool:
    def score(info: TensorInfo) -> tuple[int, int]:
        known_dims = -1 if info.shape is None else sum(d is not None for d in info.shape)
        return (bool(info.elem_type) + (info.shape is not None), known_dims)

    return score(new) > score(old)


def tensor_info(
    model: ModelProto,
    names: Iterable[str] | None = None,
    run: Runner | None = None,
    feeds: Mapping[str, np.ndarray] | None = None,
) -> dict[str, TensorInfo]:
    """Types and shapes of tensors: shape inference first, then, if ``run`` is given, one probe run for those
    that inference leaves unknown.

    Parameters
    ----------
    model : the model.
    names : the tensors of interest (default: every tensor). Only these are probed.
    run : optional ``run(model, feeds) -> {name: array}`` (e.g. :func:`blackbox_xai.model.runner.onnxruntime_runner`).
        Without it, unknown shapes stay unknown and nothing outside ``onnx`` is used.
    feeds : inputs for the probe; default zeros of each real input's shape, with batch 2 for a symbolic batch
        dimension (retried with 1), so that probed batch dimensions come back symbolic, and 1 for any other
        unknown dimension. Probed shapes are otherwise those of this particular input.

    Returns
    -------
    dict mapping each known tensor name to its :class:`TensorInfo` (all tensors, not only ``names``).
    """
    infos = infer_shapes(model)
    wanted = list(names) if names is not None else all_tensor_names(model)
    unknown = [name for name in wanted if name not in infos or not infos[name].known]
    graph_inputs = set(real_input_names(model))
    unknown = [name for name in unknown if name not in graph_inputs]
    if not unknown or run is None:
        return infos
    probed = _probe(model, unknown, run, feeds)
    for name, info in probed.items():
        infos[name] = info
    return infos


def _probe(
    model: ModelProto, names: list[str], run: Runner, feeds: Mapping[str, np.ndarray] | None
) -> dict[str, TensorInfo]:
    exposed = with_outputs(model, names)
    inputs = real_inputs(model)
    symbolic = {v.name: info_from_value(v).shape for v in inputs}
    attempts: list[tuple[dict[str, np.ndarray], int | None]] = []
    if feeds is not None:
        attempts.append((dict(feeds), None))
    else:
        for batch in (2, 1):
            attempts.append(({v.name: _zeros(info_from_value(v), batch) for v in inputs}, batch))
    last_error: Exception | None = None
    for attempt, batch in attempts:
        try:
            outputs = run(exposed, attempt)
        except Exception as error:  # the runner's own exception types
            last_error = error
            continue
        batch_name = next(
            (shape[0] for shape in symbolic.values() if shape and isinstance(shape[0], str)), None
        ) if batch == 2 else None
        dependent = depends_on_input(model) if batch_name else set()
        result: dict[str, TensorInfo] = {}
        for name in names:
            if name not in outputs:
                continue
            array = np.asarray(outputs[name])
            dims: list[Dim] = list(array.shape)
            if batch_name and dims and dims[0] == 2 and name in dependent:
                dims[0] = batch_name
            elem_type = helper.np_dtype_to_tensor_dtype(array.dtype) if array.dtype != object else 0
            result[name] = TensorInfo(name, elem_type, tuple(dims))
        return result
    log.warning("probe run for unknown shapes failed: %s", last_error)
    return {}


def with_outputs(model: ModelProto, names: Iterable[str], infos: Mapping[str, TensorInfo] | None = None
                 ) -> ModelProto:
    """A copy of ``model`` that also outputs the tensors ``names``, after its own outputs (not repeated), typed
    from ``infos`` where they give an element type, else untyped (onnxruntime accepts that, ``onnx.checker`` does
    not). Behind :func:`~blackbox_xai.graph.expose.expose` and the probe; :class:`ParameterError` for an unknown name.
    """
    names = list(names)
    known = set(all_tensor_names(model))
    missing = [name for name in names if name not in known]
    if missing:
        raise ParameterError(f"model has no tensor {missing[0]!r}; see blackbox_xai.graph.candidate_layers")
    result = ModelProto()
    result.CopyFrom(model)
    present = {output.name for output in result.graph.output}
    for name in names:
        if name in present:
            continue
        present.add(name)
        info = (infos or {}).get(name)
        typed = info is not None and info.elem_type
        result.graph.output.append(info.value_info(name) if typed else ValueInfoProto(name=name))
    return result


def _zeros(info: TensorInfo, batch: int) -> np.ndarray:
    if info.shape is None or info.dtype is None:
        raise ModelError(f"cannot build a probe input for {info.name!r}: its type or rank is unknown; pass feeds")
    return np.zeros([batch if i == 0 and not isinstance(d, int) else (d if isinstance(d, int) else 1)
                     for i, d in enumerate(info.shape)], dtype=info.dtype)


def constant_value(model: Graphish, name: str) -> np.ndarray | None:
    """The value of an initializer or a ``Constant`` output named ``name`` (None if it is neither)."""
    graph = graph_of(model)
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and name in node.output:
            for attribute in node.attribute:
                if attribute.name == "value":
                    return numpy_helper.to_array(attribute.t)
                if attribute.name in ("value_ints", "value_int"):
                    return np.asarray(helper.get_attribute_value(attribute), dtype=np.int64)
                if attribute.name in ("value_floats", "value_float"):
                    return np.asarray(helper.get_attribute_value(attribute), dtype=np.float32)
    return None
