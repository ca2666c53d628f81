"""onnxruntime's load and run errors in one line: the cause, the remedy, and whose fault it is.

onnxruntime's messages are a page long and name C++ source files. :func:`check_model_file` catches the common
faults of a model file before onnxruntime sees it (an op from a custom domain, external data that is missing or
lies outside the model's folder), and :func:`explain_error` reads an onnxruntime message and says, in a few words
after it, what it means. Each explanation ends with whose fault it is: :data:`MODEL_FILE`, :data:`SPEC`,
:data:`ONNXRUNTIME` (this onnxruntime cannot do it) or :data:`BLACKBOX_XAI` (a graph blackbox-xai built).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import ModelError

MODEL_FILE = "a problem of the model file"
SPEC = "a problem of the input spec"
ONNXRUNTIME = "a limit of this onnxruntime"
BLACKBOX_XAI = "a bug in blackbox-xai (it built this graph from the model): please report it"

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc",
                              "ai.onnx.preview.training", "ai.onnx.training"})
"""Operator domains onnxruntime implements (its CPU build): any other domain holds custom ops."""


def custom_ops(proto: Any) -> list[tuple[str, str]]:
    """The (domain, op) pairs of nodes from custom domains (not in :data:`STANDARD_DOMAINS` and not a function the
    model itself defines), in the main graph, its subgraphs and its functions; sorted, without repeats."""
    local = {(f.domain, f.name) for f in proto.functions}
    found: set[tuple[str, str]] = set()

    def visit(nodes: Any) -> None:
        for node in nodes:
            if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in local:
                found.add((node.domain, node.op_type))
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    visit(attribute.g.node)
                for graph in attribute.graphs:
                    visit(graph.node)

    visit(proto.graph.node)
    for function in proto.functions:
        visit(function.node)
    return sorted(found)


def external_data(proto: Any) -> list[tuple[str, str]]:
    """(tensor name, location) of the initializers whose data lies in another file."""
    from onnx import TensorProto

    found = []
    for tensor in proto.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
            found.append((tensor.name, location))
    return found


def check_model_file(proto: Any, path: Path | None, name: str) -> None:
    """Raise :class:`~blackbox_xai.errors.ModelError` (one line: cause, remedy, fault) when onnxruntime will not
    load the model: ops from a custom domain, or external data that is missing, outside the model's folder, or
    referenced by a model given in memory."""
    custom = custom_ops(proto)
    if custom:
        listed = ", ".join(f"{op} ({domain})" for domain, op in custom[:5]) + (" ..." if len(custom) > 5 else "")
        raise ModelError(
            f"{name} uses custom ops that onnxruntime does not implement: {listed}; they need the custom-op "
            f"library the model was made for (not loadable here): export the model with standard ONNX ops "
            f"({MODEL_FILE})"
        )
    for tensor, location in external_data(proto):
        if path is None:
            raise ModelError(
                f"{name} keeps the weights of {tensor!r} in an external file ({location}), which a model given in "
                "memory cannot reach: load it from its .onnx file (or onnx.load_external_data_for_model first)")
        folder = path.resolve().parent
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ModelError(
                f"{name} keeps the weights of {tensor!r} in {location}, outside the model's folder, which "
                f"onnxruntime refuses: move the data file into {folder} and save the model again with a relative "
                f"location (onnx.save_model(..., save_as_external_data=True, location=NAME)) ({MODEL_FILE})")
        if not target.is_file():
            raise ModelError(
                f"{name} keeps the weights of {tensor!r} in {location}, which is missing beside it: put the "
                f"external data file that came with the model in {folder} ({MODEL_FILE})")


def explain_error(error: BaseException, stage: str = "load", built: bool = False) -> str:
    """onnxruntime's first message line followed by what it means: ``"<first line>; <cause and remedy>
    (<whose fault>)"``. ``stage`` is "load" or "run"; ``built`` says the graph was built by blackbox-xai from the
    model (a gradient or head graph): its faults are blackbox-xai's."""
    text = str(error).strip()
    first = _first_line(error)
    lower = text.lower()
    remedy: str | None = None
    fault = MODEL_FILE
    found = re.search(r"([\w.]*):(\w+)\(-?\d+\) is not a registered function/op", text)
    if found:
        remedy = (f"the op {found.group(2)} of domain {found.group(1)!r} is a custom op that onnxruntime does not "
                  "implement: export the model with standard ONNX ops")
    elif "external data" in lower:
        remedy = ("the model's external data file is missing or outside its folder: keep the data file that came "
                  "with the model beside it")
    elif "validateopsetfordomain" in lower or "opset" in lower and ("not supported" in lower
                                                                     or "under development" in lower):
        remedy = "the model needs a newer onnxruntime (its opset is too new): upgrade onnxruntime"
        fault = ONNXRUNTIME
    elif "unsupported model ir version" in lower:
        remedy = "the model needs a newer onnxruntime (its IR version is too new): upgrade onnxruntime"
        fault = ONNXRUNTIME
    elif "invalid rank for input" in lower:
        remedy = ("the input does not have the dimensions of an image batch: blackbox-xai explains models whose "
                  "image input has 4 (batch, channels, height, width in either layout)")
    elif "unexpected input data type" in lower:
        remedy = ("the spec's dtype differs from the graph's: remove dtype from the spec (it follows the graph) or "
                  "set the type the message expects")
        fault = SPEC
    elif "invalid dimensions for input" in lower:
        remedy = "the spec's size or layout differs from the graph's: remove them (they follow the graph) or fix them"
        fault = SPEC
    elif "failed to allocate memory" in lower or "bad_alloc" in lower:
        remedy = "out of memory: lower the batch size (--batch-size, batch_size=)"
        fault = "not enough memory"
    elif stage == "load" and ("invalid model" in lower or "type error" in lower or "shape inference" in lower):
        remedy = "the model file is not a valid graph (check it with onnx.checker.check_model)"
    if built:
        return f"{first}; {BLACKBOX_XAI}"
    if remedy is None:
        if stage == "load":
            return f"{first} ({MODEL_FILE}, or {ONNXRUNTIME}: check that it loads in onnxruntime by itself)"
        return (f"{first} (if the model runs in onnxruntime by itself on inputs of this shape and type, "
                f"{BLACKBOX_XAI.split(' (')[0]}: please report it)")
    return f"{first}; {remedy} ({fault})"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
