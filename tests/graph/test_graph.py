"""Tests of blackbox_xai.graph (ONNX surgery) against real onnxruntime sessions.

Models: the zoo EfficientNet-Lite0, the nine old model-zoo graphs that ship inside the onnx wheel
(``onnx/backend/test/data/light``), and small hand-built graphs for the corner cases (a residual connection and a
``Shape(x)`` crossing the cut, a hard-coded batch that cannot be rewritten, old-opset operators, external data).

The light models are degenerate as shipped: every weight is ``ConstantOfShape(value=0.02)``, so all output
channels of a layer are equal, all 1000 logits are equal and the softmax is exactly 0.001 for any input
(DenseNet-121 outputs raw logits, all 0.46 for the reference input). Comparing such outputs would hide wiring
mistakes, so each test also builds a *randomised* variant: every ConstantOfShape weight gets seeded random values
with a scale fitted to its role (He-normal convolution and Gemm weights, small biases, BatchNorm statistics near
1), as an initializer also listed among the graph inputs like the originals (IR 3 style) or, for tensors over
256k elements, as ``Tile`` of a random block so that the models stay small. The graph around the weights is
untouched. Where a model ends in Softmax, the logits are compared as well.

All sessions run with graph optimisations off (exact kernels), so splits and batch checks compare exactly.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from blackbox_xai import graph as G
from blackbox_xai.errors import ModelError, ParameterError
from blackbox_xai.model.runner import onnxruntime_runner

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT = [
    "bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
    "vgg19", "zfnet512",
]  # fmt: skip
# Also upgraded by this package's own rewrites (not only onnx.version_converter): cheap models that cover
# Softmax on a 4-D output (SqueezeNet), Unsqueeze axes (DenseNet), Dropout ratio (Inception v1), Reshape/Transpose.
MANUAL_NORMALISE = {"densenet121", "inception_v1", "shufflenet", "squeezenet"}
SPLIT_TOLERANCE = 1e-5
BLOCK_LIMIT = 2**18  # weights larger than this (elements) become Tile(random block)


class MemoRunner:
    """An onnxruntime runner (no graph optimisations) that remembers results for (model, identical inputs)."""

    def __init__(self) -> None:
        self.inner = onnxruntime_runner(optimize=False)
        self.cache: dict[tuple, dict[str, np.ndarray]] = {}
        self.models: list[onnx.ModelProto] = []  # keep ids alive while cached
        self.calls = 0

    def __call__(self, model: onnx.ModelProto, feeds) -> dict[str, np.ndarray]:
        key = (id(model),) + tuple(
            (name, value.shape, str(value.dtype), hash(np.ascontiguousarray(value).tobytes()))
            for name, value in sorted(feeds.items())
        )
        if key not in self.cache:
            self.calls += 1
            self.cache[key] = self.inner(model, feeds)
            self.models.append(model)
        return self.cache[key]

    def clear(self) -> None:
        self.cache.clear()
        self.models.clear()


@pytest.fixture
def run() -> MemoRunner:
    return MemoRunner()


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| relative to the scale (max |expected|) of the expected output."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    diff = float(np.max(np.abs(np.asarray(actual, dtype=np.float64) - expected))) if expected.size else 0.0
    return diff / scale if scale > 0 else diff


# --------------------------------------------------------------------------------------------------------------
# Randomised light models


def randomise_weights(model: onnx.ModelProto, seed: int) -> onnx.ModelProto:
    """Replace each ConstantOfShape weight by seeded random values fitted to its role (see module docstring)."""
    rng = np.random.default_rng(seed)
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            readers[name].append((node, index))
    nodes = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            nodes.append(node)
            continue
        dims = [int(d) for d in numpy_helper.to_array(inits[node.input[0]])]
        sampler = _sampler(node.output[0], dims, readers, rng)
        if sampler is None:
            nodes.append(node)
            continue
        name = node.output[0]
        if math.prod(dims) <= BLOCK_LIMIT or len(dims) < 2:
            _add_weight(graph, name, sampler(dims))
            continue
        rest = math.prod(dims) // dims[1]
        block = max(k for k in range(1, dims[1] + 1) if dims[1] % k == 0 and rest * k <= BLOCK_LIMIT or k == 1)
        block_dims = [dims[0], block] + dims[2:]
        # each value repeats dims[1] / block times along the input axis: shrink it to keep the output variance
        _add_weight(graph, f"{name}__block", sampler(block_dims) * np.float32(math.sqrt(block / dims[1])))
        _add_weight(graph, f"{name}__reps", np.asarray([1, dims[1] // block] + [1] * (len(dims) - 2), np.int64))
        nodes.append(helper.make_node("Tile", [f"{name}__block", f"{name}__reps"], [name]))
    del graph.node[:]
    graph.node.extend(nodes)
    return result


def _add_weight(graph: onnx.GraphProto, name: str, value: np.ndarray) -> None:
    graph.initializer.append(numpy_helper.from_array(value, name))
    graph.input.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape))


def _sampler(name, dims, readers, rng):
    """A function dims -> random float32 array for the role of weight ``name``, or None to keep it."""
    uses = readers.get(name, [])
    if len(uses) != 1:
        return None
    node, index = uses[0]
    if node.op_type in ("Unsqueeze", "Reshape") and len(readers.get(node.output[0], [])) == 1:
        node, index = readers[node.output[0]][0]
        # a reshaped classifier weight (O, I, 1, 1) -> (O, I) has the fan-in of a convolution
        role = {"Mul": "scale", "Add": "shift"}.get(node.op_type) or ("conv" if node.op_type == "Gemm" else None)
    elif node.op_type == "Conv":
        role = {1: "conv", 2: "shift"}.get(index)
    elif node.op_type == "Gemm":
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        role = {1: "gemm_t" if trans_b else "gemm", 2: "shift"}.get(index)
    elif node.op_type == "BatchNormalization":
        role = {1: "scale", 2: "shift", 3: "shift", 4: "scale"}.get(index)
    else:
        role = None
    full_dims = list(dims)

    def sample(shape):
        if role == "conv":
            std = math.sqrt(2.0 / math.prod(full_dims[1:]))
        elif role == "gemm_t":
            std = math.sqrt(2.0 / full_dims[1])
        elif role == "gemm":
            std = math.sqrt(2.0 / full_dims[0])
        elif role == "scale":
            return rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
        else:
            std = 0.1
        return (rng.standard_normal(shape) * std).astype(np.float32)

    return sample if role else None


# --------------------------------------------------------------------------------------------------------------
# The per-model check


def check_model(
    model: onnx.ModelProto, label: str, run: MemoRunner, seed: int, manual_normalise: bool, mid_cut: bool = True
) -> dict:
    """Default layer, split, expose, dynamic batch and opset normalisation of one model, against onnxruntime."""
    inputs = G.real_inputs(model)
    assert len(inputs) == 1, f"{label}: real inputs {[v.name for v in inputs]}"
    name = inputs[0].name
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in inputs[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    x2 = rng.standard_normal([2] + dims[1:]).astype(np.float32)
    x = x2[:1]
    outputs = [o.name for o in model.graph.output]
    made_by = G.producers(model)
    logits = [made_by[o].input[0] for o in outputs if made_by[o].op_type == "Softmax"]

    layer = G.default_layer(model)
    assert layer.shape[0] in (1, "batch") and len(layer.shape) == 4 and layer.shape[2] * layer.shape[3] > 1
    assert G.depends_on_input(model) >= {layer.tensor}

    # expose: one run gives the outputs, the logits and the activation
    exposed = G.expose(model, [layer.tensor] + logits)
    assert [o.name for o in exposed.graph.output][: len(outputs)] == outputs
    full = run(exposed, {name: x})

    # split: body + head reproduce the outputs (and the logits)
    body, head, crossing = G.split(model, layer.tensor)
    assert [v.name for v in body.graph.output] == [layer.tensor] + crossing
    assert [v.name for v in head.graph.input] == [layer.tensor] + crossing
    assert all(v.name not in G.initializer_names(head) for v in head.graph.input)
    head_x = G.expose(head, logits) if logits else head
    middle = run(body, {name: x})
    ends = run(head_x, dict(middle))
    split_error = max(relative_error(ends[o], full[o]) for o in outputs + logits)
    assert split_error <= SPLIT_TOLERANCE, f"{label}: split error {split_error}"
    expose_error = relative_error(full[layer.tensor], middle[layer.tensor])
    assert expose_error == 0.0, f"{label}: exposed activation differs from the body output by {expose_error}"

    # a cut in the middle of the network (a convolution inside a block): residual, dense and branch connections
    # cross it
    mid_crossing = None
    if mid_cut:
        convs = [candidate for candidate in G.candidate_layers(model) if candidate.op_type == "Conv"]
        cut = convs[len(convs) // 2].tensor
        body, head, mid_crossing = G.split(model, cut)
        ends = run(G.expose(head, logits) if logits else head, dict(run(body, {name: x})))
        mid_error = max(relative_error(ends[o], full[o]) for o in outputs + logits)
        assert mid_error <= SPLIT_TOLERANCE, f"{label}: split at {cut} error {mid_error}"
        split_error = max(split_error, mid_error)
        mid_crossing = f"{cut}: {len(mid_crossing)} crossing {mid_crossing[:3]}"

    # dynamic batch: a 2-sample batch against per-sample runs of the original (sample 0 is cached); outputs,
    # logits and the activation are all compared
    dynamic = G.make_batch_dynamic(exposed)
    check = G.verify_batch(dynamic, {name: x2}, run, reference=exposed)
    assert check.ok, f"{label}: {check.message}"
    batch_out = run(dynamic, {name: x2})
    assert all(batch_out[o].shape[0] == 2 for o in outputs)

    # opset normalisation keeps the outputs
    normalised = G.normalise_opset(model, 13)
    assert G.opset_version(normalised) == 13 and not set(G.initializer_names(normalised)) & {
        v.name for v in normalised.graph.input
    }
    result = run(normalised, {name: x})
    norm_error = max(relative_error(result[o], full[o]) for o in outputs)
    manual_error = None
    if manual_normalise:
        manual = G.normalise_opset(model, 13, use_converter=False)
        result = run(manual, {name: x})
        manual_error = max(relative_error(result[o], full[o]) for o in outputs)
        assert manual_error <= 1e-6, f"{label}: own opset rewrite changed the outputs by {manual_error}"
    assert norm_error <= 1e-6, f"{label}: opset conversion changed the outputs by {norm_error}"

    scale = max(float(np.max(np.abs(full[o]))) for o in outputs + logits)
    report = dict(
        layer=str(layer), crossing=crossing, mid_cut=mid_crossing, split_error=split_error, batch=check.message,
        normalise_error=norm_error, manual_normalise_error=manual_error, output_scale=scale,
        output_spread=float(np.std(full[outputs[0]])),
    )  # fmt: skip
    print(f"\n{label}: " + "; ".join(f"{k}={v}" for k, v in report.items()))
    return report


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg19" else n for n in LIGHT]
)
def test_light_zoo_model(name: str, run: MemoRunner) -> None:
    original = G.load(LIGHT_DIR / f"light_{name}.onnx")
    assert G.opset_version(original) == 9 and original.ir_version == 3
    # the weights are made by ConstantOfShape nodes; initializers (their shapes) are also listed as inputs
    assert any(n.op_type == "ConstantOfShape" for n in original.graph.node)
    assert len(original.graph.input) > len(G.real_inputs(original)) == 1
    randomised = randomise_weights(original, seed=sum(map(ord, name)))
    layer, same = G.default_layer(original), G.default_layer(randomised)
    assert (layer.tensor, layer.op_type, layer.shape) == (same.tensor, same.op_type, same.shape)
    report = check_model(randomised, f"light_{name} (randomised weights)", run, seed=0,
                         manual_normalise=name in MANUAL_NORMALISE, mid_cut=name != "vgg19")
    assert report["output_spread"] > 0, "randomised weights should give input-dependent, non-constant outputs"


def test_light_zoo_reference_outputs_are_degenerate() -> None:
    """The shipped reference outputs are constant: with all weights 0.02, every class gets the same score."""
    for name in LIGHT:
        reference = numpy_helper.to_array(onnx.load_tensor(str(LIGHT_DIR / f"light_{name}_output_0.pb")))
        assert np.ptp(reference) <= 1e-6 * max(1.0, float(np.abs(reference).max())), name


def test_efficientnet_lite0(run: MemoRunner) -> None:
    from blackbox_xai import zoo

    model = G.load(zoo.efficientnet_lite0_path())
    report = check_model(model, "efficientnet_lite0", run, seed=0, manual_normalise=False)
    assert report["layer"].startswith("_conv_head")


# --------------------------------------------------------------------------------------------------------------
# Hand-built graphs

OPSET = 13


def _model(nodes, inputs, outputs, inits, opset=OPSET, ir=8) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    return model


def residual_model(batch="N") -> onnx.ModelProto:
    """x -> conv-relu (r1) -> conv-relu (cut); head: (cut + r1) -> conv with a shared weight -> conv ->
    Reshape to Shape(x) -> + mean(x) -> GAP -> Flatten. Crossing the cut: r1 (residual), Shape(x), mean(x)."""
    rng = np.random.default_rng(1)
    w1 = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32)
    w3 = (rng.standard_normal((3, 4, 1, 1)) * 0.3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["cut"]),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("ReduceMean", ["x"], ["x_mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("ConstantOfShape", ["b3_shape"], ["b3"], value=numpy_helper.from_array(np.float32([0.5]))),
        helper.make_node("Add", ["cut", "r1"], ["res"]),
        helper.make_node("Conv", ["res", "w2"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c3", "w3", "b3"], ["c4"]),
        helper.make_node("Reshape", ["c4", "x_shape"], ["back"]),
        helper.make_node("Add", ["back", "x_mean"], ["shifted"]),
        helper.make_node("GlobalAveragePool", ["shifted"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits"]),
    ]  # fmt: skip
    inits = {"w1": w1, "w2": w2, "w3": w3, "b3_shape": np.asarray([3], np.int64)}
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])
    model = _model(nodes, [x], [y], inits)
    onnx.checker.check_model(model)
    return model


def test_split_finds_residual_and_shape_crossings(run: MemoRunner) -> None:
    model = residual_model()
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    full = run(model, {"x": x})["logits"]

    body, head, crossing = G.split(model, "cut")
    assert crossing == ["r1", "x_shape", "x_mean"]
    assert [v.name for v in head.graph.input] == ["cut", "r1", "x_shape", "x_mean"]
    infos = {v.name: G.analysis.info_from_value(v) for v in head.graph.input}
    assert infos["cut"].shape == ("N", 4, 8, 8) and infos["x_shape"].shape == (4,)
    assert infos["x_shape"].elem_type == TensorProto.INT64 and infos["x_mean"].shape == ("N", 1, 1, 1)
    # weights go where they are used: w2 to both, w1 to the body, w3 and the ConstantOfShape bias to the head
    assert G.initializer_names(body) == {"w1", "w2"}
    assert G.initializer_names(head) == {"w2", "w3", "b3_shape"}
    assert "ConstantOfShape" in {n.op_type for n in head.graph.node}
    assert {n.op_type for n in body.graph.node} == {"Conv", "Relu", "Shape", "ReduceMean"}
    onnx.checker.check_model(body)
    onnx.checker.check_model(head)
    middle = run(body, {"x": x})
    out = run(head, dict(middle))["logits"]
    assert relative_error(out, full) <= 1e-6

    # the cut at r1 has nothing crossing except Shape(x) and mean(x)
    _, _, crossing = G.split(model, "r1")
    assert crossing == ["x_shape", "x_mean"]
    body, head, crossing = G.split(model, "x_mean")
    assert crossing == ["back"]
    assert relative_error(run(head, dict(run(body, {"x": x})))["logits"], full) <= 1e-6

    # a head that reads the raw input: the input crosses, the body passes it through
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])]
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    skip = _model(nodes, [value], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], {})
    body, head, crossing = G.split(skip, "r")
    assert crossing == ["x"] and [v.name for v in body.graph.output] == ["r", "x"]
    x = np.asarray([[-1.0, 0.5, 2.0]], np.float32)
    assert np.array_equal(run(head, dict(run(body, {"x": x})))["y"], run(skip, {"x": x})["y"])


def test_split_rejects_bad_cuts() -> None:
    model = residual_model()
    with pytest.raises(ParameterError):
        G.split(model, "x")
    with pytest.raises(ParameterError):
        G.split(model, "no_such_tensor")
    with pytest.raises(ParameterError):
        G.split(model, "b3")  # a constant


def test_expose_untyped_and_typed(run: MemoRunner) -> None:
    model = residual_model()
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    exposed = G.expose(model, ["r1", "x_shape", "logits"])
    assert [o.name for o in exposed.graph.output] == ["logits", "r1", "x_shape"]
    assert not exposed.graph.output[1].type.HasField("tensor_type")
    values = run(exposed, {"x": x})
    assert values["r1"].shape == (2, 4, 8, 8) and list(values["x_shape"]) == [2, 3, 8, 8]
    typed = G.expose(model, "r1", typed=True)
    onnx.checker.check_model(typed)
    with pytest.raises(ParameterError):
        G.expose(model, ["nope"])
    assert len(model.graph.output) == 1  # the original is untouched


def test_analysis_maps_and_constants() -> None:
    model = residual_model()
    order = [n.output[0] for n in G.topological_order(model)]
    assert order.index("c1") < order.index("cut") < order.index("res")
    assert G.producers(model)["cut"].op_type == "Relu"
    assert [n.op_type for n in G.consumers(model)["r1"]] == ["Conv", "Add"]
    dependent = G.depends_on_input(model, "x")
    assert {"x", "x_shape", "x_mean", "cut", "logits"} <= dependent and "b3" not in dependent
    assert {"w1", "b3_shape", "b3"} <= G.constant_tensors(model)
    # a shuffled graph is put back in order
    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(model)
    nodes = list(shuffled.graph.node)[::-1]
    del shuffled.graph.node[:]
    shuffled.graph.node.extend(nodes)
    order = [n.output[0] for n in G.topological_order(shuffled)]
    assert order.index("c1") < order.index("cut") < order.index("res") < order.index("logits")
    with pytest.raises(ParameterError):
        G.depends_on_input(model, "w1")


def test_shape_probe_fills_what_inference_cannot(run: MemoRunner) -> None:
    """NonZero's output size depends on the data: shape inference leaves it unknown, the probe measures it."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("NonZero", ["r"], ["nz"]),
        helper.make_node("Transpose", ["nz"], ["nzt"]),
        helper.make_node("Cast", ["nzt"], ["out"], to=TensorProto.FLOAT),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    model = _model(nodes, [x], [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], {})
    inferred = G.infer_shapes(model)
    assert not inferred["nzt"].known
    probed = G.tensor_info(model, ["nzt", "r"], run=run, feeds={"x": np.asarray([[1, -1, 2]], np.float32)})
    assert probed["nzt"].shape == (2, 2) and probed["nzt"].elem_type == TensorProto.INT64
    assert probed["r"].shape == ("N", 3)  # known from inference, not probed
    assert G.tensor_info(model, ["nzt"])["nzt"].known is False  # no runner: stays unknown


# --------------------------------------------------------------------------------------------------------------
# Dynamic batch


def fixed_batch_model(opset: int = 13, allowzero: bool = False, slice_batch: bool = False) -> onnx.ModelProto:
    """Batch-1 export: conv -> Reshape(1, 2, 2, 8, 8) -> Reshape(1, -1) -> Gemm; a weight is reshaped with a shared
    (1, ...) constant that must not change."""
    rng = np.random.default_rng(4)
    inits = {
        "w": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "fc": (rng.standard_normal((5, 256)) * 0.1).astype(np.float32),
        "shape5": np.asarray([1, 2, 2, 8, 8], np.int64),
        "flat": np.asarray([1, -1], np.int64),
        "bias_raw": rng.standard_normal(5).astype(np.float32),
    }
    zero = {"allowzero": 1} if allowzero else {}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape5"], ["c5"], **zero),
        helper.make_node("Transpose", ["c5"], ["t5"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t5", "flat"], ["f"], **zero),
        helper.make_node("Reshape", ["bias_raw", "flat"], ["bias"]),  # a weight: keeps (1, -1)
        helper.make_node("Gemm", ["f", "fc", "bias"], ["y"], transB=1),
    ]
    if slice_batch:  # a hard-coded batch that make_batch_dynamic does not rewrite
        inits.update(starts=np.asarray([0], np.int64), ends=np.asarray([1], np.int64), axes=np.asarray([0], np.int64))
        nodes.append(helper.make_node("Slice", ["y", "starts", "ends", "axes"], ["y1"]))
        nodes.append(helper.make_node("Identity", ["y1"], ["out"]))
    else:
        nodes.append(helper.make_node("Identity", ["y"], ["out"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 5])
    model = _model(nodes, [x], [out], inits, opset=opset)
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("opset,allowzero", [(13, False), (14, True)])
def test_make_batch_dynamic_rewrites_input_reshapes_only(run: MemoRunner, opset: int, allowzero: bool) -> None:
    model = fixed_batch_model(opset, allowzero)
    x = np.random.default_rng(5).standard_normal((3, 3, 8, 8)).astype(np.float32)
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type: the original refuses a batch of 3
        run(model, {"x": x})
    dynamic, check = G.dynamic_batch(model, x, run)
    assert check.ok and check.max_error <= 1e-6, check.message
    assert dynamic is not model
    assert G.analysis.info_from_value(dynamic.graph.input[0]).shape == ("N", 3, 8, 8)
    assert G.analysis.info_from_value(dynamic.graph.output[0]).shape == ("N", 5)
    reshapes = {n.output[0]: n.input[1] for n in dynamic.graph.node if n.op_type == "Reshape"}
    assert reshapes["bias"] == "flat"  # the weight's Reshape is untouched
    assert G.analysis.constant_value(dynamic, reshapes["c5"]).tolist() == [-1, 2, 2, 8, 8]
    flat = G.analysis.constant_value(dynamic, reshapes["f"])
    if allowzero:  # 0 would be a literal zero: the shape is computed from the data
        assert flat is None and "Shape" in {n.op_type for n in dynamic.graph.node}
    else:
        assert flat.tolist() == [0, -1]
    assert G.analysis.constant_value(model, "flat").tolist() == [1, -1]  # the original is untouched


def test_head_of_a_dynamic_model_runs_batched(run: MemoRunner) -> None:
    """The intended order for CAM methods: make the batch dynamic, then split; the head takes any batch."""
    model = fixed_batch_model()
    dynamic = G.make_batch_dynamic(model)
    body, head, crossing = G.split(dynamic, "c")
    assert crossing == [] and G.analysis.info_from_value(head.graph.input[0]).shape == ("N", 4, 8, 8)
    x = np.random.default_rng(10).standard_normal((3, 3, 8, 8)).astype(np.float32)
    out = run(head, dict(run(body, {"x": x})))["out"]
    per_sample = np.concatenate([run(model, {"x": x[i:i + 1]})["out"] for i in range(3)])
    assert relative_error(out, per_sample) <= 1e-5
    # the head of the batch-1 model is declared with a symbolic batch but still runs one sample at a time
    _, head1, _ = G.split(model, "c")
    assert G.analysis.info_from_value(head1.graph.input[0]).shape == ("N", 4, 8, 8)


def test_dynamic_batch_reports_failure_without_raising(run: MemoRunner) -> None:
    model = fixed_batch_model(slice_batch=True)
    x = np.random.default_rng(6).standard_normal((2, 3, 8, 8)).astype(np.float32)
    result, check = G.dynamic_batch(model, x, run)
    assert not check and result is model
    assert "shape" in check.message or "differs" in check.message or "failed" in check.message


# --------------------------------------------------------------------------------------------------------------
# Opset normalisation


def old_opset_model() -> onnx.ModelProto:
    """Opset 9 operators whose meaning or signature changed later (IR 3, weights listed among the inputs)."""
    rng = np.random.default_rng(7)
    inits = {"scales": np.asarray([1, 1, 2, 2], np.float32), "w": rng.standard_normal((3, 3, 1, 1)).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Softmax", ["c"], ["sm"], axis=1),  # 2-D coercion over C*H*W before 13
        helper.make_node("LogSoftmax", ["c"], ["lsm"], axis=-1),  # last axis: same meaning
        helper.make_node("Clip", ["c"], ["clip"], min=-0.5, max=0.7),
        helper.make_node("Unsqueeze", ["clip"], ["u"], axes=[0]),
        helper.make_node("Squeeze", ["u"], ["sq"], axes=[0]),
        helper.make_node("Slice", ["sq"], ["sl"], starts=[1], ends=[4], axes=[2]),
        helper.make_node("Pad", ["sl"], ["pad"], pads=[0, 0, 1, 0, 0, 0, 0, 1], value=0.25),
        helper.make_node("Split", ["pad"], ["s1", "s2"], axis=1, split=[1, 2]),
        helper.make_node("ReduceMean", ["s2"], ["rm"], axes=[2, 3], keepdims=1),
        helper.make_node("ReduceSum", ["s1"], ["rs"], axes=[1], keepdims=0),
        helper.make_node("TopK", ["rs"], ["top", "top_i"], axis=-1, k=2),
        helper.make_node("Dropout", ["top"], ["drop"], ratio=0.3),
        helper.make_node("Upsample", ["sm", "scales"], ["up"], mode="nearest"),
    ]
    outputs = ["sm", "lsm", "rm", "drop", "top_i", "up"]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])
    weights = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in inits.items()]
    outs = [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None) for name in outputs]
    model = _model(nodes, [x] + weights, outs, inits, opset=9, ir=3)
    for value in model.graph.output:
        value.ClearField("type")
    return model


@pytest.mark.parametrize("use_converter", [True, False])
@pytest.mark.parametrize("target", [13, 18])
def test_normalise_opset_keeps_outputs(run: MemoRunner, use_converter: bool, target: int) -> None:
    model = old_opset_model()
    assert G.semantic_changes(model, 13) == [
        "Clip", "Dropout", "LogSoftmax", "Pad", "ReduceSum", "Slice", "Softmax", "Split", "Squeeze", "TopK",
        "Unsqueeze", "Upsample",
    ]  # fmt: skip
    x = np.random.default_rng(8).standard_normal((2, 3, 4, 5)).astype(np.float32)
    expected = run(model, {"x": x})
    normalised = G.normalise_opset(model, target, use_converter=use_converter)
    assert G.opset_version(normalised) == target and [v.name for v in normalised.graph.input] == ["x"]
    ops = {n.op_type for n in normalised.graph.node}
    assert "Upsample" not in ops
    got = run(normalised, {"x": x})
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        assert relative_error(got[name], value) <= 1e-6, name
    assert G.opset_version(model) == 9  # the original is untouched


def test_move_initializers_out_of_inputs() -> None:
    model = old_opset_model()
    moved = G.move_initializers_out_of_inputs(model)
    assert [v.name for v in moved.graph.input] == ["x"] and moved.ir_version >= 4
    assert len(model.graph.input) == 3


# --------------------------------------------------------------------------------------------------------------
# Layers


def test_layers_on_hand_built_model() -> None:
    model = residual_model()
    # shape inference cannot follow Reshape(c4, Shape(x)) with a symbolic batch: without a runner the last two
    # maps have no known shape, so the GlobalAveragePool is not recognised and the last known map is the default
    layers = G.candidate_layers(model)
    assert [layer.tensor for layer in layers] == ["c1", "r1", "c2", "cut", "res", "c3", "c4"]
    assert layers[0].op_type == "Conv" and layers[0].shape == ("N", 4, 8, 8)
    assert G.default_layer(model).tensor == "c4"
    # one probe run measures them (batch 2 for the symbolic batch, which comes back symbolic)
    run = MemoRunner()
    layers = G.candidate_layers(model, run=run)
    assert [layer.tensor for layer in layers][-2:] == ["back", "shifted"]
    layer = G.default_layer(model, run=run)
    assert layer.tensor == "shifted" and str(layer) == "shifted (Add, Nx3x8x8)"  # the input of GlobalAveragePool
    flat = fixed_batch_model()
    assert G.default_layer(flat).tensor == "c"  # the only 4-D activation (the rest is 5-D or 2-D)


# --------------------------------------------------------------------------------------------------------------
# Load / save


def test_save_with_external_data_round_trips(tmp_path: Path, run: MemoRunner) -> None:
    model = residual_model()
    before = model.SerializeToString()
    path = G.save(model, tmp_path / "m.onnx", external_data=True, size_threshold=64)
    assert (tmp_path / "m.onnx.data").exists()
    assert model.SerializeToString() == before  # the caller's model keeps its weights
    loaded = G.load(path)
    x = np.random.default_rng(9).standard_normal((1, 3, 8, 8)).astype(np.float32)
    assert relative_error(run(loaded, {"x": x})["logits"], run(model, {"x": x})["logits"]) == 0.0
    # edit without loading the weights, save beside the data, load again
    lazy = G.load(path, load_external_data=False)
    assert any(True for _ in G.io.external_tensors(lazy))
    G.save(G.expose(lazy, "r1"), tmp_path / "edited.onnx")
    edited = G.load(tmp_path / "edited.onnx")
    assert [o.name for o in edited.graph.output] == ["logits", "r1"]
    other = tmp_path / "elsewhere"
    with pytest.raises(ModelError):
        G.save(lazy, other / "m.onnx")  # its data would not be beside it
    with pytest.raises(ModelError):
        G.save(lazy, tmp_path / "m2.onnx", external_data=True, location="m.onnx.data")  # would overwrite


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"])
def test_load_refuses_external_data_outside_the_folder(tmp_path: Path, location: str) -> None:
    model = residual_model()
    tensor = next(t for t in model.graph.initializer if t.name == "w1")
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    (tmp_path / "inner").mkdir()
    path = tmp_path / "inner" / "m.onnx"
    path.write_bytes(model.SerializeToString())
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4 * 108)
    for load_data in (True, False):
        with pytest.raises(ModelError, match="refus"):
            G.load(path, load_external_data=load_data)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        G.load(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model at all \xff\xfe")
    with pytest.raises(ModelError):
        G.load(tmp_path / "bad.onnx")


def test_graph_package_does_not_import_onnxruntime() -> None:
    import subprocess
    import sys

    code = "import sys, blackbox_xai.graph; print(any(m.startswith('onnxruntime') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.stdout.strip() == "False"


def test_runner_goes_through_external_data_for_huge_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models over the protobuf limit are handed to onnxruntime as a file with external data (limit faked)."""
    from blackbox_xai.model import runner as runner_module

    model = residual_model()
    x = np.random.default_rng(11).standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = onnxruntime_runner()(model, {"x": x})["logits"]
    monkeypatch.setattr(runner_module, "PROTOBUF_LIMIT", 0)
    monkeypatch.setattr(G.io, "PROTOBUF_LIMIT", 0)
    got = onnxruntime_runner()(model, {"x": x})["logits"]
    assert np.array_equal(got, expected)
