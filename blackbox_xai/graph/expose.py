"""Expose intermediate tensors as extra graph outputs, so that one run returns activations with the scores."""

from __future__ import annotations

from typing import Iterable

from onnx import ModelProto

from .analysis import infer_shapes, with_outputs
from .quantised import materialise

__all__ = ["expose"]


def expose(model: ModelProto, tensors: str | Iterable[str], typed: bool = False) -> ModelProto:
    """A copy of ``model`` that also outputs ``tensors``, after the original outputs (which keep their order).

    Parameters
    ----------
    model : the model (not modified).
    tensors : names of intermediate tensors (node outputs, inputs or initializers). Names that already are
        outputs are not repeated. The float value of a QOperator activation ``q`` is exposed as
        ``q + "/dequantized"`` (as :func:`~blackbox_xai.graph.layers.candidate_layers` lists it).
    typed : give the new outputs the types and shapes found by shape inference. By default they are left
        untyped: onnxruntime accepts untyped outputs (``onnx.checker`` does not) and nothing is computed.

    Raises :class:`~blackbox_xai.errors.ParameterError` for a name that is not a tensor of the model.
    """
    names = [tensors] if isinstance(tensors, str) else list(tensors)
    model = materialise(model, names)  # the float value of a QOperator activation (graph/quantised.py)
    return with_outputs(model, names, infer_shapes(model) if typed else None)
