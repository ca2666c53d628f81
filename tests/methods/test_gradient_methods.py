"""Tests of exact gradients (OnnxModel.gradient), the gradient family (blackbox_xai.methods.gradient) and the CAM
family's backward source, on real onnxruntime sessions of real ONNX graphs, against independent references.

References:

- ``tiny_cnn`` (written here with onnx.helper): Conv -> Relu -> Conv -> Relu ("layer") -> GlobalAveragePool ->
  Flatten -> Gemm [-> Softmax], with an NHWC variant (a Transpose first) and a 1-channel variant; its float64 numpy
  forward pass from PIXELS (with its own preprocessing: value scale, mean/std, BGR, luma, layout) gives central
  finite differences in pixel space, so the chain rule through the preprocessing is checked; its head is affine,
  so the layer gradient has a closed form.
- torch autograd (optional) of a torch network exported to ONNX, with the preprocessing done in torch from pixels,
  and a guided / deconvnet ReLU written as a torch autograd function.
- the zoo's EfficientNet-Lite0 against the plain-torch reference of tests/zoo/test_zoo_torch_reference.py.
- small_cnn (tests/onnx_builders.py) with non-affine heads for Grad-CAM from backward gradients vs finite
  differences.

Comparisons run with onnxruntime graph optimisations off (fused kernels can flip ReLU decisions).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_builders as ob
import pytest
from onnx import TensorProto, helper, numpy_helper

import blackbox_xai as bx
from blackbox_xai.errors import ModelError, ParameterError
from blackbox_xai.methods import canonical_name, make_method
from blackbox_xai.methods.cam import GradCAM
from blackbox_xai.methods.cam.gradients import BackwardGradients, gradient_source
from blackbox_xai.methods.fill import zero_pixel
from blackbox_xai.methods.gradient import (
    LRP,
    DeconvNet,
    GuidedBackprop,
    GuidedGradCAM,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    path_points,
)
from blackbox_xai.model.onnx_model import GradientUnavailableError
from blackbox_xai.targets import resolve_target

from blackbox_xai import autodiff

SIZE = 16
N_CLASSES = 5
LUMA = np.array([0.299, 0.587, 0.114])


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """||actual - expected|| / ||expected|| (L2 over all elements)."""
    expected = np.asarray(expected, np.float64)
    return float(np.linalg.norm(np.asarray(actual, np.float64) - expected) / max(np.linalg.norm(expected), 1e-30))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------------------------------------------
# The tiny CNN and its float64 numpy forward pass from pixels


@dataclass
class TinyNet:
    path: Path
    spec: bx.InputSpec
    weights: dict
    layout: str
    channels: int
    softmax: bool

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        """Float64 preprocessing written independently of blackbox_xai: (N, H, W, 3) pixels -> NCHW input."""
        x = np.asarray(pixels, np.float64)
        if self.channels == 1:
            x = (x @ LUMA)[..., None]
        elif self.spec.channel_order == "BGR":
            x = x[..., ::-1]
        scale = self.spec.value_range[1] / 255.0
        mean = np.asarray(self.spec.mean[:self.channels], np.float64)
        std = np.asarray(self.spec.std[:self.channels], np.float64)
        return ((x * scale - mean) / std).transpose(0, 3, 1, 2)

    def layer(self, pixels: np.ndarray) -> np.ndarray:
        w = self.weights
        x = np.maximum(ob.conv2d_reference(self.model_input(pixels), w["w1"], w["b1"], 2, 1), 0)
        return np.maximum(ob.conv2d_reference(x, w["w2"], w["b2"], 1, 1), 0)

    def head(self, layer: np.ndarray) -> np.ndarray:
        w = self.weights
        return layer.mean(axis=(2, 3)) @ np.asarray(w["W"], np.float64).T + w["b"]

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.head(self.layer(pixels))


def tiny_cnn(path: Path, layout: str = "NCHW", channels: int = 3, softmax: bool = False, bias: bool = True,
             spec: dict | None = None, seed: int = 0) -> TinyNet:
    rng = np.random.default_rng(seed)

    def he(shape):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)

    def small(n):
        return (rng.standard_normal(n) * 0.1 * bias).astype(np.float32)

    w = {"w1": he((6, channels, 3, 3)), "b1": small(6), "w2": he((8, 6, 3, 3)), "b2": small(8),
         "W": he((N_CLASSES, 8)) * 2, "b": small(N_CLASSES)}
    nodes, source = [], "image"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]))
        source = "nchw"
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes += [
        helper.make_node("Conv", [source, "w1"] + (["b1"] if bias else []), ["conv1"], strides=[2, 2], **conv),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node("Conv", ["relu1", "w2"] + (["b2"] if bias else []), ["conv2"], **conv),
        helper.make_node("Relu", ["conv2"], ["layer"]),
        helper.make_node("GlobalAveragePool", ["layer"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W"] + (["b"] if bias else []), ["logits"], transB=1),
    ]
    output = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
        output = "probabilities"
    shape = ["N", channels, SIZE, SIZE] if layout == "NCHW" else ["N", SIZE, SIZE, channels]
    names = ["w1", "w2", "W"] + (["b1", "b2", "b"] if bias else [])
    graph = helper.make_graph(nodes, "tiny_cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", N_CLASSES])],
                              initializer=[numpy_helper.from_array(w[k], k) for k in names])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    spec = bx.InputSpec.create(layout=layout, **(spec or {}))
    return TinyNet(path, spec, w, layout, channels, softmax)


VARIANTS = {
    "nchw-imagenet": dict(layout="NCHW", spec=dict(value_range=[0, 1], mean=[0.485, 0.456, 0.406],
                                                   std=[0.229, 0.224, 0.225])),
    "nhwc-bgr-255": dict(layout="NHWC", spec=dict(value_range=[0, 255], channel_order="BGR",
                                                  mean=[103.9, 116.8, 123.7], std=[57.4, 57.1, 58.4])),
    "luma-softmax": dict(layout="NCHW", channels=1, softmax=True, spec=dict(value_range=[0, 1], mean=[0.5],
                                                                             std=[0.25])),
    "softmax-127": dict(layout="NCHW", softmax=True, spec=dict(value_range=[0, 255], mean=[127.0], std=[128.0])),
}


def pixels_batch(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, SIZE, SIZE, 3)).astype(np.float32)


def load(net: TinyNet, **options) -> bx.OnnxModel:
    return bx.OnnxModel(net.path, spec=net.spec, optimize=False, **options)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gradient_models")


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def variant(request, folder: Path) -> TinyNet:
    return tiny_cnn(folder / f"tiny_{request.param}.onnx", **VARIANTS[request.param])


# --------------------------------------------------------------------------------------------------------------
# 1. OnnxModel.gradient against central finite differences in pixel space


def test_gradient_matches_pixel_finite_differences(variant: TinyNet) -> None:
    model = load(variant)
    pixels = pixels_batch(3)
    weights = np.zeros((3, N_CLASSES), np.float32)
    weights[0, 2] = 1.0
    weights[1, [1, 3]] = (1.0, -1.0)  # a contrast y_1 - y_3
    weights[2] = np.random.default_rng(1).standard_normal(N_CLASSES)
    logits, grads = model.gradient(pixels, weights)
    assert grads.shape == pixels.shape and grads.dtype == np.float32
    # the differentiated tensor is the logits, also behind a Softmax
    assert relative_error(logits, variant.logits(pixels)) < 1e-5
    rng = np.random.default_rng(2)
    h = 1e-3  # pixel units; float64 reference
    errors = []
    for n in range(3):
        def f(p):
            return float(variant.logits(p[None])[0] @ weights[n].astype(np.float64))
        directions = [rng.standard_normal(pixels.shape[1:]) for _ in range(4)]
        for index in rng.choice(pixels[n].size, 6, replace=False):  # single pixels, so channels are told apart
            unit = np.zeros(pixels[n].size)
            unit[index] = 1.0
            directions.append(unit.reshape(pixels.shape[1:]))
        fd = np.array([(f(pixels[n] + h * v) - f(pixels[n] - h * v)) / (2 * h) for v in directions])
        ours = np.array([np.sum(grads[n].astype(np.float64) * v) for v in directions])
        errors.append(relative_error(ours, fd))
    print(f"\n{variant.path.stem}: pixel-space gradient vs float64 central differences: max rel err "
          f"{max(errors):.1e}")
    assert max(errors) < 1e-4


def test_gradient_chain_rule_matches_model_input_gradient(variant: TinyNet) -> None:
    """wrt=["pixels", <input>]: the pixel gradient is the model-input gradient through the preprocessing."""
    model = load(variant)
    pixels = pixels_batch(2, seed=5)
    _, grads = model.gradient(pixels, np.eye(N_CLASSES, dtype=np.float32)[1], wrt=["pixels", "image"])
    raw = grads["image"].astype(np.float64)
    if variant.layout == "NHWC":
        raw = raw.transpose(0, 3, 1, 2)
    spec = variant.spec
    factor = spec.value_range[1] / 255.0 / np.asarray(spec.std[:variant.channels])
    per_channel = raw.transpose(0, 2, 3, 1) * factor  # (N, H, W, C) in the model's channel order
    if variant.channels == 1:
        expected = per_channel * LUMA
    elif spec.channel_order == "BGR":
        expected = per_channel[..., ::-1]
    else:
        expected = per_channel
    assert relative_error(grads["pixels"], expected) < 1e-6


def test_layer_gradient_closed_form(folder: Path) -> None:
    """The head is GAP -> Gemm, so d(w @ logits)/d layer = (w @ W) / (h w) everywhere."""
    net = tiny_cnn(folder / "tiny_layer.onnx")
    model = load(net)
    pixels = pixels_batch(2, seed=3)
    w = np.array([0.5, -1.0, 0.0, 2.0, 0.0], np.float32)
    _, grads = model.gradient(pixels, w, wrt=["layer"])
    assert set(grads) == {"layer"}
    layer = grads["layer"]
    expected = np.broadcast_to(((w @ net.weights["W"]) / (SIZE // 2) ** 2)[None, :, None, None], layer.shape)
    assert relative_error(layer, expected) < 1e-6


def test_gradient_batches_counts_and_cache(folder: Path) -> None:
    net = tiny_cnn(folder / "tiny_batches.onnx")
    model = load(net, batch_size=2)
    pixels = pixels_batch(5, seed=4)
    target = np.eye(N_CLASSES, dtype=np.float32)[3]
    _, grads = model.gradient(pixels, target)
    assert model.forward_passes == 5 and model.backward_passes == 5 and model.backward_seconds > 0
    single = np.concatenate([model.gradient(p[None], target)[1] for p in pixels])
    assert np.abs(grads - single).max() <= 1e-6 * np.abs(single).max()
    assert len(model._gradient_models) == 1  # built once for (wrt, rules, params)
    model.gradient(pixels[:1], target, wrt=["layer"])
    assert len(model._gradient_models) == 2
    one = model.gradient(pixels[0], target)[1]  # an (H, W, 3) image
    assert one.shape == (1, SIZE, SIZE, 3)


def test_gradient_errors(folder: Path) -> None:
    net = tiny_cnn(folder / "tiny_errors.onnx")
    model = load(net)
    target = np.eye(N_CLASSES, dtype=np.float32)[0]
    with pytest.raises(ParameterError, match="resiz"):
        model.gradient(np.zeros((1, SIZE + 2, SIZE, 3), np.float32), target)
    with pytest.raises(ParameterError, match="no tensor"):
        model.gradient(pixels_batch(1), target, wrt=["nope"])
    with pytest.raises(ParameterError, match="weights"):
        model.gradient(pixels_batch(2), np.ones((3, N_CLASSES), np.float32))
    with pytest.raises(ParameterError, match="rules"):
        model.gradient(pixels_batch(1), target, rules="magic")
    with pytest.raises(ParameterError, match="ONNX model"):
        Saliency().explain(bx.CallableModel(lambda p: p.reshape(len(p), -1)[:, :3],
                                            spec=bx.InputSpec(size=(SIZE, SIZE))), pixels_batch(1)[0])


def unsupported_model(path: Path) -> Path:
    """The tiny CNN with an op that has no backward rule between the layer and the head (an Einsum identity)."""
    net = tiny_cnn(path)
    proto = onnx.load(str(path))
    for node in proto.graph.node:
        if node.op_type == "GlobalAveragePool":
            node.input[0] = "odd"
    proto.graph.node.insert(4, helper.make_node("Einsum", ["layer"], ["odd"], equation="nchw->nchw"))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return net.path


def test_unsupported_op_is_a_clear_error_and_cam_falls_back(folder: Path) -> None:
    path = unsupported_model(folder / "tiny_unsupported.onnx")
    model = bx.OnnxModel(path, optimize=False)
    with pytest.raises(GradientUnavailableError, match="Einsum") as raised:
        model.gradient(pixels_batch(1), np.eye(N_CLASSES, dtype=np.float32)[0])
    assert isinstance(raised.value, ModelError)  # one line on the CLI
    with pytest.raises(ModelError, match="Einsum"):
        Saliency().explain(model, pixels_batch(1)[0], target=0)
    # the CAM family: the head (Einsum -> GAP -> Gemm) is not affine and has no backward graph
    exp = GradCAM(layer="layer").explain(model, pixels_batch(1)[0], target=0)
    assert exp.params["gradient"] == "finite-difference"
    assert "Einsum" in exp.extras["gradient_report"]["backward_unavailable"]
    with pytest.raises(ModelError, match="Einsum"):
        GradCAM(layer="layer", gradient="backward").explain(model, pixels_batch(1)[0], target=0)


# --------------------------------------------------------------------------------------------------------------
# 2. Against torch autograd (optional dev dependency)


def torch_network():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.conv3 = nn.Conv2d(8, 12, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.avg = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(12, N_CLASSES)
            self.relu = nn.ReLU()

        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.relu(self.conv2(x) + x)  # a residual connection
            x = self.pool(self.relu(self.conv3(x)))
            return self.fc(self.avg(x).flatten(1))

    net = Net().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 2.0)
    return net


IMAGENET = dict(value_range=[0, 1], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def exported(folder: Path):
    torch = pytest.importorskip("torch")
    net = torch_network()
    path = folder / "torch_net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, SIZE, SIZE), str(path), dynamo=False, opset_version=13,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return net, bx.OnnxModel(path, spec=bx.InputSpec.create(**IMAGENET), optimize=False)


def torch_pixel_gradient(net, pixels: np.ndarray, weights: np.ndarray, relu=None) -> np.ndarray:
    """d (weights @ net(preprocess(pixels))) / d pixels by torch autograd, the preprocessing done in torch."""
    import torch

    p = torch.tensor(pixels, dtype=torch.float32, requires_grad=True)
    mean = torch.tensor(IMAGENET["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET["std"]).view(1, 3, 1, 1)
    x = (p.permute(0, 3, 1, 2) / 255.0 - mean) / std
    if relu is not None:
        original = net.relu.forward
        net.relu.forward = relu
    try:
        logits = net(x)
    finally:
        if relu is not None:
            net.relu.forward = original
    (logits * torch.tensor(weights, dtype=torch.float32)).sum().backward()
    return p.grad.numpy()


def test_gradient_matches_torch_autograd(exported) -> None:
    net, model = exported
    pixels = pixels_batch(4, seed=7)
    weights = np.random.default_rng(0).standard_normal((4, N_CLASSES)).astype(np.float32)
    _, grads = model.gradient(pixels, weights)
    expected = torch_pixel_gradient(net, pixels, weights)
    error = relative_error(grads, expected)
    print(f"\ntorch-exported CNN (BN, residual, MaxPool): pixel gradient vs torch autograd rel err {error:.1e}")
    assert error < 1e-5


def guided_relu(kind: str):
    """A torch ReLU whose backward is guided backpropagation's or the DeconvNet's."""
    import torch

    class Guided(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            passed = grad.clamp(min=0)
            return passed * (x > 0) if kind == "guided" else passed

    return Guided.apply


@pytest.mark.parametrize("method", [GuidedBackprop, DeconvNet], ids=["guided", "deconvnet"])
def test_modified_backward_rules_match_torch(exported, method) -> None:
    net, model = exported
    pixels = pixels_batch(1, seed=8)[0]
    target = resolve_target(2, model.predict(pixels)[0])
    exp = method(reduce="sum").explain(model, pixels, target=2)
    expected = torch_pixel_gradient(net, pixels[None], target.weights, relu=guided_relu(method.rules))[0]
    error = relative_error(exp.extras["attribution"], expected)
    print(f"\n{method.name} vs torch custom-backward ReLU: rel err {error:.1e}")
    assert error < 1e-5
    np.testing.assert_allclose(exp.saliency, expected.sum(axis=-1), rtol=1e-4, atol=1e-6 * np.abs(expected).max())


# --------------------------------------------------------------------------------------------------------------
# 3. The methods on the tiny model


def test_registry_and_every_method_runs(folder: Path) -> None:
    net = tiny_cnn(folder / "tiny_registry.onnx")
    model = load(net, batch_size=8)
    for name in ("saliency", "inputxgradient", "smoothgrad", "integratedgradients", "guidedbackprop", "deconvnet",
                 "guidedgradcam", "lrp"):
        assert canonical_name(name) == name
    assert canonical_name("IG") == "integratedgradients" and canonical_name("Integrated-Gradients") == \
        "integratedgradients"
    image = np.random.default_rng(0).uniform(0, 255, (24, 20, 3)).astype(np.float32)  # not at the model size
    for name in ("saliency", "inputxgradient", "smoothgrad", "ig", "guidedbackprop", "deconvnet", "guidedgradcam",
                 "lrp"):
        params = {"n_samples": 10} if name == "smoothgrad" else {"n_steps": 8} if name == "ig" else {}
        exp = bx.explain(model, image, method=name, target=(1, 2), **params)
        assert exp.saliency.shape == (24, 20) and np.all(np.isfinite(exp.saliency))
        assert exp.extras["attribution"].shape == (SIZE, SIZE, 3)
        assert exp.timing["backward_passes"] >= 1
    with pytest.raises(ParameterError):
        make_method("smoothgrad", n_samples=0)
    with pytest.raises(ParameterError):
        make_method("ig", quadrature="simpson")
    with pytest.raises(ParameterError):
        make_method("lrp", rule="alphabeta", alpha=2.0, beta=0.0)
    with pytest.raises(ParameterError):
        make_method("saliency", reduce="median")


def test_saliency_and_input_x_gradient_definitions(folder: Path) -> None:
    net = tiny_cnn(folder / "tiny_defs.onnx", **VARIANTS["nchw-imagenet"])
    model = load(net)
    pixels = pixels_batch(1, seed=9)[0]
    target = resolve_target(4, model.predict(pixels)[0])
    _, grad = model.gradient(pixels, target.weights)
    saliency = Saliency().explain(model, pixels, target=4)
    np.testing.assert_allclose(saliency.saliency, np.abs(grad[0]).max(axis=-1), rtol=1e-6)
    ixg = InputXGradient().explain(model, pixels, target=4)
    # Captum's input x gradient on the normalised tensor, through the model input's own gradient
    _, raw = model.gradient(pixels, target.weights, wrt=["image"])
    x = net.model_input(pixels[None])
    captum = (x * raw["image"]).sum(axis=1)[0]
    assert relative_error(ixg.saliency, captum) < 1e-5
    assert relative_error(ixg.extras["attribution"], (pixels - zero_pixel(model.spec)) * grad[0]) < 1e-6
    black = InputXGradient(baseline="black").explain(model, pixels, target=4)
    assert relative_error(black.extras["attribution"], pixels * grad[0]) < 1e-6


def test_smoothgrad_seeded_and_batched(folder: Path) -> None:
    net = tiny_cnn(folder / "tiny_smooth.onnx")
    pixels = pixels_batch(1, seed=10)[0]
    first = SmoothGrad(n_samples=20, seed=3).explain(load(net, batch_size=8), pixels, target=1)
    again = SmoothGrad(n_samples=20, seed=3).explain(load(net, batch_size=8), pixels, target=1)
    np.testing.assert_array_equal(first.saliency, again.saliency)
    other_batch = SmoothGrad(n_samples=20, seed=3).explain(load(net, batch_size=32), pixels, target=1)
    np.testing.assert_allclose(other_batch.saliency, first.saliency, rtol=1e-5, atol=1e-7)
    other_seed = SmoothGrad(n_samples=20, seed=4).explain(load(net, batch_size=8), pixels, target=1)
    assert np.abs(other_seed.saliency - first.saliency).max() > 1e-3 * np.abs(first.saliency).max()
    assert first.timing["backward_passes"] == 20
    # the average of the gradients at the same noisy copies (the documented noise stream)
    model = load(net, batch_size=8)
    sigma = 0.15 * float(pixels.max() - pixels.min())
    rng = np.random.default_rng(3)
    noisy = np.concatenate([pixels[None] + np.float32(sigma) * rng.standard_normal((n, *pixels.shape),
                                                                                   dtype=np.float32)
                            for n in (8, 8, 4)])
    _, grads = model.gradient(noisy, np.eye(N_CLASSES, dtype=np.float32)[1])
    assert relative_error(first.extras["attribution"], grads.mean(axis=0)) < 1e-5


def test_path_points() -> None:
    for method in ("gausslegendre", "riemann-trapezoid", "riemann-left", "riemann-right", "riemann-middle"):
        alphas, weights = path_points(16, method)
        assert len(alphas) == 16 and abs(weights.sum() - 1) < 1e-12 and alphas.min() >= 0 and alphas.max() <= 1
        assert abs(weights @ alphas - 0.5) < 1e-12 if method != "riemann-left" and method != "riemann-right" \
            else abs(weights @ alphas - 0.5) <= 1 / 32 + 1e-12
    alphas, weights = path_points(8, "gausslegendre")
    assert abs(weights @ alphas ** 15 - 1 / 16) < 1e-12  # exact to degree 2n - 1


def test_integrated_gradients_linear_model_is_exact(folder: Path) -> None:
    """For a linear model the gradient is constant: IG = (x - x') * W for any number of steps."""
    weights = ob.linear_classifier(folder / "linear.onnx", height=SIZE, width=SIZE, n_classes=N_CLASSES, seed=1)
    model = bx.OnnxModel(folder / "linear.onnx", optimize=False)
    pixels = pixels_batch(1, seed=11)[0]
    w = weights.W[2].reshape(3, SIZE, SIZE).transpose(1, 2, 0) / 255.0  # value range [0, 1], NCHW
    expected = (pixels - 127.5) * w
    for method, passes in (("adaptive", 3), ("gausslegendre", 5), ("riemann-trapezoid", 3), ("riemann-right", 4)):
        exp = IntegratedGradients(n_steps=3, baseline="grey", quadrature=method).explain(model, pixels, target=2)
        assert relative_error(exp.extras["attribution"], expected) < 1e-5
        assert exp.extras["completeness_error"] < 1e-5
        assert exp.timing["backward_passes"] == passes  # the nodes, and both ends where the rule has not them


def test_integrated_gradients_completeness_tiny(folder: Path) -> None:
    net = tiny_cnn(folder / "tiny_ig.onnx", **VARIANTS["nchw-imagenet"])
    model = load(net, batch_size=16)
    pixels = pixels_batch(1, seed=12)[0]
    errors = {}
    for method in ("adaptive", "gausslegendre", "riemann-trapezoid"):
        exp = IntegratedGradients(n_steps=64, quadrature=method, baseline="zero").explain(model, pixels, target=0)
        expected = net.logits(pixels[None])[0, 0] - net.logits(zero_pixel(model.spec)[None, None, None]
                                                               * np.ones((1, SIZE, SIZE, 3)))[0, 0]
        assert abs(exp.extras["score"] - exp.extras["baseline_score"] - expected) < 1e-4 * max(1, abs(expected))
        assert abs(exp.saliency.sum() - exp.extras["attribution"].sum()) < 1e-4 * np.abs(exp.saliency).sum()
        errors[method] = exp.extras["completeness_error"]
    print(f"\ntiny CNN, IG completeness error with 64 steps: {errors}")
    assert max(errors.values()) < 0.01


def test_lrp_on_a_bias_free_relu_network(folder: Path) -> None:
    """LRP-0 (epsilon -> 0, no z^B) equals input x gradient on a bias-free ReLU network (Montavon et al. 2019);
    with the z^B rule at the input every bit of the output relevance reaches the pixels."""
    net = tiny_cnn(folder / "tiny_lrp.onnx", bias=False, **VARIANTS["nchw-imagenet"])
    model = load(net)
    pixels = pixels_batch(1, seed=13)[0]
    target = int(np.argmax(net.logits(pixels[None])[0]))
    lrp0 = LRP(epsilon=1e-9, zb=False).explain(model, pixels, target=target)
    ixg = InputXGradient(baseline="zero").explain(model, pixels, target=target)
    assert relative_error(lrp0.extras["attribution"], ixg.extras["attribution"]) < 1e-4
    for rule in (LRP(), LRP(rule="alphabeta"), LRP(rule="alphabeta", alpha=2.0, beta=1.0)):
        exp = rule.explain(model, pixels, target=target)
        assert abs(exp.extras["output_relevance"] - net.logits(pixels[None])[0, target]) < 1e-4
        print(f"\nLRP {rule.rule} alpha={rule.alpha} beta={rule.beta}: conservation error "
              f"{exp.extras['conservation_error']:.1e}")
        assert exp.extras["conservation_error"] < 1e-3
        assert abs(float(exp.saliency.sum()) - exp.extras["input_relevance"]) < 1e-3 * abs(
            exp.extras["output_relevance"])


def test_lrp_input_box(folder: Path) -> None:
    """The automatic z^B box (pixels normalised inside the gradient model, the box [0, 255] carried to the first
    layer) equals the builder's own scalar box when every channel has the same bounds; an NHWC model's Transpose
    stops the box: the first layer then keeps its LRP rule, and the explanation says why."""
    net = tiny_cnn(folder / "tiny_box.onnx", **VARIANTS["softmax-127"])
    model = load(net)
    pixels = pixels_batch(2, seed=15)
    w = np.eye(N_CLASSES, dtype=np.float32)[2]
    low, high = (0 - 127.0) / 128.0, (255 - 127.0) / 128.0
    for rules in ("lrp-epsilon", "lrp-alphabeta"):
        logits, automatic = model.gradient(pixels, w, rules=rules)
        _, explicit = model.gradient(pixels, w, rules=rules, input_bounds=(low, high))
        _, none = model.gradient(pixels, w, rules=rules, input_bounds=False)
        assert relative_error(automatic, explicit) < 1e-5
        assert relative_error(none, explicit) > 1e-3  # the box rule does change the first layer
        assert relative_error(logits, net.logits(pixels)) < 1e-5  # the normalisation inside the graph
    nhwc = tiny_cnn(folder / "tiny_box_nhwc.onnx", **VARIANTS["nhwc-bgr-255"])
    exp = LRP().explain(load(nhwc), pixels[0], target=1)
    assert "input_bounds" in exp.extras["zb_unavailable"]
    plain = LRP(zb=False).explain(load(nhwc), pixels[0], target=1)
    np.testing.assert_array_equal(exp.saliency, plain.saliency)


def test_guided_gradcam_is_guided_times_gradcam(folder: Path) -> None:
    net = tiny_cnn(folder / "tiny_ggc.onnx")
    model = load(net)
    pixels = pixels_batch(1, seed=14)[0]
    exp = GuidedGradCAM().explain(model, pixels, target=3)
    guided = GuidedBackprop().explain(model, pixels, target=3).extras["attribution"]
    cam = GradCAM().explain(model, pixels, target=3).saliency
    expected = guided * cam[..., None]
    np.testing.assert_allclose(exp.extras["attribution"], expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max())
    np.testing.assert_allclose(exp.saliency, np.abs(expected).max(axis=-1), rtol=1e-5,
                               atol=1e-7 * np.abs(expected).max())
    assert exp.params["layer"] == "layer" and exp.params["gradient"] == "exact"
    assert exp.params["gradient_source"] == "affine"


# --------------------------------------------------------------------------------------------------------------
# 4. Grad-CAM from backward gradients


@pytest.mark.parametrize("head", ["conv", "mlp"])
def test_backward_gradcam_matches_finite_differences(folder: Path, head: str) -> None:
    net = ob.small_cnn(folder / f"small_{head}.onnx", head=head, activation="Softplus", seed=3)
    model = bx.OnnxModel(folder / f"small_{head}.onnx", optimize=False)
    pixels = np.random.default_rng(4).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    for target in (0, (1, 2)):
        exact = GradCAM(layer="layer").explain(model, pixels, target)
        assert exact.params["gradient"] == "exact" and exact.params["gradient_source"] == "backward"
        assert exact.extras["head_passes"] == 1
        fd = GradCAM(layer="layer", gradient="finite-difference").explain(model, pixels, target)
        weights = cosine(exact.extras["channel_weights"], fd.extras["channel_weights"])
        maps = cosine(exact.saliency, fd.saliency)
        print(f"\n{head} head, target {target}: Grad-CAM backward vs finite differences: channel weights cosine "
              f"{weights:.7f}, maps cosine {maps:.7f}")
        assert weights > 0.999 and maps > 0.999
    # element-wise gradients vs a float64 central difference of the numpy head
    layer = model.layer_model("layer")
    state = layer.state(pixels)
    resolved = resolve_target(0, model.predict(pixels)[0])
    source = gradient_source(layer, state, resolved)
    assert isinstance(source, BackwardGradients)
    a = state.activations.astype(np.float64)
    rng = np.random.default_rng(5)
    directions = rng.standard_normal((6, *a.shape))
    h = 1e-5
    fd = [((net.head_logits((a + h * v)[None]) - net.head_logits((a - h * v)[None]))[0] @ resolved.weights) / (2 * h)
          for v in directions]
    ours = [float(np.sum(source.gradient() * v)) for v in directions]
    assert relative_error(ours, fd) < 1e-5
    # the same layer gradient through the full model (OnnxModel.gradient with wrt=[layer])
    _, grads = model.gradient(pixels, resolved.weights, wrt=["layer"])
    assert relative_error(grads["layer"][0], source.gradient()) < 1e-5


def test_backward_gradients_on_an_affine_head_equal_the_weights(folder: Path) -> None:
    ob.small_cnn(folder / "small_gap.onnx", head="gap", seed=5)
    model = bx.OnnxModel(folder / "small_gap.onnx", optimize=False)
    pixels = np.random.default_rng(6).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    affine = GradCAM(layer="layer").explain(model, pixels, 1)
    backward = GradCAM(layer="layer", gradient="backward").explain(model, pixels, 1)
    assert affine.params["gradient"] == "exact" and affine.params["gradient_source"] == "affine"
    assert backward.params["gradient"] == "exact" and backward.params["gradient_source"] == "backward"
    assert relative_error(backward.extras["channel_weights"], affine.extras["channel_weights"]) < 1e-5


# --------------------------------------------------------------------------------------------------------------
# 5. EfficientNet-Lite0 (the zoo) against the plain-torch reference


@pytest.fixture(scope="module")
def zoo_model():
    from blackbox_xai import zoo

    model = zoo.efficientnet_lite0(optimize=False, batch_size=16)  # the weights are a test dependency
    import cv2

    images = {name: cv2.resize(zoo.sample_image(name), (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
              for name in ("chelsea", "coffee")}
    return model, images


def activation_pattern(model: bx.OnnxModel, pixels: np.ndarray) -> list[np.ndarray]:
    """The inputs of every Clip (ReLU6) of the graph, in graph order, from an onnxruntime run (no optimisation)."""
    import onnxruntime as ort

    from blackbox_xai import graph

    proto = model.proto()
    names = [node.input[0] for node in proto.graph.node if node.op_type == "Clip"]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(graph.expose(proto, names).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(names, {model.spec.input: bx.model.preprocess.to_model_input(pixels, model.spec)})


@pytest.mark.slow
def test_zoo_input_gradients_match_torch(zoo_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against torch autograd of the plain-torch reference network (tests/zoo/test_zoo_torch_reference.py).

    EfficientNet-Lite0 is piecewise linear with millions of ReLU6 units: on "chelsea" a few pre-activations lie
    within 1e-6 of a kink, closer than two float32 implementations agree (the reference keeps batch norm unfolded
    and its convolutions are torch's: pre-activations differ by up to 5e-5), so the reference computes the
    gradient of a neighbouring linear piece there (7e-4 apart; 1e-6 on "coffee", with no such unit). The
    comparison at 1e-4 therefore runs the reference with the graph's own activation pattern: each ReLU6 of the
    reference passes its gradient where onnxruntime's forward pass had 0 < x < 6, so torch autograd differentiates
    the same linear piece; the plain reference's error is printed beside it."""
    torch = pytest.importorskip("torch")
    from test_zoo_torch_reference import _load_state_dict, _reference_forward

    model, images = zoo_model
    pixels = np.stack(list(images.values()))
    weights = np.zeros((2, 1000), np.float32)
    weights[0, 281] = 1.0  # tabby
    weights[1, [967, 968]] = (1.0, -1.0)  # espresso and not cup
    logits, grads = model.gradient(pixels, weights)
    state = {k: v.float() for k, v in _load_state_dict().items()}

    def reference_gradient() -> tuple[np.ndarray, np.ndarray]:
        p = torch.tensor(pixels, requires_grad=True)
        out = _reference_forward(state, (p.permute(0, 3, 1, 2) - 127.0) / 128.0)
        (out * torch.from_numpy(weights)).sum().backward()
        return p.grad.numpy(), out.detach().numpy()

    plain, plain_logits = reference_gradient()
    pattern = iter(activation_pattern(model, pixels))

    def relu6_with_pattern(x, inplace=False):
        pre = torch.from_numpy(next(pattern))
        assert pre.shape == x.shape
        return torch.where((pre > 0) & (pre < 6), x, torch.where(pre >= 6, torch.full_like(x, 6.0),
                                                                  torch.zeros_like(x)))

    monkeypatch.setattr(torch.nn.functional, "relu6", relu6_with_pattern)
    patterned, patterned_logits = reference_gradient()
    with pytest.raises(StopIteration):
        next(pattern)  # every ReLU6 of the reference took its pattern, in the graph's order
    errors = [relative_error(grads[i], patterned[i]) for i in range(2)]
    plain_errors = [relative_error(grads[i], plain[i]) for i in range(2)]
    print(f"\nEfficientNet-Lite0 pixel gradients vs torch autograd of the plain-torch reference: with the graph's "
          f"activation pattern rel err {errors[0]:.1e} (chelsea, 281), {errors[1]:.1e} (coffee, 967 - 968); plain "
          f"{plain_errors[0]:.1e}, {plain_errors[1]:.1e}; logits max abs diff "
          f"{np.abs(logits - plain_logits).max():.1e} (plain), {np.abs(logits - patterned_logits).max():.1e}")
    assert max(errors) < 1e-4
    assert max(plain_errors) < 1e-2  # a few units on other linear pieces


@pytest.mark.slow
def test_zoo_integrated_gradients_completeness(zoo_model) -> None:
    model, images = zoo_model
    errors = {}
    for baseline in ("black", "zero"):
        exp = IntegratedGradients(n_steps=64, baseline=baseline).explain(model, images["chelsea"], target="top1")
        assert 281 <= exp.target <= 285 and exp.timing["backward_passes"] == 64
        errors[baseline] = exp.extras["completeness_error"]
    fixed = IntegratedGradients(n_steps=64, quadrature="gausslegendre").explain(model, images["chelsea"], target="top1")
    print(f"\nEfficientNet-Lite0, chelsea, IG with 64 steps: completeness error, adaptive trapezoid: "
          f"{errors['black']:.2e} (black baseline), {errors['zero']:.2e} (zero baseline); 64 Gauss-Legendre nodes "
          f"(black): {fixed.extras['completeness_error']:.2e}")
    assert max(errors.values()) < 0.01


@pytest.mark.slow
def test_zoo_gradcam_backward_matches_finite_differences(zoo_model) -> None:
    model, images = zoo_model
    layer = "_blocks.15._project_conv.out"
    exact = GradCAM(layer=layer).explain(model, images["chelsea"], 281)
    assert exact.params["gradient"] == "exact" and exact.params["gradient_source"] == "backward"
    assert exact.extras["head_passes"] == 1
    fd = GradCAM(layer=layer, gradient="finite-difference").explain(model, images["chelsea"], 281)
    weights = cosine(exact.extras["channel_weights"], fd.extras["channel_weights"])
    maps = cosine(exact.saliency, fd.saliency)
    print(f"\nEfficientNet-Lite0 at {layer}: Grad-CAM backward vs finite differences: weights cosine {weights:.6f},"
          f" maps cosine {maps:.6f}; head passes {exact.extras['head_passes']} vs {fd.extras['head_passes']}")
    assert weights > 0.999 and maps > 0.999
    # at the default layer "auto" reads the affine head; the backward graph agrees
    affine = GradCAM().explain(model, images["chelsea"], 281)
    backward = GradCAM(gradient="backward").explain(model, images["chelsea"], 281)
    assert affine.params["gradient"] == "exact" and affine.params["gradient_source"] == "affine"
    assert backward.params["gradient"] == "exact" and backward.params["gradient_source"] == "backward"
    assert relative_error(backward.extras["channel_weights"], affine.extras["channel_weights"]) < 1e-5


@pytest.mark.slow
def test_zoo_guided_methods(zoo_model) -> None:
    """Guided Backprop, DeconvNet and Guided Grad-CAM on EfficientNet-Lite0, whose ReLU6 is Clip(x, 0, 6) with
    one-element bounds: the guided rules apply to it as to ReLU (gradients pass where 0 < x < 6 and the incoming
    gradient is positive), so guided maps are non-negative before the first layer's weights mix channels."""
    model, images = zoo_model
    pixels = images["chelsea"]
    guided = GuidedBackprop().explain(model, pixels, 281)
    deconv = DeconvNet().explain(model, pixels, 281)
    ggc = GuidedGradCAM().explain(model, pixels, 281)
    for exp in (guided, deconv, ggc):
        assert np.all(np.isfinite(exp.saliency)) and exp.saliency.max() > 0
    plain = Saliency().explain(model, pixels, 281)
    assert relative_error(guided.extras["attribution"], plain.extras["attribution"]) > 0.1  # the rules differ
    cam = GradCAM().explain(model, pixels, 281).saliency
    np.testing.assert_allclose(ggc.extras["attribution"], guided.extras["attribution"] * cam[..., None],
                               rtol=1e-5, atol=1e-7 * np.abs(guided.extras["attribution"]).max())
