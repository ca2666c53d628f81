"""Tests of the CAM family (blackbox_xai.methods.cam) against independent references, on real onnxruntime sessions.

Models:

- ``small_cnn`` (tests/onnx_builders.py): Conv -> Relu -> Conv -> Relu (the explained layer, 8 x 8 x 8 for a
  32 x 32 image) then a head that is affine in the layer (GlobalAveragePool -> Flatten -> Gemm, CAM's form) or not
  (Conv 3x3 -> Relu/Softplus -> GAP -> Gemm, or Flatten -> Gemm -> Relu/Softplus -> Gemm). Its float64 numpy
  forward pass gives the references: closed forms for the affine head, a float64 central difference with a tiny
  step for the others, and torch autograd on an equivalent torch model built from the same weights (optional).
- pytorch-grad-cam (PyPI ``grad-cam``, optional): the peer library, on a torch model exported to ONNX.
- the zoo's EfficientNet-Lite0 on skimage's "chelsea" (a tabby cat): the maps must peak on the cat.
- the nine light model-zoo graphs that ship inside the onnx wheel, with randomised weights
  (:func:`test_graph.randomise_weights`): every CAM method runs on each.

Finite differences on a piecewise linear head (ReLU) are secants: where the step straddles a kink they are not the
derivative. The smooth heads (Softplus) are where the finite-difference gradients must match autograd; the ReLU head
is checked against the documented estimator (a central difference at h = c * rms(A)) and its reported disagreement.
The finite-difference tests ask for ``gradient="finite-difference"``: "auto" may pick an exact source for a head
that is not affine (``test_auto_gradient_source_matches_references`` checks whatever it picks).

Errors are ``relative_error`` (test_graph): max |actual - expected| / max |expected|; the figures quoted in the
comments were measured on a 2-core CPU and are printed with ``pytest -s``.
"""

from __future__ import annotations

import time
import types
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnx_builders as ob
import pytest
from test_graph import LIGHT, LIGHT_DIR, randomise_weights, relative_error

import blackbox_xai as bx
from blackbox_xai import graph as G
from blackbox_xai.errors import GradientUnavailableError, ParameterError
from blackbox_xai.methods.cam import (
    CAM,
    CAM_METHODS,
    AblationCAM,
    CounterfactualCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from blackbox_xai.methods.cam.gradients import FiniteDifferenceGradients
from blackbox_xai.targets import resolve_target

SIZE = 32  # small_cnn input; its layer is K x 8 x 8
K = 8
DEAD = 3  # a channel of the layer that is constant zero (bias -1000)
TARGETS = [0, 3, (1, 2), [0, 4], "top1"]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def sample_pixels(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A smooth random colour field with a red rectangle: structured, so that the maps vary in space."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), size / 16)
    field = (field - field.min()) / (field.max() - field.min()) * 255
    field[size // 4:size // 2, size // 2 + 2:size - 4] = (250, 30, 30)
    return field.astype(np.float32)


def model_input(pixels: np.ndarray) -> np.ndarray:
    """The default spec by hand: pixels / 255, NCHW, float64."""
    return (np.asarray(pixels, np.float64) / 255.0).transpose(2, 0, 1)[None]


def target_weights(target, scores: np.ndarray) -> np.ndarray:
    """The score vector of a target, built here: class -> one-hot, list -> sum, (p, q) -> p - q."""
    w = np.zeros(len(scores))
    if target == "top1":
        w[int(np.argmax(scores))] = 1
    elif isinstance(target, tuple):
        w[target[0]], w[target[1]] = 1, -1
    elif isinstance(target, list):
        w[target] = 1
    else:
        w[target] = 1
    return w


def upsampled(grid: np.ndarray, size: tuple[int, int], relu: bool = True) -> np.ndarray:
    """What BaseCAM promises to do with a layer map: ReLU, divide by the maximum, bilinear resize."""
    grid = np.maximum(grid, 0) if relu else np.asarray(grid, np.float64)
    peak = grid.max()
    grid = grid / peak if peak > 0 else grid
    return cv2.resize(grid.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def layer_map(method, model: bx.OnnxModel, pixels: np.ndarray, target="top1") -> tuple[np.ndarray, dict]:
    """The method's map at the layer's resolution, before ReLU and upsampling."""
    layer = model.layer_model(method.layer)
    state = layer.state(pixels)
    resolved = resolve_target(target, model.predict(pixels)[0])
    extras: dict = {}
    grid = method.layer_map(layer, state, resolved, pixels, extras, lambda done, total: None)
    return np.asarray(grid, np.float64), extras


class Built:
    """A small_cnn written to disk, loaded as an OnnxModel, with its numpy reference and a test image."""

    def __init__(self, folder: Path, head: str, activation: str = "Relu", softmax: bool = False, seed: int = 0):
        path = folder / f"small_{head}_{activation}_{int(softmax)}.onnx"
        self.net = ob.small_cnn(path, head=head, activation=activation, softmax=softmax, dead_channels=(DEAD,),
                                seed=seed)
        self.path = path
        self.model = bx.OnnxModel(path)
        self.pixels = sample_pixels()
        self.x = model_input(self.pixels)
        self.A = self.net.activations(self.x)[0]  # (K, 8, 8) float64, independent of onnxruntime
        self.logits = self.net.head_logits(self.A[None])[0]

    def gradient(self, target) -> np.ndarray:
        """d score / d A by a float64 central difference of the numpy head, step 1e-6 (element-wise)."""
        w = target_weights(target, self.logits)
        eye = np.eye(self.A.size).reshape(-1, *self.A.shape)
        step = 1e-6
        up = self.net.head_logits(self.A[None] + step * eye) @ w
        down = self.net.head_logits(self.A[None] - step * eye) @ w
        return ((up - down) / (2 * step)).reshape(self.A.shape)


_BUILT: dict[tuple, Built] = {}


def built_model(folder: Path, head: str, activation: str = "Relu", softmax: bool = False) -> Built:
    """Each small model is built once per session."""
    key = (head, activation, softmax)
    if key not in _BUILT:
        _BUILT[key] = Built(folder, head, activation, softmax)
    return _BUILT[key]


@pytest.fixture(scope="session")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cam_models")


@pytest.fixture
def affine(folder: Path) -> Built:
    """GAP -> Gemm head, ending in Softmax (the explained score is the Softmax's input)."""
    return built_model(folder, "gap", softmax=True)


@pytest.fixture(params=[("conv", "Softplus"), ("mlp", "Softplus")], ids=["conv-head", "mlp-head"])
def smooth(request: pytest.FixtureRequest, folder: Path) -> Built:
    """Heads that are not affine but smooth: finite differences converge to the gradient."""
    return built_model(folder, *request.param)


@pytest.fixture
def relu_head(folder: Path) -> Built:
    return built_model(folder, "conv", "Relu")


@pytest.fixture(params=["gap", "conv", "mlp"], ids=["affine-head", "conv-head", "mlp-head"])
def any_head(request: pytest.FixtureRequest, folder: Path) -> Built:
    if request.param == "gap":
        return built_model(folder, "gap", softmax=True)
    return built_model(folder, request.param, "Softplus")


def test_reference_forward_matches_onnxruntime(any_head: Built, relu_head: Built) -> None:
    """The numpy references compute what the ONNX graphs compute (else every comparison below is moot)."""
    for built in (any_head, relu_head):
        raw = built.model.predict(built.pixels)[0]
        expected = built.logits
        if built.net.head == "gap":  # ends in Softmax
            expected = np.exp(expected - expected.max()) / np.exp(expected - expected.max()).sum()
        assert relative_error(raw, expected) < 1e-5
        layer = built.model.layer_model("layer")
        assert relative_error(layer.state(built.pixels).activations, built.A) < 1e-5
        live = [k for k in range(K) if k != DEAD]
        assert np.all(built.A[DEAD] == 0) and built.A[live].std(axis=(1, 2)).min() > 0


# --------------------------------------------------------------------------------------------------------------
# 1. Affine head: CAM = Grad-CAM, closed-form gradients


def test_affine_head_is_read_from_the_graph(affine: Built, folder: Path) -> None:
    layer = affine.model.layer_model()  # default layer: the input of the global average pooling
    assert layer.layer.tensor == "layer" and layer.score_tensor == "scores"  # the Softmax's input
    assert layer.affine is not None
    assert np.array_equal(layer.affine.weight, affine.net.weights["W"])
    assert np.array_equal(layer.affine.bias, affine.net.weights["b"])
    for head, activation in (("conv", "Relu"), ("conv", "Softplus"), ("mlp", "Relu"), ("mlp", "Softplus")):
        assert built_model(folder, head, activation).model.layer_model("layer").affine is None


@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_cam_equals_gradcam_on_affine_head(affine: Built, target) -> None:
    model, pixels = affine.model, affine.pixels
    cam = CAM().explain(model, pixels, target)
    grad = GradCAM().explain(model, pixels, target)
    # the closed form, from the independent activations and the Gemm weights
    w = target_weights(target, affine.logits) @ affine.net.weights["W"].astype(np.float64)
    expected = np.tensordot(w, affine.A, axes=1)
    grid, _ = layer_map(CAM(), model, pixels, target)
    assert relative_error(grid, expected) < 1e-5
    assert np.abs(cam.saliency - upsampled(expected, pixels.shape[:2])).max() < 1e-5
    # Grad-CAM's weights are W / (h w): the same map up to that factor, the same saliency to float32 rounding
    assert np.abs(cam.saliency - grad.saliency).max() < 1e-6
    if expected.max() > 0:
        assert cam.extras["cam_max"] / grad.extras["cam_max"] == pytest.approx(64, rel=1e-6)
        assert cam.extras["cam_max"] == pytest.approx(expected.max(), rel=1e-5)
    assert relative_error(grad.extras["channel_weights"], w / 64) < 1e-6
    assert cam.params["layer"] == grad.params["layer"] == "layer"  # the default resolved
    assert grad.params["gradient"] == "exact" and grad.params["gradient_source"] == "affine"
    assert grad.extras["head_passes"] == 0
    assert grad.extras["gradient_report"]["gradient_source"] == "affine"


def test_contrastive_gradcam_is_the_map_of_the_weight_difference(affine: Built) -> None:
    """"Why p and not q" (Prabhushankar et al. 2020): on a GAP + linear head, Grad-CAM of y_p - y_q weighs the
    channels by (W_p - W_q) / (h w), written here from the Gemm's rows, not from the target machinery."""
    model, pixels = affine.model, affine.pixels
    p, q = 1, 2
    W = affine.net.weights["W"].astype(np.float64)
    contrast = GradCAM().explain(model, pixels, (p, q))
    expected = np.tensordot(W[p] - W[q], affine.A, axes=1)
    assert relative_error(contrast.extras["channel_weights"], (W[p] - W[q]) / 64) < 1e-6
    assert np.abs(contrast.saliency - upsampled(expected, pixels.shape[:2])).max() < 1e-5
    # ... and not the map of p alone, nor of q alone
    for alone in (W[p], W[q]):
        assert np.abs(contrast.saliency - upsampled(np.tensordot(alone, affine.A, axes=1), pixels.shape[:2])).max() > 0.05


def test_fd_gradcam_weights_match_closed_form(affine: Built) -> None:
    """Finite differences on the affine head: channel weights = (w_target @ W) / (h w), default fd_step 0.05."""
    model, pixels = affine.model, affine.pixels
    worst = 0.0
    for target in TARGETS:
        exp = GradCAM(gradient="finite-difference").explain(model, pixels, target)
        expected = target_weights(target, affine.logits) @ affine.net.weights["W"].astype(np.float64) / 64
        error = relative_error(exp.extras["channel_weights"], expected)
        worst = max(worst, error)
        assert error < 1e-4, (target, error)
        assert exp.params["gradient"] == "finite-difference" and exp.params["layer"] == "layer"
        report = exp.extras["gradient_report"]
        rms = np.sqrt(np.mean(affine.A ** 2))
        assert report["fd_step"] == pytest.approx(0.05 * rms, rel=1e-5) and report["fd_relative_step"] == 0.05
        assert report["fd_disagreement"] < 1e-4  # linear: h and h/2 agree
        assert exp.extras["head_passes"] == 2 * K * 2  # K channel directions, central, re-checked at h/2
        affine_map = GradCAM().explain(model, pixels, target).saliency
        assert np.abs(exp.saliency - affine_map).max() < 1e-4
    print(f"\naffine head, fd Grad-CAM channel weights vs W/(hw): max relative error {worst:.2e} (fd_step 0.05)")


@pytest.mark.parametrize("fd_step,tolerance", [(0.05, 2e-4), (0.5, 2e-5)])
def test_elementwise_fd_gradients_match_closed_form(affine: Built, fd_step: float, tolerance: float) -> None:
    """Element-wise central differences (2 K h w head passes, x2 re-checked) on the affine head equal W / (h w)
    everywhere. A single activation moves the logit by step * W / 64 only, so the float32 rounding of the logits
    weighs more than for the channel directions: ~1e-4 at the default c = 0.05, ~1e-5 at c = 0.5 (a linear head
    has no truncation error, so the larger step is exact)."""
    model, pixels = affine.model, affine.pixels
    layer = model.layer_model("layer")
    state = layer.state(pixels)
    for target in (0, (1, 2)):
        resolved = resolve_target(target, model.predict(pixels)[0])
        source = FiniteDifferenceGradients(layer, state, resolved, step=fd_step)
        before = layer.head_passes
        gradient = source.gradient()
        expected = target_weights(target, affine.logits) @ affine.net.weights["W"].astype(np.float64) / 64
        error = relative_error(gradient, np.broadcast_to(expected[:, None, None], gradient.shape))
        print(f"\naffine head, element-wise fd gradient, c={fd_step}, target {target}: relative error {error:.2e}")
        assert error < tolerance
        assert layer.head_passes - before == source.report["fd_elementwise_head_passes"] == 2 * K * 64 * 2


def test_gradient_vocabulary_exact_auto_and_legacy_spellings(any_head: Built) -> None:
    """"exact" reads an affine head's weights, else runs the head's backward graph; "auto" picks the same where an
    exact source exists; the legacy "backward" forces its source; params record the vocabulary's name and the
    concrete source, and every source gives the same channel weights."""
    model, pixels = any_head.model, any_head.pixels  # relu=False: the signed map, never clipped to a constant
    concrete = "affine" if any_head.net.head == "gap" else "backward"
    auto = GradCAM(layer="layer", relu=False).explain(model, pixels, 0)
    exact = GradCAM(layer="layer", relu=False, gradient="exact").explain(model, pixels, 0)
    for exp in (auto, exact):
        assert exp.params["gradient"] == "exact" and exp.params["gradient_source"] == concrete
    np.testing.assert_array_equal(auto.saliency, exact.saliency)
    legacy = GradCAM(layer="layer", relu=False, gradient="backward").explain(model, pixels, 0)
    assert legacy.params["gradient"] == "exact" and legacy.params["gradient_source"] == "backward"
    assert relative_error(legacy.extras["channel_weights"], exact.extras["channel_weights"]) < 1e-5
    fd = GradCAM(layer="layer", relu=False, gradient="finite-difference").explain(model, pixels, 0)
    assert fd.params["gradient"] == fd.params["gradient_source"] == "finite-difference"
    assert relative_error(fd.extras["channel_weights"], exact.extras["channel_weights"]) < 1e-3


def test_exact_gradient_is_refused_where_the_head_has_no_backward_graph(folder: Path) -> None:
    from test_gradient_methods import pixels_batch, unsupported_model

    model = bx.OnnxModel(unsupported_model(folder / "tiny_unsupported_cam.onnx"), optimize=False)
    with pytest.raises(GradientUnavailableError, match="gradient='exact' is not available.*Einsum"):
        GradCAM(layer="layer", relu=False, gradient="exact").explain(model, pixels_batch(1)[0], target=0)
    auto = GradCAM(layer="layer", relu=False).explain(model, pixels_batch(1)[0], target=0)  # falls back, and says so
    assert auto.params["gradient"] == auto.params["gradient_source"] == "finite-difference"


def test_gradient_and_cam_need_an_affine_head(smooth: Built) -> None:
    with pytest.raises(ParameterError, match="affine"):
        GradCAM(layer="layer", gradient="affine").explain(smooth.model, smooth.pixels)
    with pytest.raises(ParameterError, match="CAM needs"):
        CAM(layer="layer").explain(smooth.model, smooth.pixels)
    with pytest.raises(ParameterError):
        GradCAM(gradient="autograd")
    with pytest.raises(ParameterError):
        GradCAM(fd_step=1.5)


# --------------------------------------------------------------------------------------------------------------
# 2. Heads that are not affine: finite differences against independent gradients


def gradcampp_weights(gradient: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential score): sum_ij a_kij ReLU(g_kij)."""
    g2 = gradient ** 2
    denominator = 2 * g2 + activations.sum(axis=(1, 2), keepdims=True) * gradient ** 3
    alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=denominator != 0)
    return (alpha * np.maximum(gradient, 0)).sum(axis=(1, 2))


def xgradcam_weights(gradient: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """XGrad-CAM (Fu et al. 2020): sum_ij A_kij / sum_ab A_kab * g_kij (0 for an all-zero channel)."""
    totals = activations.sum(axis=(1, 2))
    safe = np.where(totals != 0, totals, 1.0)
    return np.where(totals != 0, (activations * gradient).sum(axis=(1, 2)) / safe, 0.0)


def reference_maps(gradient: np.ndarray, A: np.ndarray) -> dict[str, np.ndarray]:
    """Each variant's layer map from a gradient (K, h, w), by its paper's formula."""
    return {
        "gradcam": np.tensordot(gradient.mean(axis=(1, 2)), A, axes=1),
        "hirescam": (gradient * A).sum(axis=0),
        "xgradcam": np.tensordot(xgradcam_weights(gradient, A), A, axes=1),
        "layercam": (np.maximum(gradient, 0) * A).sum(axis=0),
        "gradcampp": np.tensordot(gradcampp_weights(gradient, A), A, axes=1),
    }


FD = "finite-difference"
GRADIENT_METHODS = {"gradcam": GradCAM, "hirescam": HiResCAM, "xgradcam": XGradCAM, "layercam": LayerCAM,
                    "gradcampp": GradCAMPlusPlus}
# measured (see the printout): channel directions ~1e-5, element-wise ~2e-3 (float32 rounding of a small move)
MAP_TOLERANCE = {"gradcam": 1e-4, "hirescam": 5e-3, "xgradcam": 2e-3, "layercam": 5e-3, "gradcampp": 5e-3}


def torch_small_cnn(net: ob.SmallCNN, dtype=None):
    """The small_cnn as a torch module with the same weights (``features`` = the explained layer)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            (w1, b1, s1, p1), (w2, b2, s2, p2) = net.body
            self.conv1 = nn.Conv2d(3, len(w1), 3, stride=s1, padding=p1)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(len(w1), len(w2), 3, stride=s2, padding=p2)
            self.relu2 = nn.ReLU()  # the explained layer
            activation = nn.ReLU if net.activation == "Relu" else nn.Softplus
            w = net.weights
            if net.head == "conv":
                self.head_conv = nn.Conv2d(len(w2), len(w2), 3, padding=1)
                self.head_act = activation()
            if net.head in ("gap", "conv"):
                self.pool = nn.AdaptiveAvgPool2d(1)
            else:
                self.fc1 = nn.Linear(w["W1"].shape[1], len(w["W1"]))
                self.head_act = activation()
            self.fc = nn.Linear(w["W"].shape[1], len(w["W"]))
            values = {"conv1.weight": w1, "conv1.bias": b1, "conv2.weight": w2, "conv2.bias": b2,
                      "fc.weight": w["W"], "fc.bias": w["b"]}
            if net.head == "conv":
                values.update({"head_conv.weight": w["Wh"], "head_conv.bias": w["bh"]})
            if net.head == "mlp":
                values.update({"fc1.weight": w["W1"], "fc1.bias": w["b1"]})
            self.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in values.items()})

        def head(self, a):
            if net.head == "conv":
                a = self.head_act(self.head_conv(a))
            if net.head in ("gap", "conv"):
                return self.fc(torch.flatten(self.pool(a), 1))
            return self.fc(self.head_act(self.fc1(torch.flatten(a, 1))))

        def forward(self, x):
            return self.head(self.relu2(self.conv2(self.relu1(self.conv1(x)))))

    module = SmallCNN().eval()
    return module.to(dtype) if dtype is not None else module


def autograd_gradient(built: Built, target) -> np.ndarray:
    """d score / d A by torch autograd on the torch copy of the head, float64."""
    torch = pytest.importorskip("torch")
    module = torch_small_cnn(built.net, torch.float64)
    A = torch.tensor(built.A[None], dtype=torch.float64, requires_grad=True)
    logits = module.head(A)[0]
    w = torch.tensor(target_weights(target, built.logits), dtype=torch.float64)
    (logits @ w).backward()
    return A.grad[0].numpy()


@pytest.mark.parametrize("target", [0, (1, 2)], ids=str)
def test_fd_cam_variants_match_numpy_gradients(smooth: Built, target) -> None:
    """Grad-CAM's channel weights and every gradient variant's map against the float64 numpy gradient."""
    model, pixels = smooth.model, smooth.pixels
    gradient = smooth.gradient(target)
    expected = reference_maps(gradient, smooth.A)
    exp = GradCAM(layer="layer", gradient=FD).explain(model, pixels, target)
    weights_error = relative_error(exp.extras["channel_weights"], gradient.mean(axis=(1, 2)))
    assert weights_error < 1e-4
    assert exp.params["gradient"] == "finite-difference" and exp.params["layer"] == "layer"
    assert exp.extras["gradient_report"]["fd_disagreement"] < 1e-3
    errors = {"gradcam weights": weights_error}
    for name, method in GRADIENT_METHODS.items():
        grid, extras = layer_map(method(layer="layer", gradient=FD), model, pixels, target)
        errors[name] = relative_error(grid, expected[name])
        assert errors[name] < MAP_TOLERANCE[name], (name, errors[name])
        assert extras["gradient_report"]["gradient_source"] == "finite-difference"
        assert extras["gradient_report"]["fd_disagreement"] < 1e-2
    print(f"\n{smooth.net.head} head, target {target}: fd vs float64 numpy gradient: "
          + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))


@pytest.mark.parametrize("target", [0, (1, 2)], ids=str)
def test_fd_gradients_match_torch_autograd(smooth: Built, target) -> None:
    torch_gradient = autograd_gradient(smooth, target)
    assert relative_error(smooth.gradient(target), torch_gradient) < 1e-6  # the two references agree
    layer = smooth.model.layer_model("layer")
    state = layer.state(smooth.pixels)
    resolved = resolve_target(target, smooth.model.predict(smooth.pixels)[0])
    source = FiniteDifferenceGradients(layer, state, resolved)
    elementwise = relative_error(source.gradient(), torch_gradient)
    channel = relative_error(source.channel_sums() / 64, torch_gradient.mean(axis=(1, 2)))
    exp = GradCAM(layer="layer", gradient=FD).explain(smooth.model, smooth.pixels, target)
    weights = relative_error(exp.extras["channel_weights"], torch_gradient.mean(axis=(1, 2)))
    print(f"\n{smooth.net.head} head, target {target}: fd vs torch autograd: element-wise {elementwise:.1e}, "
          f"channel sums {channel:.1e}, Grad-CAM weights {weights:.1e}, "
          f"reported disagreement {source.report['fd_disagreement']:.1e}")
    assert elementwise < 5e-3 and channel < 1e-4 and weights < 1e-4
    assert source.report["fd_disagreement"] < 1e-2


@pytest.mark.parametrize("activation", ["Softplus", "Relu"])
@pytest.mark.parametrize("head", ["conv", "mlp"])
def test_auto_gradient_source_matches_references(folder: Path, head: str, activation: str) -> None:
    """Whatever source "auto" picks for a head that is not affine, the variants' maps match the formulas on the
    float64 gradient (finite-difference tolerances; an exact source does better: see the printout)."""
    built = built_model(folder, head, activation)
    for target in (0, (1, 2)):
        gradient = built.gradient(target)
        expected = reference_maps(gradient, built.A)
        errors = {}
        for name, method in GRADIENT_METHODS.items():
            grid, extras = layer_map(method(layer="layer"), built.model, built.pixels, target)
            source = extras["gradient_report"]["gradient_source"]
            errors[name] = relative_error(grid, expected[name])
            if source == FD and activation == "Relu":
                continue  # secants across kinks: see test_fd_on_relu_head_is_the_documented_secant
            assert errors[name] < MAP_TOLERANCE[name], (name, source, errors[name])
        print(f"\n{head} head ({activation}), target {target}, gradient {source!r}: maps vs float64 gradient: "
              + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))


def test_fd_on_relu_head_is_the_documented_secant(relu_head: Built) -> None:
    """On a ReLU head, Grad-CAM's finite-difference weight for channel k is the central difference along channel
    k set to ones, with h = c * rms(A): (f(A + h 1_k) - f(A - h 1_k)) / (2 h (h w)). Steps that straddle a kink
    make it differ from the derivative, and the h vs h/2 re-check reports it."""
    model, pixels = relu_head.model, relu_head.pixels
    target = 0
    w = target_weights(target, relu_head.logits)
    exact = autograd_gradient(relu_head, target).mean(axis=(1, 2)) if _has_torch() else None
    for c in (0.05, 0.01):
        h = c * np.sqrt(np.mean(relu_head.A ** 2))
        planes = np.zeros((K, *relu_head.A.shape))
        planes[np.arange(K), np.arange(K)] = 1.0
        up = relu_head.net.head_logits(relu_head.A[None] + h * planes) @ w
        down = relu_head.net.head_logits(relu_head.A[None] - h * planes) @ w
        secant = (up - down) / (2 * h) / 64
        exp = GradCAM(layer="layer", gradient=FD, fd_step=c).explain(model, pixels, target)
        error = relative_error(exp.extras["channel_weights"], secant)
        derivative = relative_error(relu_head.gradient(target).mean(axis=(1, 2)), secant)
        disagreement = exp.extras["gradient_report"]["fd_disagreement"]
        line = (f"\nrelu conv head, c={c}: fd weights vs float64 secant {error:.1e}; secant vs derivative "
                f"{derivative:.1e}; reported disagreement {disagreement:.1e}")
        if exact is not None:
            line += f"; fd weights vs torch autograd {relative_error(exp.extras['channel_weights'], exact):.1e}"
        print(line)
        assert error < 1e-4
        # the re-check sees the kinks: it reports the error's order of magnitude (1e-5 on a linear head)
        assert derivative / 4 <= disagreement <= 4 * derivative


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------------------------------
# 3. Gradient-free variants and the counterfactual


@pytest.mark.parametrize("kind", ["affine", "mlp"])
def test_ablation_cam_weights_are_relative_drops(affine: Built, folder: Path, kind: str) -> None:
    built = affine if kind == "affine" else built_model(folder, "mlp", "Relu")
    model, pixels = built.model, built.pixels
    target = 1
    w = target_weights(target, built.logits)
    # the full model in numpy, with channel k of the layer zeroed
    y = built.net.logits(built.x)[0] @ w
    ablated = []
    for k in range(K):
        A = built.net.activations(built.x)
        A[:, k] = 0
        ablated.append(built.net.head_logits(A)[0] @ w)
    expected = (y - np.asarray(ablated)) / y
    fast = AblationCAM(layer="layer").explain(model, pixels, target)
    slow = AblationCAM(layer="layer", head_only=False).explain(model, pixels, target)
    assert relative_error(fast.extras["channel_weights"], expected) < 1e-4
    assert fast.extras["channel_weights"][DEAD] == 0  # zeroing a zero channel changes nothing
    grid, _ = layer_map(AblationCAM(layer="layer"), model, pixels, target)
    assert relative_error(grid, np.tensordot(expected, built.A, axes=1)) < 1e-4
    assert np.array_equal(fast.saliency, slow.saliency)
    assert fast.extras["head_passes"] == slow.extras["head_passes"] == K + 1
    assert fast.timing["forward_passes"] == 2 and slow.timing["forward_passes"] == 2 + K


@pytest.mark.parametrize("fill", ["black", "grey"])
def test_score_cam_weights_are_masked_score_increases(affine: Built, fill: str) -> None:
    model, pixels = affine.model, affine.pixels
    target = 2
    exp = ScoreCAM(fill=fill).explain(model, pixels, target)
    A = affine.A
    baseline = np.zeros_like(pixels) if fill == "black" else np.full_like(pixels, 127.5)
    probabilities = model.predict(baseline[None])  # the model ends in Softmax
    base_score = probabilities[0, target]
    expected = np.zeros(K)
    for k in range(K):
        if np.ptp(A[k]) == 0:
            continue
        mask = cv2.resize(((A[k] - A[k].min()) / np.ptp(A[k])).astype(np.float32), (SIZE, SIZE),
                          interpolation=cv2.INTER_LINEAR)
        masked = baseline + mask[..., None] * (pixels - baseline)
        expected[k] = model.predict(masked[None])[0, target] - base_score
    weights = exp.extras["channel_weights"]
    print(f"\nScore-CAM ({fill}): weights vs recomputed C_k: max relative error {relative_error(weights, expected):.1e}")
    assert relative_error(weights, expected) < 1e-4
    assert weights[DEAD] == 0 and exp.extras["masked_passes"] == K - 1
    assert exp.extras["baseline_score"] == pytest.approx(base_score, rel=1e-6)
    assert exp.timing["forward_passes"] == 1 + 1 + 1 + (K - 1)  # clean, activations, baseline, masks
    grid, _ = layer_map(ScoreCAM(fill=fill), model, pixels, target)
    assert relative_error(grid, np.tensordot(expected, A, axes=1)) < 1e-4
    assert np.abs(exp.saliency - upsampled(np.tensordot(expected, A, axes=1), (SIZE, SIZE))).max() < 1e-3


def test_score_cam_with_logits(smooth: Built) -> None:
    """score="logit" on a model that outputs logits: C_k are differences of the raw outputs."""
    model, pixels = smooth.model, smooth.pixels
    exp = ScoreCAM(layer="layer", score="logit").explain(model, pixels, 0)
    A = smooth.A
    base = smooth.net.logits(np.zeros_like(smooth.x))[0, 0]
    expected = np.zeros(K)
    for k in np.flatnonzero(np.ptp(A, axis=(1, 2)) > 0):
        mask = cv2.resize(((A[k] - A[k].min()) / np.ptp(A[k])).astype(np.float32), (SIZE, SIZE))
        expected[k] = smooth.net.logits(model_input(mask[..., None] * pixels))[0, 0] - base
    assert relative_error(exp.extras["channel_weights"], expected) < 1e-4


def test_eigen_cam_is_the_first_principal_component(any_head: Built) -> None:
    from sklearn.decomposition import PCA

    for built in (any_head,):
        samples = built.A.reshape(K, -1).T  # positions x channels
        pca = PCA(n_components=1)
        projection = pca.fit_transform(samples)[:, 0]
        total = samples.sum(axis=1)
        if np.dot(projection - projection.mean(), total - total.mean()) < 0:
            projection = -projection
        expected = projection.reshape(built.A.shape[1:])
        method = EigenCAM(layer="layer")
        grid, extras = layer_map(method, built.model, built.pixels)
        assert relative_error(grid, expected) < 1e-5
        assert extras["explained_variance"] == pytest.approx(pca.explained_variance_ratio_[0], rel=1e-5)
        for target in (0, 4):  # class-agnostic
            exp = method.explain(built.model, built.pixels, target)
            assert np.abs(exp.saliency - upsampled(expected, (SIZE, SIZE))).max() < 1e-5
            assert exp.extras["head_passes"] == 0


def test_counterfactual_is_gradcam_with_negated_weights(any_head: Built) -> None:
    built = any_head
    for target in (0, (1, 2)):
        grad_grid, grad_extras = layer_map(GradCAM(layer="layer"), built.model, built.pixels, target)
        counter_grid, counter_extras = layer_map(CounterfactualCAM(layer="layer"), built.model, built.pixels, target)
        assert np.array_equal(counter_grid, -grad_grid)
        assert np.array_equal(counter_extras["channel_weights"], -grad_extras["channel_weights"])
        exp = CounterfactualCAM(layer="layer").explain(built.model, built.pixels, target)
        assert np.abs(exp.saliency - upsampled(-grad_grid, (SIZE, SIZE))).max() < 1e-6
        assert exp.method == "counterfactual"


def test_relu_off_keeps_the_signed_map(affine: Built) -> None:
    """relu=False: the saliency is the signed layer map divided by its maximum (negative evidence kept)."""
    grid, _ = layer_map(GradCAM(), affine.model, affine.pixels, (1, 2))
    exp = GradCAM(relu=False).explain(affine.model, affine.pixels, (1, 2))
    expected = cv2.resize((grid / grid.max()).astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    assert grid.min() < 0 < grid.max()
    assert np.abs(exp.saliency - expected).max() < 1e-6 and exp.saliency.min() < 0


# --------------------------------------------------------------------------------------------------------------
# 4. The peer library: pytorch-grad-cam on the torch model, blackbox_xai on its ONNX export


def import_pytorch_grad_cam():
    """pytorch_grad_cam (PyPI grad-cam). Its package __init__ imports torchvision for helpers these tests do not
    use (image preprocessing, detection targets); when torchvision is absent (it pins a torch build of its own),
    a stub stands in during the import only."""
    import importlib
    import importlib.util
    import sys

    pytest.importorskip("torch")
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        pytest.skip("pytorch-grad-cam (pip install grad-cam) is not installed")
    if importlib.util.find_spec("torchvision") is not None:
        return importlib.import_module("pytorch_grad_cam")
    stubs = {}
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops"):
        stub = types.ModuleType(name)
        stub.__getattr__ = lambda attribute, _name=name: _unavailable(f"{_name}.{attribute}")
        stubs[name] = stub
    stubs["torchvision"].transforms = stubs["torchvision.transforms"]
    stubs["torchvision"].ops = stubs["torchvision.ops"]
    stubs["torchvision.transforms"].functional = stubs["torchvision.transforms.functional"]
    sys.modules.update(stubs)
    try:
        return importlib.import_module("pytorch_grad_cam")
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


def _unavailable(name: str):
    def fail(*args, **kwargs):
        raise RuntimeError(f"{name} is not available (torchvision is not installed)")

    return fail


def export_to_onnx(module, path: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(1, 3, SIZE, SIZE), str(path), dynamo=False, opset_version=13,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return path


PEER = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "LayerCAM", "EigenCAM"]
OURS = {"GradCAM": GradCAM, "GradCAMPlusPlus": GradCAMPlusPlus, "XGradCAM": XGradCAM, "HiResCAM": HiResCAM,
        "LayerCAM": LayerCAM, "EigenCAM": EigenCAM}


def peer_postprocess(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's post-processing of a layer map (BaseCAM.compute_cam_per_layer, aggregate_multi_layers,
    scale_cam_image): ReLU, min-max scaling (eps 1e-7), cv2 bilinear resize, ReLU, min-max scaling again."""

    def scale(image):
        image = image - image.min()
        return image / (1e-7 + image.max())

    image = scale(np.maximum(grid, 0).astype(np.float32))
    image = cv2.resize(image, (size[1], size[0]))
    return scale(np.maximum(image, 0))


@pytest.mark.parametrize("gradient", ["auto", FD])
@pytest.mark.parametrize("head,activation", [("gap", "Relu"), ("conv", "Softplus"), ("conv", "Relu")],
                         ids=["affine-head", "softplus-conv-head", "relu-conv-head"])
def test_pytorch_grad_cam_agrees(folder: Path, head: str, activation: str, gradient: str) -> None:
    """Layer maps (before ReLU and scaling) of blackbox_xai on the ONNX export against pytorch-grad-cam's
    ``get_cam_image`` on the torch model (autograd gradients).

    Definitional differences: pytorch-grad-cam's Grad-CAM++ adds 1e-6 to the denominator of a_kij (compared here
    with the paper's formula on pytorch-grad-cam's own activations and gradients); its Eigen-CAM keeps the SVD's
    sign (ours is fixed to correlate positively with the channel sum); its final map is min-max scaled twice
    around the resize, ours is divided by its maximum once (checked by redoing its post-processing on our map).
    """
    peer = import_pytorch_grad_cam()
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = ob.small_cnn(folder / f"peer_{head}_{activation}.onnx", head=head, activation=activation, seed=7)
    module = torch_small_cnn(net)
    path = export_to_onnx(module, folder / f"exported_{head}_{activation}.onnx")
    proto = onnx.load(str(path))
    assert {i.name for i in proto.graph.initializer} >= {"conv1.weight", "fc.weight"}  # weights inside the file
    layer = next(n.output[0] for n in proto.graph.node if n.name == "/relu2/Relu")
    model = bx.OnnxModel(path)
    assert (model.layer_model(layer).affine is not None) == (head == "gap")
    pixels = sample_pixels(seed=3)
    x = torch.from_numpy(model_input(pixels).astype(np.float32))
    scores = module(x)[0].detach().numpy()
    assert relative_error(model.predict(pixels)[0], scores) < 1e-5
    rows = []
    for target in (int(np.argmax(scores)), int(np.argmin(scores))):
        for name in PEER:
            with getattr(peer, name)(model=module, target_layers=[module.relu2]) as cam:
                targets = [ClassifierOutputTarget(target)]
                theirs = cam(input_tensor=x, targets=targets)[0]
                store = cam.activations_and_grads
                acts = store.activations[0].numpy()
                grads = store.gradients[0].numpy() if store.gradients else None
                raw = cam.get_cam_image(x, module.relu2, targets, acts, grads, False)[0].astype(np.float64)
            params = {"layer": layer} if name == "EigenCAM" else {"layer": layer, "gradient": gradient}
            ours, extras = layer_map(OURS[name](**params), model, pixels, target)
            exp = OURS[name](**params).explain(model, pixels, target)
            reference = raw
            if name == "GradCAMPlusPlus":  # the paper's a_kij, without pytorch-grad-cam's eps
                a, g = acts[0].astype(np.float64), grads[0].astype(np.float64)
                reference = np.tensordot(gradcampp_weights(g, a), a, axes=1)
            sign = 1.0
            if name == "EigenCAM" and np.dot(raw.ravel(), ours.ravel()) < 0:
                sign = -1.0  # pytorch-grad-cam leaves the principal component's sign to the SVD
            post = float(np.abs(peer_postprocess(sign * ours, pixels.shape[:2]) - theirs).max())
            report = extras.get("gradient_report", {})
            rows.append({
                "target": target, "name": name, "sign": sign, "post": post,
                "error": relative_error(ours, sign * reference), "corr": correlation(ours, sign * reference),
                "eps": relative_error(raw, reference), "final": float(np.abs(exp.saliency - theirs).max()),
                "gradient": report.get("gradient_source", "-"), "fd": report.get("fd_disagreement", float("nan")),
            })
    print(f"\npytorch-grad-cam vs blackbox_xai, {head} head ({activation}), gradient={gradient!r}, layer {layer}:")
    for r in rows:
        print(f"  class {r['target']} {r['name']:16s} layer map: max rel err {r['error']:.1e}, corr {r['corr']:.6f}"
              f" | final maps: max abs diff {r['final']:.2f}, after pytorch-grad-cam's post-processing of ours "
              f"{r['post']:.1e} | sign {r['sign']:+.0f}, gradients {r['gradient']} (fd disagreement {r['fd']:.1e})"
              + (f", eps effect {r['eps']:.1e}" if r["name"] == "GradCAMPlusPlus" else ""))
    # exact gradients (an affine head, or any exact source) agree to float32 rounding; finite differences to their
    # truncation error (smooth head) or up to the secants across ReLU kinks (ReLU head)
    for r in rows:
        if r["name"] == "EigenCAM" or r["gradient"] != FD:
            limit, min_corr = 1e-4, 1 - 1e-8
        else:
            limit, min_corr = {"Softplus": (5e-2, 0.999), "Relu": (0.3, 0.99)}[activation]
        assert r["error"] < limit and r["corr"] > min_corr, r
        if r["gradient"] != "finite-difference" and r["name"] != "GradCAMPlusPlus":
            assert r["post"] < 1e-4, r  # same layer map: same final map after the same post-processing


# --------------------------------------------------------------------------------------------------------------
# 5. EfficientNet-Lite0 on chelsea: the maps peak on the cat

# Boxes in the coordinates of skimage's chelsea (451 x 300 pixels), chosen by looking at the image: a tabby cat's
# face fills most of the frame, its eyes near (175, 115) and (320, 140), its nose at (265, 240); the background
# (an out-of-focus wall) is the right edge, x > 380, and the top corners. HEAD_BOX holds the eyes, nose and muzzle
# (0.46 of the image); CAT_BOX, the generous one, adds the forehead, ears and cheeks (0.75 of the image).
HEAD_BOX = (110, 60, 370, 300)  # x0, y0, x1, y1
CAT_BOX = (40, 0, 380, 300)


def box_area(box: tuple[int, int, int, int], shape: tuple[int, int] = (300, 451)) -> float:
    return (box[2] - box[0]) * (box[3] - box[1]) / (shape[0] * shape[1])


def in_box(point: tuple[int, int], box: tuple[int, int, int, int]) -> bool:
    y, x = point
    return box[0] <= x < box[2] and box[1] <= y < box[3]


def box_mass(saliency: np.ndarray, box: tuple[int, int, int, int]) -> float:
    positive = np.maximum(saliency, 0)
    return float(positive[box[1]:box[3], box[0]:box[2]].sum() / positive.sum())


@pytest.fixture(scope="module")
def zoo_model():
    from blackbox_xai import zoo

    return zoo.efficientnet_lite0(), zoo.sample_image("chelsea")


def check_on_the_cat(exp, label: str) -> None:
    saliency = exp.saliency
    assert saliency.shape == (300, 451) and np.isfinite(saliency).all()
    peak = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    mass, head = box_mass(saliency, CAT_BOX), box_mass(saliency, HEAD_BOX)
    print(f"\n{label}: class {exp.target} ({exp.labels}), peak (x, y) = ({peak[1]}, {peak[0]}), "
          f"mass in the cat box {mass:.2f} (area {box_area(CAT_BOX):.2f}), in the head box {head:.2f} "
          f"(area {box_area(HEAD_BOX):.2f}), {exp.timing['seconds']:.1f} s, {exp.timing['forward_passes']} passes")
    assert in_box(peak, HEAD_BOX), peak
    assert mass > 0.5 and mass > box_area(CAT_BOX)
    assert head > box_area(HEAD_BOX)  # more concentrated on the face than a uniform map


def test_zoo_gradcam_peaks_on_the_cat(zoo_model) -> None:
    model, image = zoo_model
    exp = GradCAM().explain(model, image)
    assert 281 <= exp.target <= 285, exp.labels  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert exp.params["gradient"] == "exact" and exp.params["gradient_source"] == "affine"
    assert exp.params["layer"].startswith("_conv_head")
    check_on_the_cat(exp, "EfficientNet-Lite0 Grad-CAM")


@pytest.mark.slow
def test_zoo_scorecam_peaks_on_the_cat(zoo_model) -> None:
    model, image = zoo_model
    exp = ScoreCAM().explain(model, image)
    check_on_the_cat(exp, "EfficientNet-Lite0 Score-CAM")


# --------------------------------------------------------------------------------------------------------------
# 6. The light model zoo, randomised: every CAM method runs on each graph

FC_HEADS = {"bvlc_alexnet", "vgg19", "zfnet512"}  # Flatten -> Gemm -> Relu -> ... : not affine
ELEMENTWISE = {"gradcampp", "layercam"}  # need 2 K h w head passes with finite differences
_light_models: dict[str, bx.OnnxModel] = {}


def light_model(name: str) -> bx.OnnxModel:
    if name not in _light_models:
        _light_models.clear()  # one at a time: they are large
        proto = randomise_weights(G.load(LIGHT_DIR / f"light_{name}.onnx"), seed=sum(map(ord, name)))
        _light_models[name] = bx.OnnxModel(proto)
    return _light_models[name]


def run_light(name: str, methods, **params) -> dict[str, str]:
    """Run each method on a random image; returns the gradient source each one used."""
    model = light_model(name)
    layer = model.layer_model()
    assert (layer.affine is None) == (name in FC_HEADS), name
    pixels = np.random.default_rng(0).uniform(0, 255, (224, 224, 3)).astype(np.float32)
    sources = {}
    for method_class in methods:
        began = time.perf_counter()
        if method_class is CAM and layer.affine is None:
            with pytest.raises(ParameterError, match="CAM needs"):
                CAM().explain(model, pixels)
            continue
        exp = method_class(**(params if method_class.uses_gradients else {})).explain(model, pixels)
        saliency = exp.saliency
        assert saliency.shape == (224, 224) and np.isfinite(saliency).all(), method_class.name
        assert saliency.min() >= 0 and saliency.max() <= 1 + 1e-6, method_class.name
        if method_class in (GradCAM, EigenCAM, AblationCAM):
            assert np.ptp(saliency) > 1e-3, f"{name} {method_class.name}: constant map"
        sources[method_class.name] = exp.params.get("gradient", "-")
        print(f"\n{name} {method_class.name}: {time.perf_counter() - began:.1f} s, layer {exp.params['layer']}, "
              f"head passes {exp.extras.get('head_passes')}, forward passes {exp.timing['forward_passes']}, "
              f"gradient {sources[method_class.name]}, ptp {np.ptp(saliency):.3f}")
    return sources


SCORECAM_FAST = {"squeezenet", "shufflenet", "bvlc_alexnet"}  # Score-CAM under ~10 s here


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg19" else n for n in LIGHT])
def test_light_zoo_cam_methods(name: str) -> None:
    """Every method on the default layer ("auto" gradients). Score-CAM (K full forward passes) only where it is
    cheap; Grad-CAM++ and Layer-CAM on the fully connected heads only when "auto" has an exact source there (else
    element-wise finite differences: test_light_zoo_elementwise_fd_on_fc_heads)."""
    methods = [m for m in CAM_METHODS if m.name not in ELEMENTWISE and (m is not ScoreCAM or name in SCORECAM_FAST)]
    sources = run_light(name, methods)
    if name not in FC_HEADS or sources["gradcam"] != FD:
        run_light(name, [GradCAMPlusPlus, LayerCAM])
    if name in FC_HEADS:  # the cheap finite differences: K channel directions, h w position directions
        assert set(run_light(name, [GradCAM, HiResCAM], gradient=FD).values()) == {FD}


@pytest.mark.slow
def test_light_zoo_elementwise_fd_on_fc_heads() -> None:
    """Element-wise finite differences, 2 K h w head passes, unchecked: on AlexNet (18k head passes, ~35 s). ZFNet
    (37k) and VGG-19 (50k) run the same code path for minutes, so they are not repeated here."""
    run_light("bvlc_alexnet", [GradCAMPlusPlus, LayerCAM], gradient=FD, fd_check=False)


@pytest.mark.slow
def test_light_zoo_scorecam() -> None:
    """Score-CAM costs one full forward pass per channel (1860 on ResNet-50): beyond the cheap models of the fast
    test, Inception v1 (~800 passes) exercises a Concat layer; the others run the same code path."""
    run_light("inception_v1", [ScoreCAM])
