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


# ----------------------------------------------------------------------------------------------------------------
# A small CNN for the CAM family: conv body, then a head that is affine in the layer or not


def conv2d_reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int = 1, pad: int = 0) -> np.ndarray:
    """ONNX Conv (NCHW, no groups, no dilation) in float64 numpy: (N, C, H, W) -> (N, O, H', W')."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    weight = np.asarray(weight, np.float64)
    _, _, kh, kw = weight.shape
    out_h = (x.shape[2] - kh) // stride + 1
    out_w = (x.shape[3] - kw) // stride + 1
    out = np.zeros((len(x), len(weight), out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            window = x[:, :, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
            out += np.einsum("nchw,oc->nohw", window, weight[:, :, i, j])
    return out + np.asarray(bias, np.float64)[None, :, None, None]


@dataclass
class SmallCNN:
    """Weights of :func:`small_cnn` and its forward pass in float64 numpy, independent of onnxruntime.

    ``layer`` is the tensor name of the explained layer (the output of the body's second ReLU).
    """

    head: str  # "gap" (affine), "conv" or "mlp"
    body: list  # [(weight, bias, stride, pad)] of the body's Conv -> Relu layers
    weights: dict  # the head's weights by name
    activation: str = "Relu"  # the head's nonlinearity: "Relu" or "Softplus"
    layer: str = "layer"

    def activations(self, inputs: np.ndarray) -> np.ndarray:
        """The layer (N, K, h, w) for model inputs (N, 3, H, W)."""
        x = np.asarray(inputs, np.float64)
        for weight, bias, stride, pad in self.body:
            x = np.maximum(conv2d_reference(x, weight, bias, stride, pad), 0.0)
        return x

    def head_logits(self, activations: np.ndarray) -> np.ndarray:
        """Logits (N, C) of the head for activations (N, K, h, w)."""
        a = np.asarray(activations, np.float64)
        w = {k: np.asarray(v, np.float64) for k, v in self.weights.items()}
        if self.head == "conv":
            a = self.nonlinearity(conv2d_reference(a, w["Wh"], w["bh"], 1, 1))
        if self.head in ("gap", "conv"):
            return a.mean(axis=(2, 3)) @ w["W"].T + w["b"]
        hidden = self.nonlinearity(a.reshape(len(a), -1) @ w["W1"].T + w["b1"])
        return hidden @ w["W"].T + w["b"]

    def nonlinearity(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0) if self.activation == "Relu" else np.logaddexp(0.0, x)

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return self.head_logits(self.activations(inputs))


def small_cnn(
    path: str | Path,
    head: str = "gap",
    size: int = 32,
    channels: tuple[int, int] = (6, 8),
    n_classes: int = 5,
    hidden: int = 16,
    softmax: bool = False,
    dead_channels: tuple[int, ...] = (),
    activation: str = "Relu",
    seed: int = 0,
) -> SmallCNN:
    """image (N, 3, size, size) -> Conv 3x3/2 -> Relu -> Conv 3x3/2 -> Relu (= "layer", K = channels[1],
    size/4 x size/4) -> head -> "logits" [-> Softmax -> "probabilities"]. Heads:

    - "gap": GlobalAveragePool -> Flatten -> Gemm (affine in the layer: CAM's form);
    - "conv": Conv 3x3 (K -> K, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm;
    - "mlp": Flatten -> Gemm (-> ``hidden``) -> Relu -> Gemm.

    ``activation`` is the head's nonlinearity: "Relu" (piecewise linear: finite differences that straddle a kink
    are secants, not derivatives) or "Softplus" (smooth: finite differences converge to the gradient).

    ``dead_channels`` of the layer get a bias of -1000, so they are constant zero for any input in [0, 1].
    Weights are He-normal (the Gemm weights a bit larger), biases small.
    """
    if head not in ("gap", "conv", "mlp") or activation not in ("Relu", "Softplus"):
        raise ValueError(f"unknown head {head!r} or activation {activation!r}")
    rng = np.random.default_rng(seed)

    def he(shape, gain=2.0):
        fan_in = int(np.prod(shape[1:]))
        return (rng.standard_normal(shape) * np.sqrt(gain / fan_in)).astype(np.float32)

    first, second = channels
    body = [(he((first, 3, 3, 3)), (rng.standard_normal(first) * 0.1).astype(np.float32), 2, 1),
            (he((second, first, 3, 3)), (rng.standard_normal(second) * 0.1).astype(np.float32), 2, 1)]
    for k in dead_channels:
        body[1][1][k] = -1000.0
    side = size // 4
    inits = {"w1": body[0][0], "b1": body[0][1], "w2": body[1][0], "b2": body[1][1]}
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["conv1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node("Conv", ["relu1", "w2", "b2"], ["conv2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
        helper.make_node("Relu", ["conv2"], ["layer"]),
    ]
    weights: dict[str, np.ndarray] = {}
    if head == "conv":
        weights["Wh"] = he((second, second, 3, 3))
        weights["bh"] = (rng.standard_normal(second) * 0.1).astype(np.float32)
        nodes += [helper.make_node("Conv", ["layer", "Wh", "bh"], ["head_conv"], kernel_shape=[3, 3], pads=[1] * 4),
                  helper.make_node(activation, ["head_conv"], ["head_relu"])]
    score = "logits" if not softmax else "scores"
    if head in ("gap", "conv"):
        weights["W"] = he((n_classes, second), gain=6.0)
        weights["b"] = (rng.standard_normal(n_classes) * 0.1).astype(np.float32)
        nodes += [helper.make_node("GlobalAveragePool", ["head_relu" if head == "conv" else "layer"], ["pooled"]),
                  helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
                  helper.make_node("Gemm", ["flat", "W", "b"], [score], transB=1)]
    else:
        weights["W1"] = he((hidden, second * side * side))
        weights["b1h"] = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
        weights["W"] = he((n_classes, hidden), gain=6.0)
        weights["b"] = (rng.standard_normal(n_classes) * 0.1).astype(np.float32)
        nodes += [helper.make_node("Flatten", ["layer"], ["flat"], axis=1),
                  helper.make_node("Gemm", ["flat", "W1", "b1h"], ["hidden"], transB=1),
                  helper.make_node(activation, ["hidden"], ["hidden_relu"]),
                  helper.make_node("Gemm", ["hidden_relu", "W", "b"], [score], transB=1)]
    output = score
    if softmax:
        nodes.append(helper.make_node("Softmax", [score], ["probabilities"], axis=1))
        output = "probabilities"
    inits.update(weights)
    graph = helper.make_graph(
        nodes,
        f"small_cnn_{head}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(value, name) for name, value in inits.items()],
    )
    _save(_make_model(graph), path)
    if "b1h" in weights:
        weights["b1"] = weights.pop("b1h")
    return SmallCNN(head, body, weights, activation)


# ---------------------------------------------------------------------------------------------------------------
# Models for the hardening tests: hard labels, metadata, huge declared inputs, custom ops, external data,
# 5-D and several inputs, detector-like outputs
# ---------------------------------------------------------------------------------------------------------------

def argmax_classifier(path: str | Path, height: int = 8, width: int = 8, n_classes: int = 5, seed: int = 5) -> Linear:
    """NCHW image -> Flatten -> Gemm = "logits" -> ArgMax = "label" (int64). Outputs: "label" (output 0, the class
    index) and "logits" (output 1)."""
    rng = np.random.default_rng(seed)
    weights = _weights(rng, n_classes, 3 * height * width, 0.05)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "argmax_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(weights.W, "W"), numpy_helper.from_array(weights.b, "b")],
    )
    _save(_make_model(graph), path)
    return weights


def set_metadata(path: str | Path, props: dict[str, str]) -> Path:
    """Write ``props`` into the ``metadata_props`` of the model at ``path`` (in place)."""
    model = onnx.load(str(path))
    helper.set_model_props(model, props)
    return _save(model, path)


def pooled_classifier(path: str | Path, height: int | str, width: int | str, n_classes: int = 3,
                      seed: int = 6) -> Linear:
    """NCHW image (fixed ``height`` x ``width``, or named dynamic dims) -> GlobalAveragePool -> Flatten -> Gemm: a
    tiny file whatever size it declares. logits = W @ (per-channel mean of the input) + b."""
    rng = np.random.default_rng(seed)
    weights = _weights(rng, n_classes, 3, 1.0)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
        ],
        "pooled_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(weights.W, "W"), numpy_helper.from_array(weights.b, "b")],
    )
    _save(_make_model(graph), path)
    return weights


def custom_op_classifier(path: str | Path, domain: str = "com.example", op: str = "MyOp") -> Path:
    """NCHW 8x8 image -> ``domain``:``op`` (an op no runtime implements) -> GlobalAveragePool -> Flatten: 3 scores.
    Saved without the checker (it does not know the op)."""
    graph = helper.make_graph(
        [
            helper.make_node(op, ["image"], ["custom"], domain=domain),
            helper.make_node("GlobalAveragePool", ["custom"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["logits"], axis=1),
        ],
        "custom_op_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(domain, 1)])
    model.ir_version = 8
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def external_data_classifier(path: str | Path, location: str = "weights.bin", height: int = 8, width: int = 8,
                             n_classes: int = 4, seed: int = 7) -> Linear:
    """The linear classifier with its weights W and b in the external file ``location`` beside the model."""
    path = Path(path)
    weights = linear_classifier(path, height, width, n_classes, seed=seed)
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, location=location, size_threshold=0)
    return weights


def five_d_classifier(path: str | Path, n_classes: int = 3, seed: int = 8) -> Linear:
    """A clip input (N, 3, 2, 4, 4) (channels, frames, height, width) -> Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    weights = _weights(rng, n_classes, 3 * 2 * 4 * 4, 1.0)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["clip"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
        ],
        "five_d_classifier",
        [helper.make_tensor_value_info("clip", TensorProto.FLOAT, ["N", 3, 2, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(weights.W, "W"), numpy_helper.from_array(weights.b, "b")],
    )
    _save(_make_model(graph), path)
    return weights


def two_input_model(path: str | Path, n_classes: int = 3, seed: int = 9) -> Path:
    """An NCHW 8x8 image and a 2-vector "scale" (N, 1): logits = Gemm(Flatten(image)) * scale."""
    rng = np.random.default_rng(seed)
    weights = _weights(rng, n_classes, 3 * 8 * 8, 0.05)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["raw"], transB=1),
            helper.make_node("Mul", ["raw", "scale"], ["logits"]),
        ],
        "two_input_model",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(weights.W, "W"), numpy_helper.from_array(weights.b, "b")],
    )
    return _save(_make_model(graph), path)


def detector_like(path: str | Path, size: int = 16, n_values: int = 9, seed: int = 10) -> Path:
    """A YOLOv8-style head: NCHW image (dynamic size "H" x "W" when ``size`` is 0) -> Conv 1x1 (3 -> ``n_values``
    = 4 box values + 5 classes) -> Reshape to (N, n_values, H*W): one column per candidate, not class scores."""
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((n_values, 3, 1, 1)).astype(np.float32)
    side: int | str = size if size else "H"
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "K"], ["maps"]),
            helper.make_node("Reshape", ["maps", "shape"], ["output0"]),
        ],
        "detector_like",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, side, side if size else "W"])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, n_values, "anchors"])],
        initializer=[numpy_helper.from_array(kernel, "K"),
                     numpy_helper.from_array(np.array([0, n_values, -1], np.int64), "shape")],
    )
    return _save(_make_model(graph), path)
