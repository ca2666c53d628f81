"""Expose intermediate tensors as extra graph outputs, so that one run returns activations with the scores."""

from __future__ import annotations

from typing import Iterable

from onnx import ModelProto, ValueInfoProto

from ..errors import ParameterError
from .analysis import all_tensor_names, infer_shapes

__all__ = ["expose"]


def expose(model: ModelProto, tensors: str | Iterable[str], typed: bool = False) -> ModelProto:
    """A copy of ``model`` that also outputs ``tensors``, after the original outputs (which keep their order).

    Parameters
    ----------
    model : the model (not modified).
    tensors : names of intermediate tensors (node outputs, inputs or initializers). Names that already are
        outputs are not repeated.
    typed : give the new outputs the types and shapes found by shape inference. By default they are left
        untyped: onnxruntime accepts untyped outputs (``onnx.checker`` does not) and nothing is computed.

    Raises :class:`ParameterError` for a name that is not a tensor of the model.
    """
    names = [tensors] if isinstance(tensors, str) else list(tensors)
    known = set(all_tensor_names(model))
    missing = [name for name in names if name not in known]
    if missing:
        raise ParameterError(f"model has no tensor {missing[0]!r}; see blackbox_xai.graph.candidate_layers")
    result = ModelProto()
    result.CopyFrom(model)
    present = {output.name for output in result.graph.output}
    infos = infer_shapes(model) if typed else {}
    for name in names:
        if name in present:
            continue
        present.add(name)
        info = infos.get(name)
        if info is not None and info.elem_type:
            result.graph.output.append(info.value_info(name))
        else:
            result.graph.output.append(ValueInfoProto(name=name))
    return result
