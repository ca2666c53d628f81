"""The classifier head of a graph, read with ``onnx`` alone: the logits tensor, global pooling, an affine head.

One global-pooling predicate serves both layer discovery (:func:`blackbox_xai.graph.layers.global_pooling_inputs`,
which needs "the spatial axes are pooled away") and the affine-head reader (:func:`read_affine_head`, which needs
"each channel is averaged over exactly the spatial axes"): :func:`reduced_axes` says which axes a Reduce* node
reduces under ONNX semantics, :func:`reduces_spatial` and :func:`pool_covers_map` answer for Reduce* and pooling
nodes, with ``per_channel`` asking for the stricter of the two questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["AffineHead", "logits_tensor", "pool_covers_map", "read_affine_head", "reduced_axes", "reduces_spatial"]

RESHAPES = ("Flatten", "Reshape", "Squeeze", "Identity", "Dropout")

Constant = Callable[[str], "np.ndarray | None"]


@dataclass(frozen=True)
class AffineHead:
    """``logits = weight @ mean_over_space(A) + bias`` (``weight`` is (classes, channels))."""

    weight: np.ndarray
    bias: np.ndarray


def logits_tensor(proto: Any, output: str) -> tuple[str, str]:
    """The tensor to explain and its kind: ``(the input of the Softmax/LogSoftmax producing output, "logits")``,
    else ``(output, "output")``."""
    for node in proto.graph.node:
        if output in node.output and node.op_type in ("Softmax", "LogSoftmax"):
            return node.input[0], "logits"
    return output, "output"


def reduced_axes(node: Any, constant: Constant, rank: int = 4) -> frozenset[int] | None:
    """The axes (in ``range(rank)``) that a ReduceMean/ReduceMax/ReduceSum/... node reduces, under ONNX semantics.

    Axes come from the ``axes`` attribute (ReduceMean before opset 18, ReduceSum before 13) or the second input
    (later opsets; ``constant(name)`` gives its value, None when it is not a constant: then the axes are unknown and
    None is returned). Negative axes count from the end. No axes (or an empty axes tensor) means every axis, unless
    ``noop_with_empty_axes=1``, which makes the node an identity (no axis reduced). ``keepdims`` does not change
    which axes are reduced."""
    axes: list[int] | None = None
    noop = False
    for attribute in node.attribute:
        if attribute.name == "axes":
            axes = list(attribute.ints)
        elif attribute.name == "noop_with_empty_axes":
            noop = attribute.i == 1
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = constant(node.input[1])
        if value is None:
            return None
        axes = [int(a) for a in np.asarray(value).ravel()]
    if not axes:
        return frozenset() if noop else frozenset(range(rank))
    return frozenset(a % rank for a in axes)


def reduces_spatial(node: Any, constant: Constant, per_channel: bool = False) -> bool:
    """Whether a Reduce* node on a 4-D (N, C, H, W) map pools both spatial axes away: H and W among the reduced
    axes, and with ``per_channel`` exactly H and W (batch and channels kept: one value per channel, what an affine
    head needs). False when the axes are not known (:func:`reduced_axes`)."""
    axes = reduced_axes(node, constant, rank=4)
    if axes is None:
        return False
    return axes == {2, 3} if per_channel else {2, 3} <= axes


def pool_covers_map(node: Any, shape: Sequence[Any], out_shape: Sequence[Any] | None = None,
                    per_channel: bool = False) -> bool:
    """Whether a pooling node (AveragePool, MaxPool, LpPool) on a 4-D map of ``shape`` (N, C, h, w) has one window
    over the whole map: one output position, and every input position inside that window.

    ``out_shape`` (when known) settles "one output position" for layer discovery. With ``per_channel`` (an
    AveragePool read as the mean over the map) the answer comes from the attributes alone, and the window must also
    average the positions only: no padding, or padding not counted (``count_include_pad=0``), no ``ceil_mode``,
    explicit padding (``auto_pad`` NOTSET or VALID)."""
    if len(shape) != 4:
        return False
    height, width = shape[2], shape[3]
    known = isinstance(height, int) and isinstance(width, int)
    if known and height * width <= 1:
        return False  # a single position: nothing to pool
    if (not per_channel and out_shape is not None and len(out_shape) == 4
            and out_shape[2] == 1 and out_shape[3] == 1):
        return True
    if not known:
        return False
    attrs = {a.name: a for a in node.attribute}
    kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else []
    if len(kernel) != 2:
        return False
    pads = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
    strides = list(attrs["strides"].ints) if "strides" in attrs else [1, 1]
    auto_pad = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
    ceil_mode = bool(attrs["ceil_mode"].i) if "ceil_mode" in attrs else False
    include_pad = bool(attrs["count_include_pad"].i) if "count_include_pad" in attrs else False
    if per_channel and (node.op_type != "AveragePool" or ceil_mode or auto_pad not in ("NOTSET", "VALID")
                        or (any(pads) and include_pad)):
        return False
    for i, size in enumerate((height, width)):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            if -(-size // strides[i]) != 1 or kernel[i] < size:
                return False
            continue
        before, after = (0, 0) if auto_pad == "VALID" else (pads[i], pads[i + 2])
        span = size + before + after - kernel[i]
        outputs = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        if outputs != 1 or kernel[i] - before < size:
            return False
    return True


def read_affine_head(
    head: Any, layer: str, score: str, shape: tuple[Any, ...], constant: Constant
) -> AffineHead | None:
    """The head's exact weights when it computes ``W @ mean_hw(A) + b``: a global average pool (GlobalAveragePool,
    a ReduceMean over exactly the spatial axes, or an AveragePool with one window averaging the ``shape``
    (N, K, h, w) map; see :func:`reduces_spatial` and :func:`pool_covers_map` with ``per_channel``), reshapes, and
    at most one Gemm / MatMul / 1x1 Conv (+ Add of a constant). ``constant(name)`` returns a constant tensor's value
    (None if it is not constant). None when the head is not of that form."""
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
            if (op == "GlobalAveragePool" or (op == "ReduceMean" and reduces_spatial(node, constant, True))
                    or (op == "AveragePool" and pool_covers_map(node, shape, per_channel=True))):
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
