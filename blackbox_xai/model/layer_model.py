"""LayerModel: an ONNX model split at an intermediate layer into a body (pixels -> activations) and a head
(activations -> class logits), each run by onnxruntime in bounded chunks.

This is how the CAM family reads activations and evaluates perturbed activations without any training framework:
the graph is cut with :func:`blackbox_xai.graph.split` (tensors that cross the cut become extra head inputs, filled
from the body run). When the head is affine in the activations (global average pooling, reshapes, then one
Gemm/MatMul), its weights are read from the graph so gradients are exact and free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import ModelError, ParameterError
from .onnx_model import OnnxModel
from .preprocess import to_model_input

RESHAPES = ("Flatten", "Reshape", "Squeeze", "Identity", "Dropout")


@dataclass(frozen=True)
class AffineHead:
    """``logits = weight @ mean_over_space(A) + bias`` (``weight`` is (classes, channels))."""

    weight: np.ndarray
    bias: np.ndarray


@dataclass
class LayerState:
    """The activations of one image at the layer (K, h, w) and the crossing tensors the head also needs."""

    activations: np.ndarray
    crossing: dict[str, np.ndarray]


class LayerModel:
    """``model`` split at ``layer`` (a tensor name; default: the last spatial layer before global pooling).

    The head returns logits: when the model's score output is a Softmax, the cut model's output is the Softmax's
    input. ``head_passes`` counts the activation tensors the head evaluated; body passes count as forward
    passes of ``model``.
    """

    def __init__(self, model: OnnxModel, layer: str | None = None, head_batch_size: int = 256) -> None:
        from .. import graph

        self.model = model
        self.head_batch_size = int(head_batch_size)
        proto = graph.move_initializers_out_of_inputs(model.proto())
        self.score_tensor, self.score_kind = _logits_tensor(proto, model.output_name)
        proto = _with_outputs(proto, [self.score_tensor])
        layers = graph.candidate_layers(proto, model.spec.input)
        if layer is None:
            self.layer = graph.default_layer(proto, model.spec.input, layers=layers)
        else:
            found = [candidate for candidate in layers if candidate.tensor == layer]
            if not found:
                names = ", ".join(candidate.tensor for candidate in layers[-8:])
                raise ParameterError(
                    f"{layer!r} is not a spatial layer of this model (4-D activation computed from the input); "
                    f"candidates include: {names} (list them all with: blackbox-xai layers MODEL)"
                )
            self.layer = found[0]
        parts = graph.split(proto, self.layer.tensor)
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
        inputs = to_model_input(pixels[None], self.model.spec)
        began = time.perf_counter()
        values = self._run(self._body, self._body_outputs, {self.model.spec.input: inputs})
        self.model.forward_seconds += time.perf_counter() - began
        self.model.forward_passes += 1
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
        self.head_seconds += time.perf_counter() - began
        self.head_passes += len(chunk)
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

    def _run(self, session: Any, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(outputs, feeds)
        except Exception as error:  # onnxruntime raises its own exception types
            text = str(error).strip().splitlines()
            raise ModelError(f"onnxruntime failed on the split model: {text[0] if text else error}") from None


def _tile(value: np.ndarray, count: int) -> np.ndarray:
    """Repeat a per-image crossing tensor for a batch; shape-like (integer) tensors are not per-image."""
    value = np.asarray(value)
    if value.dtype.kind == "f" and value.ndim >= 1 and value.shape[0] == 1 and count != 1:
        return np.repeat(value, count, axis=0)
    return value


def _logits_tensor(proto: Any, output: str) -> tuple[str, str]:
    """The tensor to explain: the model output, or the input of the Softmax that produces it."""
    for node in proto.graph.node:
        if output in node.output and node.op_type in ("Softmax", "LogSoftmax"):
            return node.input[0], "logits"
    return output, "output"


def _with_outputs(proto: Any, names: list[str]) -> Any:
    from .. import graph

    exposed = graph.expose(proto, names, typed=True)
    kept = [value for value in exposed.graph.output if value.name in names]
    del exposed.graph.output[:]
    exposed.graph.output.extend(kept)
    return exposed


def read_affine_head(
    head: Any, layer: str, score: str, shape: tuple[Any, ...], constant: Callable[[str], np.ndarray | None]
) -> AffineHead | None:
    """The head's exact weights when it computes ``W @ mean_hw(A) + b``: a global average pool (ReduceMean over
    the spatial axes, or an AveragePool whose kernel covers the ``shape`` (N, K, h, w) map), reshapes, and at most
    one Gemm / MatMul / 1x1 Conv (+ Add of a constant). ``constant(name)`` returns a constant tensor's value (None
    if it is not constant). None when the head is not of that form."""
    if len(head.graph.input) != 1:
        return None  # tensors cross the cut: not a function of the activations alone
    readers: dict[str, list[Any]] = {}
    for node in head.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    current, pooled = layer, False
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    for _ in range(len(head.graph.node) + 1):
        if current == score:
            break
        next_nodes = [n for n in readers.get(current, []) if n.op_type not in ("Shape",)]
        if len(next_nodes) != 1:
            return None
        node = next_nodes[0]
        op = node.op_type
        if not pooled:
            if (op == "GlobalAveragePool" or (op == "ReduceMean" and _reduces_hw(node, constant))
                    or (op == "AveragePool" and _covers(node, shape))):
                pooled = True
            else:
                return None
        elif op in RESHAPES:
            pass
        elif op == "Conv" and weight is None:
            kernel = constant(node.input[1])
            attrs = {a.name: a for a in node.attribute}
            if kernel is None or kernel.shape[2:] != (1, 1) or ("group" in attrs and attrs["group"].i != 1):
                return None
            if "pads" in attrs and any(attrs["pads"].ints):
                return None
            weight = kernel[:, :, 0, 0]
            if len(node.input) > 2 and node.input[2]:
                bias = constant(node.input[2])
                if bias is None:
                    return None
        elif op in ("Gemm", "MatMul") and weight is None:
            matrix = constant(node.input[1])
            if matrix is None or matrix.ndim != 2:
                return None
            attrs = {a.name: a for a in node.attribute}
            if op == "Gemm" and attrs.get("transA") and attrs["transA"].i:
                return None
            trans_b = op == "Gemm" and "transB" in attrs and attrs["transB"].i
            alpha = attrs["alpha"].f if op == "Gemm" and "alpha" in attrs else 1.0
            beta = attrs["beta"].f if op == "Gemm" and "beta" in attrs else 1.0
            weight = alpha * (matrix if trans_b else matrix.T)
            if op == "Gemm" and len(node.input) > 2 and node.input[2]:
                value = constant(node.input[2])
                if value is None:
                    return None
                bias = beta * np.broadcast_to(value, (weight.shape[0],))
        elif op == "Add" and weight is not None and bias is None:
            value = constant(node.input[1] if node.input[0] == current else node.input[0])
            if value is None:
                return None
            bias = np.broadcast_to(value, (weight.shape[0],))
        else:
            return None
        current = node.output[0]
    if current != score or not pooled:
        return None
    if weight is None:  # pooling alone: the logits are the pooled channels
        channels = shape[1]
        if not isinstance(channels, int):
            return None
        weight = np.eye(channels, dtype=np.float32)
    bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32)
    return AffineHead(np.asarray(weight, dtype=np.float32), bias)


def _reduces_hw(node: Any, constant: Callable[[str], np.ndarray | None]) -> bool:
    axes = None
    for attribute in node.attribute:
        if attribute.name == "axes":
            axes = list(attribute.ints)
    if axes is None and len(node.input) > 1:
        value = constant(node.input[1])
        axes = None if value is None else [int(a) for a in value.ravel()]
    return axes is not None and sorted(a % 4 for a in axes) == [2, 3]


def _covers(node: Any, shape: tuple[Any, ...]) -> bool:
    """An AveragePool that averages the whole (h, w) map in one window: kernel = map without padding, or a
    padded window over the map with padding not counted (count_include_pad=0), one output position."""
    attrs = {a.name: a for a in node.attribute}
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        return False
    kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else []
    pads = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
    strides = list(attrs["strides"].ints) if "strides" in attrs else [1, 1]
    auto_pad = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
    include_pad = bool(attrs["count_include_pad"].i) if "count_include_pad" in attrs else False
    if auto_pad not in ("NOTSET", "VALID") or len(kernel) != 2:
        return False
    if not any(pads):
        return kernel == [shape[2], shape[3]]
    outputs = [(shape[2 + i] + pads[i] + pads[i + 2] - kernel[i]) // strides[i] + 1 for i in range(2)]
    inside = all(pads[i] < kernel[i] and kernel[i] - pads[i] >= shape[2 + i] for i in range(2))
    return outputs == [1, 1] and inside and not include_pad
