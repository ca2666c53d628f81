"""ONNX surgery with ``onnx`` alone: load/save, analysis, opset normalisation, expose, split, dynamic batch, layers.

Nothing in this package imports onnxruntime: the shape probe and the batch verification take an optional
``run(model, feeds)`` callable, which :func:`blackbox_xai.model.runner.onnxruntime_runner` builds on onnxruntime.

Typical use for a CAM method::

    from blackbox_xai import graph
    model = graph.normalise_opset(graph.load("resnet.onnx"))
    layer = graph.default_layer(model)                  # Layer(tensor, op_type, node, shape, position)
    body, head, crossing = graph.split(model, layer.tensor)
    model, check = graph.dynamic_batch(model, batch_of_two, onnxruntime_runner())  # from blackbox_xai.model
"""

from .analysis import (
    Runner,
    TensorInfo,
    ancestor_nodes,
    constant_tensors,
    consumers,
    depends_on_input,
    infer_shapes,
    initializer_names,
    opset_version,
    producers,
    real_input_names,
    real_inputs,
    tensor_info,
    topological_order,
)
from .batch import BatchCheck, dynamic_batch, make_batch_dynamic, verify_batch
from .expose import expose
from .io import load, save
from .layers import Layer, candidate_layers, default_layer
from .normalise import move_initializers_out_of_inputs, normalise_opset, semantic_changes
from .split import Split, cut_dependencies, split

__all__ = [
    "BatchCheck",
    "Layer",
    "Runner",
    "Split",
    "TensorInfo",
    "ancestor_nodes",
    "candidate_layers",
    "constant_tensors",
    "consumers",
    "cut_dependencies",
    "default_layer",
    "depends_on_input",
    "dynamic_batch",
    "expose",
    "infer_shapes",
    "initializer_names",
    "load",
    "make_batch_dynamic",
    "move_initializers_out_of_inputs",
    "normalise_opset",
    "opset_version",
    "producers",
    "real_input_names",
    "real_inputs",
    "save",
    "semantic_changes",
    "split",
    "tensor_info",
    "topological_order",
    "verify_batch",
]
