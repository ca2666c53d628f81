"""Tiny real ONNX models for the tests, written with ``onnx.helper`` (opset 13) and checked with the checker.

Every builder writes the model to ``path`` and returns the weights it used, so that tests can compute the
expected outputs with numpy, independently of blackbox_xai.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
ELEM_TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "uint8": TensorProto.UINT8}


@dataclass
class Linear:
    """Weights of a Flatten -> Gemm classifier: logits = W @ x.ravel() + b (x: one sample in the input layout)."""

    W: np.ndarray  # (n_classes, features), float32
    b: np.ndarray  # (n_classes,), float32

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """Expected logits (N, C) in float64 for model inputs (N, ...) in the model's layout."""
        flat = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
        return flat @ self.W.astype(np.float64).T + self.b.astype(np.float64)


def _weights(rng: np.random.Generator, n_out: int, n_in: int, scale: float) -> Linear:
    W = (rng.standard_normal((n_out, n_in)) * scale / np.sqrt(n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    return Linear(W, b)


def _save(model: onnx.ModelProto, path: str | Path) -> Path:
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _make_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnx_builders")
    model.ir_version = 8  # readable by every onnxruntime >= 1.16
    return model


def _image_shape(layout: str, batch, channels: int, height, width) -> list:
    n = "N" if batch is None else batch
    return [n, channels, height, width] if layout == "NCHW" else [n, height, width, channels]


def linear_classifier(
    path: str | Path,
    height: int = 8,
    width: int = 8,
    n_classes: int = 5,
    layout: str = "NCHW",
    batch: int | None = None,
    dtype: str = "float32",
    seed: int = 0,
    softmax: bool = False,
    channels: int = 3,
    input_name: str = "image",
    output_name: str | None = None,
    scale: float = 0.05,
) -> Linear:
    """image -> [Cast to float] -> Flatten -> Gemm [-> Softmax]. ``batch=1`` fixes the batch dimension at 1.

    Returns the weights; logits = W @ (model input as float).ravel() + b in the input's own layout.
    """
    rng = np.random.default_rng(seed)
    features = channels * height * width
    weights = _weights(rng, n_classes, features, scale)
    output_name = output_name or ("probabilities" if softmax else "logits")
    nodes, current = [], input_name
    if dtype != "float32":
        nodes.append(helper.make_node("Cast", [current], ["as_float"], to=TensorProto.FLOAT))
        current = "as_float"
    nodes.append(helper.make_node("Flatten", [current], ["flat"], axis=1))
    gemm_out = "gemm_out" if softmax else output_name
    nodes.append(helper.make_node("Gemm", ["flat", "W", "b"], [gemm_out], transB=1))
    if softmax:
        nodes.append(helper.make_node("Softmax", [gemm_out], [output_name], axis=1))
    graph = helper.make_graph(
        nodes,
        "linear_classifier",
        [helper.make_tensor_value_info(input_name, ELEM_TYPES[dtype], _image_shape(layout, batch, channels, height, width))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N" if batch is None else batch, n_classes])],
        initializer=[numpy_helper.from_array(weights.W, "W"), numpy_helper.from_array(weights.b, "b")],
    )
    _save(_make_model(graph), path)
    return weights


def dynamic_size_classifier(path: str | Path, n_classes: int = 4, seed: int = 1, channels: int = 3) -> Linear:
    """NCHW image of any size -> GlobalAveragePool -> Flatten -> Gemm.

    logits = W @ (per-channel spatial mean of the input) + b.
    """
    rng = np.random.default_rng(seed)
    weights = _weights(rng, n_classes, channels, 1.0)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
        ],
        "dynamic_size_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(weights.W, "W"), numpy_helper.from_array(weights.b, "b")],
    )
    _save(_make_model(graph), path)
    return weights


def non_image_classifier(path: str | Path, shape: tuple[int, ...] = (10,), n_classes: int = 3, seed: int = 2) -> Linear:
    """A model whose input is [N, *shape] (e.g. [N, 10] or [N, 7, 5, 5]): Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    weights = _weights(rng, n_classes, int(np.prod(shape)), 1.0)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["features"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
        ],
        "non_image_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(weights.W, "W"), numpy_helper.from_array(weights.b, "b")],
    )
    _save(_make_model(graph), path)
    return weights


def nan_classifier(path: str | Path, height: int = 8, width: int = 8, n_classes: int = 3, seed: int = 3) -> Linear:
    """A linear classifier whose logits get Log(-1) = NaN added: every score is NaN."""
    rng = np.random.default_rng(seed)
    weights = _weights(rng, n_classes, 3 * height * width, 0.05)
    minus_one = numpy_helper.from_array(np.full((1,), -1.0, np.float32), "minus_one")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["gemm_out"], transB=1),
            helper.make_node("Log", ["minus_one"], ["nan"]),
            helper.make_node("Add", ["gemm_out", "nan"], ["logits"]),
        ],
        "nan_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(weights.W, "W"), numpy_helper.from_array(weights.b, "b"), minus_one],
    )
    _save(_make_model(graph), path)
    return weights


def two_output_classifier(
    path: str | Path, height: int = 8, width: int = 8, n_first: int = 6, n_second: int = 4, seed: int = 4
) -> tuple[Linear, Linear]:
    """One NCHW image input, two outputs: "aux_scores" (n_first classes, output 0) and "logits" (n_second, output 1).

    Returns the weights of both heads, in output order.
    """
    rng = np.random.default_rng(seed)
    features = 3 * height * width
    first, second = _weights(rng, n_first, features, 0.05), _weights(rng, n_second, features, 0.05)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W1", "b1"], ["aux_scores"], transB=1),
            helper.make_node("Gemm", ["flat", "W2", "b2"], ["logits"], transB=1),
        ],
        "two_output_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])],
        [
            helper.make_tensor_value_info("aux_scores", TensorProto.FLOAT, ["N", n_first]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_second]),
        ],
        initializer=[
            numpy_helper.from_array(first.W, "W1"), numpy_helper.from_array(first.b, "b1"),
            numpy_helper.from_array(second.W, "W2"), numpy_helper.from_array(second.b, "b2"),
        ],
    )
    _save(_make_model(graph), path)
    return first, second


def truncated_copy(source: str | Path, path: str | Path) -> Path:
    """The first half of the bytes of ``source``, written to ``path`` (a truncated download)."""
    data = Path(source).read_bytes()
    path = Path(path)
    path.write_bytes(data[: len(data) // 2])
    return path


def nan_when_dark_classifier(
    path: str | Path, height: int = 8, width: int = 8, n_classes: int = 3, threshold: float = 0.25, seed: int = 5
) -> Linear:
    """Linear logits plus Sqrt(min(input) - threshold): finite on bright images (every input value at least
    ``threshold``), NaN as soon as one value is darker, e.g. on images perturbed with black."""
    rng = np.random.default_rng(seed)
    weights = _weights(rng, n_classes, 3 * height * width, 0.05)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["gemm_out"], transB=1),
            helper.make_node("ReduceMin", ["flat"], ["darkest"], axes=[1], keepdims=1),
            helper.make_node("Sub", ["darkest", "threshold"], ["margin"]),
            helper.make_node("Sqrt", ["margin"], ["root"]),
            helper.make_node("Add", ["gemm_out", "root"], ["logits"]),
        ],
        "nan_when_dark_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[
            numpy_helper.from_array(weights.W, "W"), numpy_helper.from_array(weights.b, "b"),
            numpy_helper.from_array(np.array([threshold], np.float32), "threshold"),
        ],
    )
    _save(_make_model(graph), path)
    return weights
