"""The ONNX backward graphs of blackbox_xai.autodiff against torch autograd (torch is a dev-only test oracle).

Small networks are written in torch, exported with torch's TorchScript ONNX exporter (float32, dynamic batch),
and differentiated twice: by :func:`build_gradient_model` + onnxruntime (float32, optimisations off), and by
torch autograd on the same weights in float64. Guided Backprop and DeconvNet are compared with the usual torch
implementation (Captum's): backward hooks on the ``nn.ReLU`` modules. EfficientNet-Lite0 from the zoo is compared
with the plain-torch reference forward of ``test_zoo_torch_reference``.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest

from blackbox_xai.autodiff import build_gradient_model

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from test_autodiff import REPORT, _print_report, relative_error, session  # noqa: F401 (autouse fixture)

TOLERANCE = 1e-4  # float32 onnxruntime against float64 torch


class ConvNet(nn.Module):
    """Strided conv, BatchNorm, max pool (ceil_mode), depthwise conv, HardSwish, LeakyReLU, average pool without
    padding in the count, a residual sum, bilinear upsampling, ELU, global pooling, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.conv3 = nn.Conv2d(8, 6, 3, dilation=2, padding=2)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        y = F.hardswish(self.dw(x))
        y = F.leaky_relu(self.bn2(self.pw(y)), 0.1)
        x = x + self.avg(y)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.elu(self.relu2(self.conv3(x)) - 0.3)
        return self.fc(x.mean(dim=(2, 3)))


class UpNet(nn.Module):
    """ConvTranspose with output padding, sigmoid, nearest and align-corners upsampling, tanh, PReLU, softplus,
    concat, slicing, channel max, bilinear downsampling."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.prelu = nn.PReLU(4)
        self.fc = nn.Linear(4 * 7 * 7 + 7 * 7, 6)

    def forward(self, x):
        x = torch.sigmoid(self.up(x))
        x = torch.tanh(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = self.prelu(self.conv(x))
        x = F.softplus(F.interpolate(x, size=(14, 14), mode="bilinear", align_corners=True))
        top = x.amax(dim=1, keepdim=True)
        x = torch.cat([x[:, :, ::2, ::2], top[:, :, 1::2, 1::2]], dim=1)
        return self.fc(torch.flatten(x, 1))


class MixerNet(nn.Module):
    """Tokens from a conv, self-attention (MatMul of two activations, softmax), LayerNorm, GELU (erf), mean,
    log-softmax output."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 2, stride=2)
        self.qkv = nn.Linear(8, 24)
        self.norm = nn.LayerNorm(8)
        self.mlp = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (N, T, 8)
        q, k, v = self.qkv(tokens).split(8, dim=-1)
        attention = torch.softmax(q @ k.transpose(1, 2) / 8**0.5, dim=-1)
        tokens = self.norm(tokens + attention @ v)
        tokens = tokens + F.gelu(self.mlp(tokens))
        return F.log_softmax(self.head(tokens.mean(dim=1)), dim=-1)


NETWORKS = {"conv": (ConvNet, (3, 16, 16)), "up": (UpNet, (3, 4, 4)), "mixer": (MixerNet, (3, 8, 8))}


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    cls, shape = NETWORKS[name]
    net = cls().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return net, shape


def export(net, shape) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros((1,) + shape), buffer, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)
    return onnx.load_from_string(buffer.getvalue())


def torch_gradient(net, x: np.ndarray, seed: np.ndarray, hook=None) -> np.ndarray:
    net = net.double()
    handles = []
    if hook is not None:
        handles = [m.register_full_backward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    inputs = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (net(inputs) * torch.tensor(seed, dtype=torch.float64)).sum().backward()
    for handle in handles:
        handle.remove()
    net.float()
    return inputs.grad.numpy()


def ort_gradient(model, x, seed, rules="gradient") -> tuple[np.ndarray, np.ndarray]:
    grad_model = build_gradient_model(model, "y", ["x"], rules=rules)
    y, grad = session(grad_model).run(None, {"x": x, "seed": seed})
    return y, grad


@pytest.mark.parametrize("name", list(NETWORKS))
def test_gradient_matches_torch_autograd(name):
    net, shape = build(name)
    model = export(net, shape)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    with torch.no_grad():
        expected_y = net(torch.from_numpy(x)).numpy()
    seed = rng.standard_normal(expected_y.shape).astype(np.float32)
    y, grad = ort_gradient(model, x, seed)
    assert relative_error(y, expected_y) < 1e-5
    error = relative_error(grad, torch_gradient(net, x, seed))
    REPORT[f"torch {name}"] = error
    print(f"\n{name}: ops {sorted({n.op_type for n in model.graph.node})}; relative error vs torch {error:.2e}")
    assert error < TOLERANCE


def _guided_hook(module, grad_input, grad_output):
    return (F.relu(grad_input[0]),)


def _deconv_hook(module, grad_input, grad_output):
    return (F.relu(grad_output[0]),)


@pytest.mark.parametrize("rules,hook", [("guided", _guided_hook), ("deconvnet", _deconv_hook)])
def test_guided_and_deconvnet_match_torch_hooks(rules, hook):
    net, shape = build("conv", seed=3)
    model = export(net, shape)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    seed = np.zeros((2, 5), np.float32)
    seed[0, 1] = seed[1, 3] = 1.0
    _, grad = ort_gradient(model, x, seed, rules=rules)
    error = relative_error(grad, torch_gradient(net, x, seed, hook=hook))
    REPORT[f"torch {rules}"] = error
    assert error < TOLERANCE
    assert relative_error(grad, torch_gradient(net, x, seed)) > 1e-2


def run_onnx_in_torch(model: onnx.ModelProto, feeds: dict, clip_masks: dict | None = None):
    """Evaluate the operators of the zoo EfficientNet-Lite0 graph (Conv, Clip, Relu, Add, GlobalAveragePool,
    Flatten, Gemm) with torch functions in float64, so that autograd differentiates exactly the ONNX function.

    ``clip_masks``: for each Clip output, where its input lies strictly inside (min, max) as onnxruntime computed
    it in float32; the Clip then passes the gradient exactly there (float64 and float32 forward passes can fall
    on different sides of a kink for the few pre-activations within rounding of 0 or 6)."""
    from onnx import helper, numpy_helper

    values = {t.name: torch.tensor(numpy_helper.to_array(t), dtype=torch.float64) for t in model.graph.initializer}
    values.update(feeds)
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        args = [values[name] if name else None for name in node.input]
        if node.op_type == "Conv":
            pads = attrs.get("pads", [0, 0, 0, 0])
            x = F.pad(args[0], [pads[1], pads[3], pads[0], pads[2]])
            out = F.conv2d(x, args[1], args[2] if len(args) > 2 else None, stride=attrs.get("strides", 1),
                           dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1))
        elif node.op_type == "Clip":
            out = F.hardtanh(args[0], float(args[1]), float(args[2]))
            if clip_masks is not None:
                out = torch.where(torch.from_numpy(clip_masks[node.output[0]]), args[0], out.detach())
        elif node.op_type == "Relu":
            out = F.relu(args[0])
        elif node.op_type == "Add":
            out = args[0] + args[1]
        elif node.op_type == "GlobalAveragePool":
            out = args[0].mean(dim=(2, 3), keepdim=True)
        elif node.op_type == "Flatten":
            out = torch.flatten(args[0], attrs.get("axis", 1))
        elif node.op_type == "Gemm":
            b = args[1].T if attrs.get("transB", 0) else args[1]
            out = attrs.get("alpha", 1.0) * args[0] @ b + attrs.get("beta", 1.0) * args[2]
        else:
            raise NotImplementedError(node.op_type)
        values[node.output[0]] = out
    return [values[o.name] for o in model.graph.output]


@pytest.mark.slow
def test_efficientnet_lite0_matches_torch_autograd():
    """The zoo model (BatchNorm folded into the convolutions, TF SAME pads as explicit Conv pads, ReLU6 as Clip)
    evaluated node by node by torch in float64: the same function. With ReLU6 decisions taken from onnxruntime's
    float32 forward pass the gradients agree to float32 rounding; with torch's own float64 decisions the few
    pre-activations within rounding of a kink (a handful per layer) flip and change the gradient locally."""
    from blackbox_xai import graph as G
    from blackbox_xai import zoo

    torch.set_num_threads(2)
    model = onnx.load(str(zoo.efficientnet_lite0_path()))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    seed = np.zeros((1, 1000), np.float32)
    seed[0, 281] = 1.0
    grad_model = build_gradient_model(model, "logits", ["input"])
    logits, grad = session(grad_model).run(None, {"input": x, "seed": seed})
    clips = [node for node in model.graph.node if node.op_type == "Clip"]
    exposed = G.expose(model, [node.input[0] for node in clips])
    pre = dict(zip([o.name for o in exposed.graph.output], session(exposed).run(None, {"input": x})))
    masks = {node.output[0]: (pre[node.input[0]] > 0) & (pre[node.input[0]] < 6) for node in clips}
    errors = {}
    for label, clip_masks in (("onnxruntime decisions", masks), ("float64 decisions", None)):
        inputs = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        (reference,) = run_onnx_in_torch(model, {"input": inputs}, clip_masks)
        assert relative_error(logits, reference.detach().numpy()) < 1e-5
        (reference * torch.tensor(seed, dtype=torch.float64)).sum().backward()
        errors[label] = relative_error(grad, inputs.grad.numpy())
    REPORT["torch efficientnet_lite0"] = errors["onnxruntime decisions"]
    REPORT["torch efficientnet_lite0 (float64 kinks)"] = errors["float64 decisions"]
    print(f"\nEfficientNet-Lite0 d logit / d input vs torch float64: {errors}")
    assert errors["onnxruntime decisions"] < TOLERANCE
    assert errors["float64 decisions"] < 1e-2
