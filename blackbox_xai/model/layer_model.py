"""LayerModel: an ONNX model split at an intermediate layer into a body (pixels -> activations) and a head
(activations -> class logits), each run by onnxruntime in bounded chunks.

This is how the CAM family reads activations and evaluates perturbed activations without any training framework:
the graph is cut with :func:`blackbox_xai.graph.split` (tensors that cross the cut become extra head inputs, filled
from the body run). When the head is affine in the activations (global average pooling, reshapes, then one
Gemm/MatMul), its weights are read from the graph (:func:`blackbox_xai.graph.head.read_affine_head`) so gradients
are exact and free; any other head's exact gradient comes from its backward graph (:meth:`LayerModel.head_gradient`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from ..errors import GradientUnavailableError, ModelError, ParameterError
from ..graph.head import AffineHead, logits_tensor, read_affine_head
from .base import Model  # an OnnxModel (its module imports this one)
from .diagnose import explain_error


__all__ = ["AffineHead", "LayerModel", "LayerState"]


@dataclass
class LayerState:
    """The activations of one image at the layer (K, h, w) and the crossing tensors the head also needs."""

    activations: np.ndarray
    crossing: dict[str, np.ndarray]


class LayerModel:
    """``model`` split at ``layer`` (a tensor name; default: the last spatial layer before global pooling).

    The head returns logits: when the model's score output is a Softmax, the cut model's output is the Softmax's
    input. ``head_passes`` and ``head_seconds`` count the activation tensors the head evaluated and their time,
    here and on ``model`` (whose counters add up every layer's); body passes count as forward passes of
    ``model``. A head gradient (:meth:`head_gradient`) counts as one head pass and one backward pass.
    """

    def __init__(self, model: Model, layer: str | None = None, head_batch_size: int = 256) -> None:
        from .. import graph

        self.model = model
        self.head_batch_size = int(head_batch_size)
        proto = graph.move_initializers_out_of_inputs(model.proto())
        self.score_tensor, self.score_kind = logits_tensor(proto, model.output_name)
        proto = _with_outputs(proto, [self.score_tensor])
        layers = graph.candidate_layers(proto, model.spec.input)
        if layer is None:
            self.layer = graph.default_layer(proto, model.spec.input, layers=layers)
        else:
            found = [candidate for candidate in layers if candidate.tensor == layer]
            if not found:
                names = ", ".join(candidate.tensor for candidate in layers[-8:])
                raise ParameterError(
                    f"{layer!r} is not a spatial layer of this model (a 4-D map computed from the input, or a "
                    "transformer's token grid; attention internals are neither); "
                    f"candidates include: {names} (list them all with: blackbox-xai layers MODEL)"
                )
            self.layer = found[0]
        parts = graph.split(proto, self.layer.tensor)
        self._head_proto = parts.head  # differentiated by head_gradient
        self.crossing = list(parts.crossing)
        self.affine = read_affine_head(parts.head, self.layer.tensor, self.score_tensor, self.layer.shape,
                                       lambda name: self._constant(parts.head, name))
        self._body = model.make_session(parts.body)
        self._head = model.make_session(parts.head)
        self._body_outputs = [self.layer.tensor, *self.crossing]
        self._head_inputs = [value.name for value in self._head.get_inputs()]
        self.head_passes = 0
        self.head_seconds = 0.0
        self._head_batches = None  # decided on the first head call: can the head take a batch?

    def _constant(self, head: Any, name: str) -> np.ndarray | None:
        """The value of a constant tensor of the head (an initializer, a Constant, or a constant subgraph such
        as ConstantOfShape, evaluated by running the head once)."""
        from .. import graph

        value = graph.analysis.constant_value(head, name)
        if value is not None or name not in graph.constant_tensors(head):
            return value
        exposed = graph.expose(head, [name])
        feeds = {}
        for value_info in head.graph.input:
            dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim]
            feeds[value_info.name] = np.zeros(dims, dtype=np.float32)
        return np.asarray(self._run(self.model.make_session(exposed), [name], feeds)[0])

    def state(self, pixels: np.ndarray) -> LayerState:
        """Activations (K, h, w) and crossing tensors for one image (h, w, 3) in pixel space."""
        model = self.model
        began = time.perf_counter()
        inputs = model.preprocessor.forward(pixels[None])
        running = time.perf_counter()
        values = self._run(self._body, self._body_outputs, {model.spec.input: inputs})
        ended = time.perf_counter()
        model.forward_seconds += ended - began
        model.session_seconds += ended - running
        model.forward_passes += 1
        activations = np.asarray(values[0], dtype=np.float32)[0]
        return LayerState(activations, dict(zip(self.crossing, values[1:])))

    def head(self, state: LayerState, activations: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """Logits (M, C) of the head for activation variants (M, K, h, w) of one image's ``state``.

        ``activations`` may be an array or an iterable of arrays (chunks), so that callers can stream
        perturbations without materialising them all.
        """
        chunks = [activations] if isinstance(activations, np.ndarray) else activations
        results = []
        for chunk in chunks:
            for start in range(0, len(chunk), self.head_batch_size):
                results.append(self._head_chunk(state, chunk[start:start + self.head_batch_size]))
        if not results:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(results)

    def _head_chunk(self, state: LayerState, chunk: np.ndarray) -> np.ndarray:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        began = time.perf_counter()
        if self._head_batches is None:
            self._head_batches = self._head_takes_batches(state, chunk)
        if self._head_batches:
            logits = self._head_run(state, chunk)
        else:
            logits = np.concatenate([self._head_run(state, chunk[i:i + 1]) for i in range(len(chunk))])
        self._count_head(len(chunk), time.perf_counter() - began)
        if not np.all(np.isfinite(logits)):
            raise ModelError("the model's head returned NaN or infinite scores for perturbed activations")
        return logits

    def _head_run(self, state: LayerState, chunk: np.ndarray) -> np.ndarray:
        feeds = {self.layer.tensor: chunk}
        for name, value in state.crossing.items():
            feeds[name] = _tile(value, len(chunk))
        logits = self._run(self._head, [self.score_tensor], feeds)[0]
        return np.asarray(logits, dtype=np.float32).reshape(len(chunk), -1)

    def _head_takes_batches(self, state: LayerState, chunk: np.ndarray) -> bool:
        """Whether a batch through the head equals per-sample runs (heads with hard-coded batch-1 shapes don't)."""
        pair = np.stack([chunk[0], chunk[min(1, len(chunk) - 1)] * 0.5])
        try:
            together = self._head_run(state, pair)
        except ModelError:
            return False
        apart = np.concatenate([self._head_run(state, pair[i:i + 1]) for i in range(2)])
        scale = max(float(np.abs(apart).max()), 1e-12)
        return together.shape == apart.shape and float(np.abs(together - apart).max()) / scale < 1e-4

    def _count_head(self, passes: int, seconds: float) -> None:
        self.head_passes += passes
        self.head_seconds += seconds
        self.model.head_passes += passes
        self.model.head_seconds += seconds

    def head_gradient_gap(self) -> str | None:
        """None when :meth:`head_gradient` is available, else why not (an op of the head without a backward rule).
        Builds the head's gradient model on the first call and caches it, or the reason it cannot be built."""
        try:
            self._head_gradient_model()
        except GradientUnavailableError as error:
            return str(error)
        return None

    def head_gradient(self, state: LayerState, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(logits (C,), d (weights @ logits) / d A (K, h, w))`` of the head at one image's ``state``.

        From a backward graph of the head (:func:`blackbox_xai.autodiff.build_gradient_model` on this layer
        model's own split, with respect to the layer), built once and cached with its session; the tensors that
        cross the cut are held fixed, as finite differences of :meth:`head` do. One head pass and one backward
        pass (counted here and on the model). Raises :class:`~blackbox_xai.errors.GradientUnavailableError` when
        the backward graph cannot be built (see :meth:`head_gradient_gap`; the failure is cached too)."""
        session, seed_tail, outputs = self._head_gradient_model()
        feeds = {self.layer.tensor: np.ascontiguousarray(state.activations[None], dtype=np.float32)}
        feeds.update(state.crossing)
        feeds["seed"] = np.asarray(weights, np.float32).reshape(1, -1, *seed_tail)
        began = time.perf_counter()
        try:
            logits, grad = session.run(outputs, feeds)
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime failed on the head's gradient model: {explain_error(error, 'run', True)}") from None
        seconds = time.perf_counter() - began
        self._count_head(1, seconds)
        self.model.backward_passes += 1
        self.model.backward_seconds += seconds
        return np.asarray(logits, np.float32).reshape(-1), np.asarray(grad, np.float32)[0]

    def _head_gradient_model(self) -> tuple[Any, tuple[int, ...], list[str]]:
        """(session, seed's trailing dimensions, outputs) of the head's gradient model, built once; the failure to
        build it is cached and raised again."""
        cached = self.__dict__.get("_head_gradient")
        if cached is None:
            try:
                cached = self._build_head_gradient()
            except GradientUnavailableError as error:
                cached = error
            self._head_gradient = cached
        if isinstance(cached, GradientUnavailableError):
            raise cached
        return cached

    def _build_head_gradient(self) -> tuple[Any, tuple[int, ...], list[str]]:
        try:
            from ..autodiff import UnsupportedOpError, build_gradient_model
        except ImportError as error:  # pragma: no cover - the autodiff ships with the package
            raise GradientUnavailableError(f"exact gradients are not available: {error}") from None
        try:
            built = build_gradient_model(self._head_proto, self.score_tensor, wrt=[self.layer.tensor],
                                         rules="gradient")
        except UnsupportedOpError as error:
            raise GradientUnavailableError(str(error)) from None
        session = self.model.make_session(built)
        seed = next(value for value in session.get_inputs() if value.name == "seed")
        seed_tail = tuple(d if isinstance(d, int) and d > 0 else 1 for d in seed.shape[2:])
        return session, seed_tail, [self.score_tensor, "grad:" + self.layer.tensor]

    def _run(self, session: Any, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(outputs, feeds)
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime failed on the split model: {explain_error(error, 'run', True)}") from None


def _tile(value: np.ndarray, count: int) -> np.ndarray:
    """Repeat a per-image crossing tensor for a batch; shape-like (integer) tensors are not per-image."""
    value = np.asarray(value)
    if value.dtype.kind == "f" and value.ndim >= 1 and value.shape[0] == 1 and count != 1:
        return np.repeat(value, count, axis=0)
    return value


def _with_outputs(proto: Any, names: list[str]) -> Any:
    from .. import graph

    exposed = graph.expose(proto, names, typed=True)
    kept = [value for value in exposed.graph.output if value.name in names]
    del exposed.graph.output[:]
    exposed.graph.output.extend(kept)
    return exposed
