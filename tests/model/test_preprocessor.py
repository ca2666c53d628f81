"""The Preprocessor: forward, its vector-Jacobian product, the relevance variant, the zero pixel and the ONNX nodes.

References are independent of the code under test: the Jacobian of ``forward`` by central finite differences
(forward is affine, so central differences in float64 are exact up to float32 rounding of its outputs), and
onnxruntime running the ONNX nodes.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from blackbox_xai.errors import GradientUnavailableError
from blackbox_xai.methods.fill import zero_pixel
from blackbox_xai.model import CallableModel, InputSpec, Preprocessor, to_model_input
from blackbox_xai.model.preprocess import LUMA, PIXEL_FEED

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

SPECS = {
    f"{layout}-{order}-{channels}ch-{top}-{'norm' if norm else 'plain'}": InputSpec.create(
        input="x", size=(3, 4), layout=layout, channel_order=order, channels=channels, value_range=(0.0, top),
        dtype="float32", **(IMAGENET if norm else {}))
    for layout, order, channels, top, norm in itertools.product(
        ("NCHW", "NHWC"), ("RGB", "BGR"), (3, 1), (1.0, 255.0), (False, True))
    if not (channels == 1 and order == "BGR")
}


def fd_jacobian(pre: Preprocessor, pixels: np.ndarray, step: float = 4.0) -> np.ndarray:
    """d forward / d pixels by central differences in float64: (input size, pixel size)."""
    flat = pixels.astype(np.float64).ravel()
    columns = []
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += step
        down[i] -= step
        plus = pre.forward(up.reshape(pixels.shape).astype(np.float32)).astype(np.float64)
        minus = pre.forward(down.reshape(pixels.shape).astype(np.float32)).astype(np.float64)
        columns.append(((plus - minus) / (2 * step)).ravel())
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_vjp_matches_finite_differences(name: str, rng: np.random.Generator) -> None:
    spec = SPECS[name]
    pre = Preprocessor(spec)
    pixels = rng.uniform(20, 235, (2, 3, 4, 3)).astype(np.float32)
    jacobian = fd_jacobian(pre, pixels)
    shape = pre.forward(pixels).shape
    cotangent = rng.standard_normal(shape).astype(np.float32)
    expected = (cotangent.astype(np.float64).ravel() @ jacobian).reshape(pixels.shape)
    got = pre.vjp(cotangent)
    assert got.shape == pixels.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_vjp_closed_form_for_imagenet_bgr_nchw() -> None:
    """d x_c / d pixel = value_range[1] / (255 std_c), channels swapped back from BGR."""
    spec = InputSpec.create(input="x", layout="NCHW", channel_order="BGR", value_range=(0.0, 1.0), **IMAGENET)
    grad = np.zeros((1, 3, 1, 1), np.float32)
    grad[0, 0] = 1.0  # the model's channel 0 is blue
    got = Preprocessor(spec).vjp(grad)[0, 0, 0]
    assert got[0] == 0 and got[1] == 0
    assert got[2] == pytest.approx(1.0 / (255.0 * IMAGENET["std"][0]), rel=1e-6)  # std in the model's order


def test_relevance_is_conserved_and_split_by_luma_contribution(rng: np.random.Generator) -> None:
    luma = Preprocessor(InputSpec.create(input="x", layout="NCHW", channels=1))
    pixels = rng.uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
    pixels[0, 0, 0] = 0.0  # a black pixel: split by the luma weights
    relevance = rng.standard_normal((2, 1, 3, 4)).astype(np.float32)
    got = luma.relevance(relevance, pixels)
    np.testing.assert_allclose(got.sum(axis=-1), relevance[:, 0], rtol=1e-5, atol=1e-6)
    share = pixels * LUMA / (pixels * LUMA).sum(axis=-1, keepdims=True).clip(1e-30)
    np.testing.assert_allclose(got[1], relevance[1, 0][..., None] * share[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[0, 0, 0], relevance[0, 0, 0, 0] * LUMA, rtol=1e-6)
    bgr = Preprocessor(InputSpec.create(input="x", layout="NHWC", channel_order="BGR", **IMAGENET))
    relevance = rng.standard_normal((1, 3, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(bgr.relevance(relevance), relevance[..., ::-1])  # moved, not rescaled


@pytest.mark.parametrize("name", sorted(SPECS))
def test_zero_pixel_maps_to_zero(name: str) -> None:
    spec = SPECS[name]
    if spec.value_range[1] == 1.0 and spec.mean[0] == 0.0:
        spec = spec.replace(mean=(0.2, 0.5, 0.7))  # a non-trivial mean for the unnormalised 0..1 models too
    pre = Preprocessor(spec)
    image = np.broadcast_to(pre.zero_pixel(), (1, 3, 4, 3)).astype(np.float32)
    if spec.channels == 1:  # a luma model sees the first mean on every channel's grey
        assert np.allclose(pre.zero_pixel(), pre.zero_pixel()[0])
    np.testing.assert_allclose(pre.forward(image), 0.0, atol=1e-5)
    assert np.array_equal(zero_pixel(spec), pre.zero_pixel())  # the fill module delegates


def run_onnx_nodes(pre: Preprocessor, ordered: np.ndarray) -> np.ndarray:
    """Run ``with_pixel_input`` on an identity graph whose input is the model input."""
    spec = pre.spec
    shape = list(pre.forward(np.zeros((1, *spec.size, 3), np.float32)).shape)
    elem = TensorProto.FLOAT16 if spec.dtype == "float16" else TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node("Identity", [spec.input], ["y"])], "identity",
                              [helper.make_tensor_value_info(spec.input, elem, [None, *shape[1:]])],
                              [helper.make_tensor_value_info("y", elem, [None, *shape[1:]])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto = pre.with_pixel_input(proto)
    assert [value.name for value in proto.graph.input] == [PIXEL_FEED]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {PIXEL_FEED: ordered})[0]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_onnx_nodes_equal_forward(name: str, rng: np.random.Generator) -> None:
    pre = Preprocessor(SPECS[name])
    pixels = rng.uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
    ordered = pre.ordered_pixels(pixels)
    got = run_onnx_nodes(pre, ordered)
    expected = pre.forward(pixels)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


def test_forward_equals_step_by_step_reference_and_keeps_dtypes(rng: np.random.Generator) -> None:
    pixels = rng.uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
    spec = InputSpec.create(input="x", layout="NCHW", channel_order="BGR", value_range=(0.0, 1.0), **IMAGENET)
    x = pixels[..., ::-1].astype(np.float64) / 255.0
    x = (x - np.array(IMAGENET["mean"])) / np.array(IMAGENET["std"])
    np.testing.assert_allclose(Preprocessor(spec)(pixels), x.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    assert np.array_equal(to_model_input(pixels, spec), Preprocessor(spec).forward(pixels))
    half = Preprocessor(spec.replace(dtype="float16"))
    assert half.forward(pixels).dtype == np.float16 and half.ordered_pixels(pixels).dtype == np.float16
    quantised = Preprocessor(InputSpec.create(input="x", layout="NHWC", value_range=(0.0, 255.0), dtype="uint8"))
    assert np.array_equal(quantised.forward(pixels), np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    with pytest.raises(GradientUnavailableError):
        quantised.vjp(np.ones((2, 3, 4, 3), np.float32))


def test_model_preprocessor_follows_the_spec() -> None:
    model = CallableModel(lambda batch: batch.reshape(len(batch), -1)[:, :2], spec=InputSpec(size=(2, 2)))
    first = model.preprocessor
    assert model.preprocessor is first and first.spec is model.spec
    model.spec = model.spec.replace(mean=(0.5, 0.5, 0.5))
    assert model.preprocessor is not first and model.preprocessor.spec is model.spec
