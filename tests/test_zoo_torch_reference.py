"""The torch-free EfficientNet-Lite0 ONNX build against torch (needs the optional dev dependency torch).

The reference is a plain torch forward pass written here from the EfficientNet-Lite definition: batch norm not
folded (eps 1e-3), TensorFlow SAME padding through F.pad, ReLU6, identity skips. It was cross-checked against the
``efficientnet-lite-pytorch`` 0.1.0 package the checkpoint was converted for (``EfficientNet.from_pretrained(
"efficientnet-lite0", weights_path=...)``): identical logits to float32 rounding; the ONNX graph differs from
both by at most 1.5e-5 on the inputs below.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from blackbox_xai import zoo

torch = pytest.importorskip("torch")
F = torch.nn.functional

STRIDE_2_BLOCKS = {1, 3, 5, 11}  # first block of the stages with stride 2
TOLERANCE = 1e-4


def _load_state_dict() -> dict:
    path = zoo.efficientnet_lite0_weights_path()
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13 has no weights_only
        return torch.load(str(path), map_location="cpu")


def _same_pad(x, kernel: int, stride: int):
    size = x.shape[-1]
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return F.pad(x, [total // 2, total - total // 2, total // 2, total - total // 2])


def _reference_forward(state: dict, x):
    """EfficientNet-Lite0 in plain torch: conv, batch norm (eps 1e-3), ReLU6, identity skips."""

    def conv_bn(x, conv: str, bn: str, stride: int = 1, groups: int = 1, act: bool = True):
        weight = state[f"{conv}.weight"]
        x = F.conv2d(_same_pad(x, weight.shape[-1], stride), weight, stride=stride, groups=groups)
        x = F.batch_norm(x, state[f"{bn}.running_mean"], state[f"{bn}.running_var"], state[f"{bn}.weight"],
                         state[f"{bn}.bias"], training=False, eps=1e-3)
        return F.relu6(x) if act else x

    x = conv_bn(x, "_conv_stem", "_bn0", stride=2)
    index = 0
    while f"_blocks.{index}._depthwise_conv.weight" in state:
        prefix = f"_blocks.{index}"
        inputs = x
        stride = 2 if index in STRIDE_2_BLOCKS else 1
        if f"{prefix}._expand_conv.weight" in state:
            x = conv_bn(x, f"{prefix}._expand_conv", f"{prefix}._bn0")
        x = conv_bn(x, f"{prefix}._depthwise_conv", f"{prefix}._bn1", stride=stride, groups=x.shape[1])
        x = conv_bn(x, f"{prefix}._project_conv", f"{prefix}._bn2", act=False)
        if stride == 1 and x.shape == inputs.shape:
            x = x + inputs
        index += 1
    x = conv_bn(x, "_conv_head", "_bn1")
    x = x.mean(dim=(2, 3))
    return F.linear(x, state["_fc.weight"], state["_fc.bias"])


@pytest.fixture(scope="module")
def onnx_session(tmp_path_factory: pytest.TempPathFactory) -> ort.InferenceSession:
    path = zoo.efficientnet_lite0_path(cache_dir=tmp_path_factory.mktemp("zoo_torch"))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    import cv2

    images = [cv2.resize(zoo.sample_image(name), (224, 224), interpolation=cv2.INTER_AREA)
              for name in zoo.SAMPLE_IMAGES]
    real = (np.stack(images).astype(np.float32) - 127.0) / 128.0
    noise = np.random.default_rng(0).uniform(-1, 1, size=(3, 224, 224, 3)).astype(np.float32)
    return np.ascontiguousarray(np.concatenate([real, noise]).transpose(0, 3, 1, 2))


def test_reader_matches_torch_load() -> None:
    state = _load_state_dict()
    ours = zoo.read_torch_checkpoint(zoo.efficientnet_lite0_weights_path())
    assert list(ours) == list(state)
    for name, tensor in state.items():
        expected = tensor.numpy()
        assert ours[name].shape == expected.shape, name
        np.testing.assert_array_equal(ours[name], expected.astype(ours[name].dtype), err_msg=name)


def test_onnx_matches_plain_torch(onnx_session: ort.InferenceSession, inputs: np.ndarray) -> None:
    state = {k: v.float() for k, v in _load_state_dict().items()}
    with torch.no_grad():
        expected = _reference_forward(state, torch.from_numpy(inputs)).numpy()
    logits = onnx_session.run(["logits"], {"input": inputs})[0]
    assert np.abs(logits - expected).max() < TOLERANCE
    np.testing.assert_array_equal(logits.argmax(1), expected.argmax(1))

