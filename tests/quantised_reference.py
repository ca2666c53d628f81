"""Independent references for the straight-through gradients of quantised graphs (tests only).

:func:`dequantised_float_graph` rewrites a QDQ graph into the float graph that the straight-through estimator
differentiates: every QuantizeLinear -> DequantizeLinear pair becomes a Clip to the quantiser's representable
range (no rounding), constant DequantizeLinear nodes (weights, biases) stay. Its finite differences are the
reference for the backward rules of ``blackbox_xai/autodiff/rules/quantisation.py``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def dequantised_float_graph(model: onnx.ModelProto, residuals: dict[str, np.ndarray] | None = None
                            ) -> onnx.ModelProto:
    """The QDQ model with each QuantizeLinear/DequantizeLinear pair on an activation replaced by a Clip.

    ``residuals`` (DequantizeLinear output -> array) adds a constant to each Clip: with the rounding residuals of
    the quantised model at a point ``x0`` (:func:`rounding_residuals`) the graph computes exactly the quantised
    model's values at ``x0`` while its derivative is the straight-through one (rounding frozen at ``x0``)."""
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    quantisers = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    nodes = []
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            continue  # replaced at its DequantizeLinear consumers
        if node.op_type == "DequantizeLinear" and node.input[0] in quantisers:
            q = quantisers[node.input[0]]
            scale = float(values[q.input[1]])
            zero = values[q.input[2]] if len(q.input) > 2 and q.input[2] else np.uint8(0)
            qmin, qmax = RANGES[np.asarray(zero).dtype]
            low, high = (qmin - float(zero)) * scale, (qmax - float(zero)) * scale
            names = [node.output[0] + "/low", node.output[0] + "/high"]
            graph.initializer.extend([numpy_helper.from_array(np.asarray(low, np.float32), names[0]),
                                      numpy_helper.from_array(np.asarray(high, np.float32), names[1])])
            if residuals is None:
                nodes.append(helper.make_node("Clip", [q.input[0]] + names, [node.output[0]]))
                continue
            clipped, shift = node.output[0] + "/clipped", node.output[0] + "/residual"
            graph.initializer.append(numpy_helper.from_array(residuals[node.output[0]].astype(np.float32), shift))
            nodes.append(helper.make_node("Clip", [q.input[0]] + names, [clipped]))
            nodes.append(helper.make_node("Add", [clipped, shift], [node.output[0]]))
            continue
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return result


def directional_check(run, grad: np.ndarray, x: np.ndarray, n_directions: int = 8, step: float = 1e-2,
                      seed: int = 0) -> tuple[float, float]:
    """(cosine, relative error) between ``grad . v`` and central differences ``(f(x + h v) - f(x - h v)) / 2h``
    of the scalar function ``run`` along ``n_directions`` random unit-rms directions ``v``."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n_directions,) + x.shape[1:]).astype(np.float32)
    batch = np.concatenate([x + step * directions, x - step * directions]).astype(np.float32)
    values = run(batch)
    finite = (values[:n_directions] - values[n_directions:]) / (2 * step)
    analytic = directions.reshape(n_directions, -1).astype(np.float64) @ grad[0].reshape(-1).astype(np.float64)
    cosine = float(finite @ analytic / (np.linalg.norm(finite) * np.linalg.norm(analytic)))
    relative = float(np.linalg.norm(finite - analytic) / np.linalg.norm(finite))
    return cosine, relative


def rounding_residuals(model: onnx.ModelProto, run, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """DequantizeLinear output -> (its value - the clipped value of its QuantizeLinear input) at ``feeds``:
    what rounding added there. ``run(model, feeds) -> list of outputs`` evaluates a model (graph optimisations
    off, so that the QDQ graph is simulated in float as written)."""
    graph = model.graph
    quantisers = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    pairs = [(n.output[0], quantisers[n.input[0]].input[0]) for n in graph.node
             if n.op_type == "DequantizeLinear" and n.input[0] in quantisers]
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    names = sorted({name for pair in pairs for name in pair})
    exposed.graph.output.extend([onnx.ValueInfoProto(name=name) for name in names])
    values = dict(zip([o.name for o in exposed.graph.output], run(exposed, feeds)))
    clipped = dequantised_float_graph(model)
    clipped.graph.output.extend([onnx.ValueInfoProto(name=out) for out, _ in pairs])
    # the clip of each pair applied to the quantised model's own input of the pair
    result = {}
    bounds = {n.output[0]: n for n in clipped.graph.node if n.op_type == "Clip"}
    init = {t.name: numpy_helper.to_array(t) for t in clipped.graph.initializer}
    for out, inp in pairs:
        clip = bounds[out]
        low, high = init[clip.input[1]], init[clip.input[2]]
        result[out] = values[out] - np.clip(values[inp], low, high)
    return result
