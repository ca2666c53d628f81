"""Make models exported with a fixed batch of 1 accept any batch, and check that they really do.

Many exports hard-code batch 1: in the declared input and output shapes and, worse, in ``Reshape`` shape
constants such as ``(1, 2048)`` or ``(1, 4, 34, 28, 28)``. :func:`make_batch_dynamic` declares a symbolic
batch dimension and rewrites the leading 1 of exactly those Reshape constants whose *data* depends on the model
input (a Reshape of a weight keeps its shape):

* ``(1, a, b, ...)`` without another -1 becomes ``(-1, a, b, ...)``: the batch is inferred from the size, which
  is right whatever the data's own dimension 0 is.
* ``(1, ..., -1, ...)`` becomes ``(0, ..., -1, ...)``: ``0`` copies the data's dimension 0 (the batch). With
  ``allowzero=1`` (opset 14+) a 0 would mean a literal zero, so the shape is computed instead as
  ``Concat(Shape(data)[0:1], (..., -1, ...))``.

Other hard-coded batches (Expand, Tile, Slice constants...) are not rewritten: :func:`verify_batch` compares a
batch run against per-sample runs, and :func:`dynamic_batch` returns the original model with a False flag when
they differ, so that the caller falls back to running one sample at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from onnx import ModelProto, NodeProto, ValueInfoProto, helper, numpy_helper

from ..errors import ModelError, ParameterError
from .analysis import (
    Runner,
    constant_value,
    depends_on_input,
    info_from_value,
    opset_version,
    real_input_names,
    real_inputs,
)

log = logging.getLogger(__name__)

__all__ = ["BatchCheck", "make_batch_dynamic", "verify_batch", "dynamic_batch", "rewritten_reshapes"]


def make_batch_dynamic(model: ModelProto, input_name: str | None = None, dim_name: str = "N") -> ModelProto:
    """A copy of ``model`` whose input ``input_name`` (default: the first real input) takes any batch.

    Dimension 0 of the input, and of the outputs that depend on it, becomes the symbolic ``dim_name`` (or the
    name the input already uses); value_info entries of input-dependent tensors lose a fixed dimension 0; Reshape
    shape constants that fix the batch are rewritten (see the module documentation). The result is not
    verified: use :func:`verify_batch` or :func:`dynamic_batch`.
    """
    result = ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    value = _choose_input(result, input_name)
    shape = info_from_value(value).shape
    if not shape:
        raise ParameterError(f"input {value.name!r} has no known rank: cannot make its batch dynamic")
    old_batch = shape[0]
    fixed = old_batch if isinstance(old_batch, int) else 1
    if isinstance(old_batch, str):
        dim_name = old_batch
    _set_dim0(value, dim_name)
    dependent = depends_on_input(result, value.name)
    for output in graph.output:
        if output.name in dependent and _dim0(output) in (fixed, None):
            _set_dim0(output, dim_name)
    for info in graph.value_info:
        if info.name in dependent and _dim0(info) == fixed:
            _set_dim0(info, None)
    rewritten = _rewrite_reshapes(result, dependent, fixed)
    if rewritten and result.ir_version < 4:
        result.ir_version = 4  # new shape initializers are not listed as graph inputs
    if rewritten:
        log.debug("batch made dynamic in Reshape nodes %s", rewritten)
    return result


def rewritten_reshapes(model: ModelProto, input_name: str | None = None) -> list[str]:
    """Names (or op indices) of the Reshape nodes that :func:`make_batch_dynamic` would rewrite."""
    copy = ModelProto()
    copy.CopyFrom(model)
    value = _choose_input(copy, input_name)
    shape = info_from_value(value).shape
    fixed = shape[0] if shape and isinstance(shape[0], int) else 1
    return _rewrite_reshapes(copy, depends_on_input(copy, value.name), fixed)


@dataclass(frozen=True)
class BatchCheck:
    """Outcome of :func:`verify_batch`: ``ok`` (also the truth value), the largest relative difference between
    the batch run and the per-sample runs, and a one-line explanation."""

    ok: bool
    max_error: float
    message: str

    def __bool__(self) -> bool:
        return self.ok


def verify_batch(
    model: ModelProto,
    inputs: Mapping[str, np.ndarray] | np.ndarray,
    run: Runner,
    reference: ModelProto | None = None,
    tolerance: float = 1e-4,
) -> BatchCheck:
    """Compare one run of ``model`` on a batch with per-sample runs (of ``reference``, default ``model``).

    Parameters
    ----------
    model : the model to check (e.g. the result of :func:`make_batch_dynamic`).
    inputs : the batch (at least 2 samples): ``{input name: array}``, or one array for a single-input model.
    run : ``run(model, feeds) -> {output name: array}``, e.g.
        :func:`blackbox_xai.model.runner.onnxruntime_runner` (with graph optimisations off for exactness).
    reference : the model run per sample (default: ``model``); pass the original to check the rewrite too.
    tolerance : largest accepted ``max|batch - per_sample| / max|per_sample|``, per output.

    Returns a :class:`BatchCheck`; it never raises for a model that fails the check.
    """
    feeds = _feeds(model, inputs)
    sizes = {len(array) for array in feeds.values()}
    if len(sizes) != 1 or min(sizes) < 2:
        raise ParameterError(f"verify_batch needs inputs with one common batch size of at least 2, got {sorted(sizes)}")
    batch = sizes.pop()
    try:
        together = run(model, feeds)
        apart = [run(reference or model, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(batch)]
    except Exception as error:  # the runner's exception types (onnxruntime errors, ModelError...)
        return BatchCheck(False, float("inf"), f"batch run failed: {_first_line(error)}")
    worst, worst_name = 0.0, ""
    for name, value in together.items():
        value = np.asarray(value)
        if name not in apart[0]:
            continue
        if value.ndim == 0 or value.shape[0] != batch:
            message = f"output {name!r} has shape {list(value.shape)} for a batch of {batch}"
            return BatchCheck(False, float("inf"), message)
        expected = np.concatenate([np.asarray(parts[name]) for parts in apart])
        if expected.shape != value.shape:
            message = f"output {name!r}: batch shape {list(value.shape)} != per-sample {list(expected.shape)}"
            return BatchCheck(False, float("inf"), message)
        if value.dtype.kind not in "fc":
            error = float(np.any(value != expected))
        else:
            scale = float(np.max(np.abs(expected))) if expected.size else 0.0
            diff = float(np.max(np.abs(value.astype(np.float64) - expected))) if expected.size else 0.0
            error = diff / scale if scale > 0 else diff
        if not np.isfinite(error) or error > worst:
            worst, worst_name = (error if np.isfinite(error) else float("inf")), name
    if worst > tolerance:
        message = f"output {worst_name!r} differs between batch and per-sample runs by {worst:.3g}"
        return BatchCheck(False, worst, message)
    return BatchCheck(True, worst, f"batch of {batch} matches per-sample runs (max relative error {worst:.3g})")


def dynamic_batch(
    model: ModelProto,
    inputs: Mapping[str, np.ndarray] | np.ndarray,
    run: Runner,
    input_name: str | None = None,
    tolerance: float = 1e-4,
) -> tuple[ModelProto, BatchCheck]:
    """:func:`make_batch_dynamic` then :func:`verify_batch` against the original model.

    Returns ``(dynamic model, check)`` when the check passes, else ``(model, check)`` with ``check.ok`` False:
    run the original one sample at a time. Never raises for a model that fails the check.
    """
    try:
        candidate = make_batch_dynamic(model, input_name)
    except (ModelError, ParameterError) as error:
        return model, BatchCheck(False, float("inf"), f"cannot make the batch dynamic: {error}")
    check = verify_batch(candidate, inputs, run, reference=model, tolerance=tolerance)
    return (candidate if check.ok else model), check


# --------------------------------------------------------------------------------------------------------------


def _choose_input(model: ModelProto, input_name: str | None) -> ValueInfoProto:
    weights_free = real_input_names(model)
    if not weights_free:
        raise ModelError("model has no inputs")
    name = input_name or weights_free[0]
    for value in real_inputs(model):
        if value.name == name:
            return value
    raise ParameterError(f"model has no input {name!r}; its inputs are {weights_free}")


def _feeds(model: ModelProto, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    if isinstance(inputs, Mapping):
        return {name: np.asarray(array) for name, array in inputs.items()}
    names = real_input_names(model)
    if len(names) != 1:
        raise ParameterError(f"model has inputs {names}; pass a dict of arrays")
    return {names[0]: np.asarray(inputs)}


_NO_RANK = object()


def _dim0(value: ValueInfoProto) -> object:
    """Dimension 0 of a declared shape (int, name or None), or a sentinel when there is no such dimension."""
    shape = info_from_value(value).shape
    return shape[0] if shape else _NO_RANK


def _set_dim0(value: ValueInfoProto, name: str | None) -> None:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return
    dims = value.type.tensor_type.shape.dim
    if not dims:
        return
    dims[0].Clear()
    if name:
        dims[0].dim_param = name


def _rewrite_reshapes(model: ModelProto, dependent: set[str], fixed: int) -> list[str]:
    graph = model.graph
    opset = opset_version(model) or 1
    taken = {t.name for t in graph.initializer} | {o for node in graph.node for o in node.output}
    taken |= {v.name for v in graph.input}
    rewritten: list[str] = []
    new_nodes: list[NodeProto] = []
    for index, node in enumerate(list(graph.node)):
        label = node.name or f"Reshape#{index}"
        if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or not node.input:
            new_nodes.append(node)
            continue
        if node.input[0] not in dependent:
            new_nodes.append(node)
            continue
        shape_attr = next((a for a in node.attribute if a.name == "shape"), None)
        if shape_attr is not None:  # opset < 5: the shape is an attribute, allowzero does not exist
            values = list(shape_attr.ints)
            if values and values[0] == fixed:
                new = _leading(values, allowzero=False)
                if new is not None:
                    del shape_attr.ints[:]
                    shape_attr.ints.extend(new)
                    rewritten.append(label)
            new_nodes.append(node)
            continue
        if len(node.input) < 2:
            new_nodes.append(node)
            continue
        value = constant_value(model, node.input[1])
        if value is None or value.ndim != 1 or len(value) == 0 or int(value[0]) != fixed:
            new_nodes.append(node)
            continue
        values = [int(v) for v in value]
        allowzero = any(a.name == "allowzero" and a.i == 1 for a in node.attribute)
        new = _leading(values, allowzero)
        name = _unique(f"{node.input[1]}__dynamic_batch", taken)
        if new is not None:
            graph.initializer.append(numpy_helper.from_array(np.asarray(new, dtype=np.int64), name))
        else:
            new_nodes.extend(_shape_from_data(node.input[0], values[1:], name, opset, taken, graph))
        node.input[1] = name
        rewritten.append(label)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return rewritten


def _leading(values: list[int], allowzero: bool) -> list[int] | None:
    """The shape with its leading batch entry made dynamic, or None when it needs a computed shape."""
    rest = values[1:]
    if -1 not in rest:
        return [-1] + rest
    if not allowzero:
        return [0] + rest
    return None


def _shape_from_data(
    data: str, rest: list[int], name: str, opset: int, taken: set[str], graph
) -> list[NodeProto]:
    """Nodes computing ``Concat(Shape(data)[0:1], rest)`` into ``name``."""
    shape_name = _unique(f"{name}__shape", taken)
    first_name = _unique(f"{name}__batch", taken)
    rest_name = _unique(f"{name}__rest", taken)
    graph.initializer.append(numpy_helper.from_array(np.asarray(rest, dtype=np.int64), rest_name))
    nodes = [helper.make_node("Shape", [data], [shape_name])]
    if opset >= 10:
        starts = _unique(f"{name}__starts", taken)
        ends = _unique(f"{name}__ends", taken)
        graph.initializer.append(numpy_helper.from_array(np.asarray([0], dtype=np.int64), starts))
        graph.initializer.append(numpy_helper.from_array(np.asarray([1], dtype=np.int64), ends))
        nodes.append(helper.make_node("Slice", [shape_name, starts, ends], [first_name]))
    else:
        nodes.append(helper.make_node("Slice", [shape_name], [first_name], starts=[0], ends=[1]))
    nodes.append(helper.make_node("Concat", [first_name, rest_name], [name], axis=0))
    return nodes


def _unique(base: str, taken: set[str]) -> str:
    name, counter = base, 1
    while name in taken:
        counter += 1
        name = f"{base}_{counter}"
    taken.add(name)
    return name


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
