"""The model seam: sessions made in one place, pass counters, head gradients as a model service, and the one
global-pooling predicate of graph/head.py.

References: onnxruntime itself (which axes a Reduce node reduces, whether a pool averages the whole map), and
central finite differences of the head for the head gradient.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import blackbox_xai
from blackbox_xai.errors import GradientUnavailableError
from blackbox_xai.graph import layers as graph_layers
from blackbox_xai.graph.analysis import TensorInfo
from blackbox_xai.graph.head import AffineHead, pool_covers_map, read_affine_head, reduced_axes, reduces_spatial
from blackbox_xai.model import CallableModel, InputSpec, OnnxModel
from blackbox_xai.model.onnx_model import GradientUnavailableError as ReExported

PACKAGE = Path(blackbox_xai.__file__).parent
COUNTERS = ("forward_passes", "forward_seconds", "backward_passes", "backward_seconds", "head_passes",
            "head_seconds", "session_seconds")


# --------------------------------------------------------------------------------------------------------------
# Reduce and pool nodes, judged against what onnxruntime computes


def reduce_model(opset: int, axes: list[int] | None, axes_input: bool, keepdims: int, noop: int | None):
    attrs = {"keepdims": keepdims}
    if noop is not None:
        attrs["noop_with_empty_axes"] = noop
    inputs, initializers = ["x"], []
    if axes is not None and axes_input:
        inputs.append("axes")
        initializers.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
    elif axes is not None:
        attrs["axes"] = axes
    node = helper.make_node("ReduceMean", inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "reduce", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, node


REDUCE_CASES = {  # name: (opset, axes, axes as an input, keepdims, noop_with_empty_axes)
    "axes-attribute-spatial": (13, [2, 3], False, 0, None),
    "axes-attribute-negative": (13, [-1, -2], False, 1, None),
    "axes-attribute-channels-too": (13, [1, 2, 3], False, 0, None),
    "axes-attribute-height-only": (13, [2], False, 1, None),
    "axes-input-opset18": (18, [2, 3], True, 0, None),
    "axes-input-opset18-keepdims": (18, [2, 3], True, 1, None),
    "no-axes-reduces-all": (13, None, False, 1, None),
    "no-axes-opset18": (18, None, False, 0, None),
    "noop-with-empty-axes": (18, None, False, 1, 1),
}


@pytest.mark.parametrize("name", sorted(REDUCE_CASES))
def test_reduced_axes_follow_onnx_semantics(name: str) -> None:
    opset, axes, axes_input, keepdims, noop = REDUCE_CASES[name]
    model, node = reduce_model(opset, axes, axes_input, keepdims, noop)
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(["y"], {"x": x})[0]
    got = reduced_axes(node, constants.get)
    # the axes onnxruntime reduced: the candidate whose mean is the output
    truth = next(set(axes) for axes in ((), (2,), (2, 3), (1, 2, 3), (0, 1, 2, 3))
                 if matches(y, x.mean(axis=axes) if axes else x))
    assert got == truth, name
    assert reduces_spatial(node, constants.get) == ({2, 3} <= truth)
    assert reduces_spatial(node, constants.get, per_channel=True) == (truth == {2, 3})
    # graph/layers and the affine-head reader ask the same predicate
    assert graph_layers._reduces_spatial(model, node) == ({2, 3} <= truth)
    head = affine_head_after(node, keepdims)
    assert (head is not None) == (truth == {2, 3}), name


def matches(y: np.ndarray, reference: np.ndarray) -> bool:
    return y.size == reference.size and np.allclose(y.reshape(-1), reference.reshape(-1), atol=1e-6)


def affine_head_after(reduce: onnx.NodeProto, keepdims: int) -> AffineHead | None:
    """read_affine_head on layer -> the reduce node -> Flatten -> Gemm."""
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    nodes = [onnx.NodeProto(), helper.make_node("Flatten", ["y"], ["flat"]),
             helper.make_node("Gemm", ["flat", "W"], ["logits"], transB=1)]
    nodes[0].CopyFrom(reduce)
    nodes[0].input[0] = "layer"
    initializers = [numpy_helper.from_array(weight, "W")]
    if len(reduce.input) > 1:
        initializers.append(numpy_helper.from_array(np.array([2, 3], np.int64), reduce.input[1]))
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("layer", TensorProto.FLOAT, [1, 3, 4, 5])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], initializers)
    head = helper.make_model(graph)
    constants = {init.name: numpy_helper.to_array(init) for init in head.graph.initializer}
    found = read_affine_head(head, "layer", "logits", (1, 3, 4, 5), constants.get)
    if found is not None:
        assert np.array_equal(found.weight, weight) and not found.bias.any()
    return found


def test_unknown_axes_are_not_taken_for_pooling() -> None:
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"])
    assert reduced_axes(node, lambda name: None) is None
    assert not reduces_spatial(node, lambda name: None)


POOL_CASES = {  # name: attributes of an AveragePool on a (1, 2, 4, 5) map
    "kernel-equals-map": dict(kernel_shape=[4, 5]),
    "kernel-smaller": dict(kernel_shape=[4, 4]),
    "padded-not-counted": dict(kernel_shape=[5, 6], pads=[1, 1, 0, 0], count_include_pad=0),
    "padded-counted": dict(kernel_shape=[5, 6], pads=[1, 1, 0, 0], count_include_pad=1),
    "strided-one-window": dict(kernel_shape=[4, 5], strides=[4, 5]),
}


@pytest.mark.parametrize("name", sorted(POOL_CASES))
def test_pool_covers_map_against_onnxruntime(name: str) -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], **POOL_CASES[name])
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 5)).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]
    one_window = y.shape[2:] == (1, 1)
    is_mean = one_window and np.allclose(y[:, :, 0, 0], x.mean(axis=(2, 3)), atol=1e-6)
    assert pool_covers_map(node, (1, 2, 4, 5), per_channel=True) == is_mean, name
    assert pool_covers_map(node, (1, 2, 4, 5)) == one_window, name
    info, out = TensorInfo("x", TensorProto.FLOAT, (1, 2, 4, 5)), TensorInfo("y", TensorProto.FLOAT, y.shape)
    assert graph_layers._covers_map(node, info, out) == one_window


# --------------------------------------------------------------------------------------------------------------
# Sessions, counters, head gradients on a tiny conv net whose head is not affine


def tiny_net(path: Path, unsupported: bool = False) -> Path:
    """x (N, 3, 6, 6) -> Conv 3x3 (4 channels) = "layer" -> Tanh [-> Einsum] -> GAP -> Flatten -> Gemm (3)."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "K"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "kb"),
             numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["layer"], pads=[1, 1, 1, 1]),
             helper.make_node("Tanh", ["layer"], ["t"])]
    pooled_input = "t"
    if unsupported:
        inits.append(numpy_helper.from_array(np.linspace(0.5, 1.5, 4).astype(np.float32), "s"))
        nodes.append(helper.make_node("Einsum", ["t", "s"], ["e"], equation="nchw,c->nchw"))
        pooled_input = "e"
    nodes += [helper.make_node("GlobalAveragePool", [pooled_input], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "W", "b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


SPEC = InputSpec(size=(6, 6), layout="NCHW")


def test_counters_start_at_zero_and_count_session_time(tmp_path: Path) -> None:
    black_box = CallableModel(lambda batch: batch.reshape(len(batch), -1)[:, :3], spec=SPEC)
    model = OnnxModel(tiny_net(tmp_path / "tiny.onnx"), spec=SPEC, optimize=False)
    for fresh in (black_box, model):
        assert all(getattr(fresh, name) == 0 for name in COUNTERS), type(fresh).__name__
    pixels = np.random.default_rng(2).uniform(0, 255, (5, 6, 6, 3)).astype(np.float32)
    model.predict(pixels)
    assert model.forward_passes == 5 and 0 < model.session_seconds <= model.forward_seconds
    assert np.array_equal(model.run_inputs(model.preprocessor.forward(pixels)), model.predict(pixels))


def test_make_session_uses_the_model_settings(tmp_path: Path) -> None:
    path = tiny_net(tmp_path / "tiny.onnx")
    model = OnnxModel(path, spec=SPEC, optimize=False, threads=1)
    options = model.make_session(onnx.load(str(path))).get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.intra_op_num_threads == 1
    black_box = CallableModel(lambda batch: batch.reshape(len(batch), -1)[:, :3], spec=SPEC)
    session = black_box.make_session(str(path))  # a helper graph beside a black box: CPU
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_head_gradient_matches_finite_differences_and_counts(tmp_path: Path) -> None:
    model = OnnxModel(tiny_net(tmp_path / "tiny.onnx"), spec=SPEC, optimize=False)
    layer = model.layer_model("layer")
    assert layer.affine is None and layer.head_gradient_gap() is None
    pixels = np.random.default_rng(3).uniform(0, 255, (6, 6, 3)).astype(np.float32)
    state = layer.state(pixels)
    weights = np.array([1.0, -0.5, 0.25], np.float32)
    before = {name: getattr(model, name) for name in COUNTERS}
    layer_before = layer.head_passes
    logits, grad = layer.head_gradient(state, weights)
    assert model.backward_passes - before["backward_passes"] == 1
    assert model.head_passes - before["head_passes"] == 1 and layer.head_passes - layer_before == 1
    np.testing.assert_allclose(logits, layer.head(state, state.activations[None])[0], rtol=1e-5, atol=1e-6)
    flat = state.activations.astype(np.float64).ravel()
    step = 1e-2 * float(np.sqrt(np.mean(flat ** 2)))
    expected = np.zeros_like(flat)
    for i in range(flat.size):
        moved = np.zeros_like(flat)
        moved[i] = step
        pair = np.stack([flat + moved, flat - moved]).reshape(2, *state.activations.shape).astype(np.float32)
        scores = layer.head(state, pair).astype(np.float64) @ weights.astype(np.float64)
        expected[i] = (scores[0] - scores[1]) / (2 * step)
    np.testing.assert_allclose(grad.ravel(), expected, rtol=2e-2, atol=2e-3 * np.abs(expected).max())
    assert model.head_passes - before["head_passes"] == 1 + 1 + 2 * flat.size  # also counted on the model


def test_head_gradient_gap_names_the_op_and_is_cached(tmp_path: Path) -> None:
    model = OnnxModel(tiny_net(tmp_path / "einsum.onnx", unsupported=True), spec=SPEC, optimize=False)
    layer = model.layer_model("layer")
    gap = layer.head_gradient_gap()
    assert gap is not None and "Einsum" in gap
    state = layer.state(np.full((6, 6, 3), 100.0, np.float32))
    with pytest.raises(GradientUnavailableError, match="Einsum") as first:
        layer.head_gradient(state, np.ones(3, np.float32))
    with pytest.raises(GradientUnavailableError) as second:
        layer.head_gradient(state, np.ones(3, np.float32))
    assert first.value is second.value  # built once: the failure is cached too
    assert model.backward_passes == 0
    assert ReExported is GradientUnavailableError


# --------------------------------------------------------------------------------------------------------------
# Where onnxruntime is imported


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_session_module_imports_onnxruntime_in_model_and_graph() -> None:
    importers = sorted(str(path.relative_to(PACKAGE)) for folder in ("model", "graph")
                       for path in (PACKAGE / folder).rglob("*.py")
                       if any(name.split(".")[0] == "onnxruntime" for name in imported_modules(path)))
    assert importers == ["model/session.py"]
