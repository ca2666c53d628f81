"""Values of intermediate tensors and a transformer's attention probabilities, from the model's own sessions.

Methods never open sessions (:mod:`blackbox_xai.model` is the only package that talks to onnxruntime): the
attention methods ask here for the attention tensors a graph has (:func:`attention`, found once by
:func:`blackbox_xai.graph.attention.attention_layout` and cached on the model), for their values on an image
(:func:`tensor_values`: the graph with those tensors exposed as extra outputs, one session per set of names,
cached) and for their gradients (:meth:`~blackbox_xai.model.OnnxModel.gradient` with ``wrt`` the tensor names).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import CapabilityError, ModelError
from .base import Model  # an OnnxModel (its module imports this one)
from .session import first_line

if TYPE_CHECKING:  # pragma: no cover
    from ..graph.attention import AttentionLayout

__all__ = ["attention", "attention_gap", "tensor_values"]


def _layout(model: Model) -> AttentionLayout | str:
    cached = model.__dict__.get("_attention_layout")
    if cached is None:
        from .. import graph
        from ..graph.attention import attention_layout

        proto = graph.move_initializers_out_of_inputs(model.proto())
        cached = model.__dict__["_attention_layout"] = attention_layout(proto, model.spec.input)
    return cached


def attention_gap(model: Model) -> str | None:
    """None when the model has attention probabilities over its token grid, else one line saying why not."""
    found = _layout(model)
    return found if isinstance(found, str) else None


def attention(model: Model) -> AttentionLayout:
    """The model's attention tensors, grid and extra tokens (:class:`~blackbox_xai.graph.attention.AttentionLayout`);
    :class:`CapabilityError` when it has none."""
    found = _layout(model)
    if isinstance(found, str):
        raise CapabilityError(f"no attention to read: {found}")
    return found


def tensor_values(model: Model, pixels: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(outputs (N, C), [value of each tensor named in names])`` for pixels (N, H, W, 3) or (H, W, 3) at the model
    size: one run of the graph with ``names`` exposed as extra outputs (counted as forward passes)."""
    from .. import graph

    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 3:
        pixels = pixels[None]
    names = list(names)
    cache = model.__dict__.setdefault("_exposed_sessions", {})
    key = tuple(names)
    if key not in cache:
        exposed = graph.expose(graph.move_initializers_out_of_inputs(model.proto()), names)
        cache[key] = model.make_session(exposed)
    session = cache[key]
    began = time.perf_counter()
    inputs = model.preprocessor.forward(pixels)
    running = time.perf_counter()
    try:
        values = session.run([model.output_name, *names], {model.spec.input: inputs})
    except Exception as error:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime failed on the model with exposed tensors: {first_line(error)}") from None
    ended = time.perf_counter()
    model.forward_passes += len(pixels)
    model.forward_seconds += ended - began
    model.session_seconds += ended - running
    return np.asarray(values[0], np.float32), [np.asarray(v, np.float32) for v in values[1:]]
