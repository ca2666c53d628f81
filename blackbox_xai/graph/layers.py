"""Layer discovery: which activations a CAM method can use, and a sensible default.

A candidate layer is a 4-D floating activation (N, C, H, W) computed from the model input, with a spatial extent
larger than one pixel, named by its tensor and the node that produces it; in a vision transformer, also a token
grid (B, N, D) or a channels-last grid (B, h, w, C), while 4-D attention internals are not candidates (see
:mod:`blackbox_xai.graph.tokens`, whose default wins for transformers). The default is the last candidate
before the model's global pooling: a ``GlobalAveragePool``/``GlobalMaxPool``, a ``ReduceMean``/``ReduceMax``/
``ReduceSum`` over the spatial axes, an ``AveragePool``/``MaxPool`` that covers the whole map, or a
``Flatten``/``Reshape`` of the map that feeds a ``Gemm``/``MatMul`` (classic VGG-style classifiers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from onnx import ModelProto, NodeProto, TensorProto

from ..errors import ModelError
from .analysis import (
    Dim,
    Runner,
    TensorInfo,
    ancestor_nodes,
    constant_value,
    consumers,
    depends_on_input,
    tensor_info,
    topological_order,
)
from .head import pool_covers_map, reduces_spatial
from .quantised import QLINEAR_OPS, dequantised_name, is_quantised_graph, quantisation_of
from .tokens import default_token_layer, refine_layers

__all__ = ["Layer", "candidate_layers", "default_layer", "global_pooling_inputs"]

POOL_OPS = ("AveragePool", "MaxPool", "LpPool")
GLOBAL_OPS = ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
REDUCE_OPS = ("ReduceMean", "ReduceMax", "ReduceSum")
PASS_THROUGH = ("Dropout", "Identity", "Cast")
CLASSIFIER_OPS = ("Gemm", "MatMul")


@dataclass(frozen=True)
class Layer:
    """A candidate target layer: the activation ``tensor`` produced by node ``node`` (an ``op_type``) with
    ``shape`` (N, C, H, W); ``position`` is the producer's index in topological order.

    ``layout`` is "NCHW" for a spatial map, "tokens" for a token sequence (B, N, D) whose last ``N - extra``
    tokens form the ``grid`` (h, w), "NHWC" for a channels-last grid (B, h, w, C)
    (:mod:`blackbox_xai.graph.tokens`)."""

    tensor: str
    op_type: str
    node: str
    shape: tuple[Dim, ...]
    position: int
    layout: str = "NCHW"
    grid: tuple[int, int] | None = None
    extra: int = 0

    @property
    def channels(self) -> Dim:
        return self.shape[1] if self.layout == "NCHW" else self.shape[-1]

    @property
    def spatial(self) -> tuple[Dim, Dim]:
        if self.grid is not None:
            return self.grid
        return self.shape[2], self.shape[3]

    def __str__(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        if self.layout == "tokens" and self.grid is not None:
            extra = f"{self.extra} extra + " if self.extra else ""
            dims += f" tokens = {extra}{self.grid[0]}x{self.grid[1]} grid"
        elif self.layout == "NHWC" and self.grid is not None:
            dims += f" channels-last, {self.grid[0]}x{self.grid[1]} grid"
        return f"{self.tensor} ({self.op_type}, {dims})"


def candidate_layers(
    model: ModelProto,
    input_name: str | None = None,
    run: Runner | None = None,
    infos: dict[str, TensorInfo] | None = None,
) -> list[Layer]:
    """The 4-D activations computed from the input, in topological order.

    ``run`` (optional) measures shapes that shape inference leaves unknown (see
    :func:`~blackbox_xai.graph.analysis.tensor_info`); ``infos`` reuses shapes already computed.
    """
    dependent = depends_on_input(model, input_name)
    order = topological_order(model)
    if infos is None:
        names = [name for node in order for name in node.output if name in dependent]
        infos = tensor_info(model, names, run=run)
    quantised = is_quantised_graph(model.graph)
    hidden = _quantisation_intermediates(model, order, infos) if quantised else set()
    layers: list[Layer] = []
    for position, node in enumerate(order):
        for name in node.output:
            if not name or name not in dependent or name in hidden:
                continue
            info = infos.get(name)
            if quantised and node.op_type in QLINEAR_OPS and quantisation_of(node) is not None:
                info, name = _dequantised_info(info, name)  # a QOperator activation: listed by its float value
            if info is None or not info.is_float or info.rank != 4:
                continue
            height, width = info.shape[2], info.shape[3]
            if isinstance(height, int) and isinstance(width, int) and height * width <= 1:
                continue
            layers.append(Layer(name, node.op_type, node.name, tuple(info.shape), position))
    return refine_layers(layers, model, order, infos, dependent, input_name, Layer)


def _dequantised_info(info: TensorInfo | None, name: str) -> tuple[TensorInfo | None, str]:
    """The float activation (name and type) standing for the integer output ``name`` of a QLinear node."""
    float_name = dequantised_name(name)
    if info is None or info.shape is None:
        return None, float_name
    return TensorInfo(float_name, TensorProto.FLOAT, info.shape), float_name


def _quantisation_intermediates(model: ModelProto, order: list[NodeProto], infos: dict[str, TensorInfo]) -> set[str]:
    """Float tensors of a quantised graph that are not activations of their own: a tensor only quantised (its
    DequantizeLinear output stands for it), a second DequantizeLinear of the same quantised tensor or one of the
    quantised model input, and the
    rescaling of an integer result (``Cast`` of ConvInteger/MatMulInteger and the ``Mul`` by its scale)."""
    readers = consumers(model)
    outputs = {value.name for value in model.graph.output}
    hidden: set[str] = set()
    inputs = {value.name for value in model.graph.input}
    seen_quantised = {node.output[0] for node in order if node.op_type == "QuantizeLinear" and node.input[0] in inputs}
    for node in order:
        out = node.output[0] if node.output else ""
        if not out:
            continue
        following = readers.get(out, [])
        if following and out not in outputs and all(r.op_type == "QuantizeLinear" for r in following):
            hidden.add(out)
        if node.op_type == "DequantizeLinear":
            if node.input[0] in seen_quantised:
                hidden.add(out)
            seen_quantised.add(node.input[0])
        elif node.op_type == "Cast" and not _is_float(infos.get(node.input[0])):
            hidden.add(out)
        elif node.op_type == "Mul" and any(name in hidden for name in node.input):
            hidden.add(out)
    return hidden


def _is_float(info: TensorInfo | None) -> bool:
    return info is None or not info.elem_type or info.is_float


def global_pooling_inputs(model: ModelProto, infos: dict[str, TensorInfo]) -> list[tuple[NodeProto, str]]:
    """``(node, pooled tensor)`` for every node that pools a 4-D map to one value per channel, or hands the whole
    map to a fully connected layer, in topological order."""
    found: list[tuple[NodeProto, str]] = []
    readers = consumers(model)
    for node in topological_order(model):
        if not node.input or node.domain not in ("", "ai.onnx"):
            continue
        data = node.input[0]
        info = infos.get(data)
        if info is None or info.rank != 4:
            continue
        if node.op_type in GLOBAL_OPS:
            found.append((node, data))
        elif node.op_type in REDUCE_OPS and _reduces_spatial(model, node):
            found.append((node, data))
        elif node.op_type in POOL_OPS and _covers_map(node, info, infos.get(node.output[0])):
            found.append((node, data))
        elif node.op_type in ("Flatten", "Reshape") and _spatial(info) and _feeds_classifier(node, readers):
            found.append((node, data))
    return found


def default_layer(
    model: ModelProto,
    input_name: str | None = None,
    run: Runner | None = None,
    layers: Sequence[Layer] | None = None,
) -> Layer:
    """The last candidate layer before global pooling (the last candidate when no pooling is found).

    Raises :class:`ModelError` when the model has no 4-D activation with a spatial extent.
    """
    dependent = depends_on_input(model, input_name)
    names = [name for node in topological_order(model) for name in node.output if name in dependent]
    infos = tensor_info(model, names, run=run)
    layers = list(layers) if layers is not None else candidate_layers(model, input_name, infos=infos)
    if not layers:
        raise ModelError(
            "the model has no 4-D activation (N, C, H, W) with a spatial extent computed from its input: "
            "no layer for a CAM method"
        )
    transformer = default_token_layer(model, layers, topological_order(model), infos, dependent, input_name)
    if transformer is not None:
        return transformer
    by_tensor = {layer.tensor: layer for layer in layers}
    pools = [(node, data) for node, data in global_pooling_inputs(model, infos) if data in dependent]
    if not pools:
        return layers[-1]
    _, pooled = pools[-1]
    if pooled in by_tensor:
        return by_tensor[pooled]
    upstream = {name for node in ancestor_nodes(model, [pooled]) for name in node.output}
    before = [layer for layer in layers if layer.tensor in upstream]
    return before[-1] if before else layers[-1]


def _spatial(info: TensorInfo) -> bool:
    height, width = info.shape[2], info.shape[3]
    return not (isinstance(height, int) and isinstance(width, int) and height * width <= 1)


def _reduces_spatial(model: ModelProto, node: NodeProto) -> bool:
    """A Reduce* node that pools the spatial axes away (:func:`~blackbox_xai.graph.head.reduces_spatial`)."""
    return reduces_spatial(node, lambda name: constant_value(model, name))


def _covers_map(node: NodeProto, info: TensorInfo, out: TensorInfo | None) -> bool:
    """A pooling node with one window over the whole map (:func:`~blackbox_xai.graph.head.pool_covers_map`)."""
    return pool_covers_map(node, info.shape, out.shape if out is not None and out.rank == 4 else None)


def _feeds_classifier(node: NodeProto, readers: dict[str, list[NodeProto]]) -> bool:
    """True when the node's output reaches a Gemm/MatMul directly or through Dropout/Identity/Cast."""
    frontier = [node.output[0]]
    for _ in range(4):
        following = [reader for name in frontier for reader in readers.get(name, [])]
        if any(reader.op_type in CLASSIFIER_OPS for reader in following):
            return True
        frontier = [reader.output[0] for reader in following if reader.op_type in PASS_THROUGH and reader.output]
        if not frontier:
            return False
    return False
