"""Describe any ONNX file: what the graph is, and what blackbox-xai can do with it.

:func:`describe` reads the graph (inputs and outputs with their dynamic dimensions, opset, producer, op histogram,
metadata, external data), guesses the role of each input (an image in NCHW or NHWC, or why not) and the kind of
each output (class scores, a class index, detections, a dense map...), then tries to load the model as a
classifier within the memory bounds of :mod:`blackbox_xai.model.limits`: either it can be explained (its resolved
spec, where each value came from, what was assumed, its capabilities and the methods that apply), or one line says
why not (several inputs, a non-image input, an output that is not class scores, a custom op...).
:func:`format_description` prints the result as text. Nothing here needs the file to be a classifier.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import BlackboxError, ModelError, SpecError
from .onnx_model import ONNX_ELEM_TYPES, OnnxModel, _load_proto
from .spec import InputSpec

MethodReasons = Callable[[Any], Mapping[str, "str | None"]]
"""A function model -> {method name: None when it applies, else one line why not}, such as
``blackbox_xai.methods.applicability``."""

_DETECTION_NAMES = ("box", "bbox", "det", "nms", "anchor")
TRIAL_SIZE = (224, 224)
"""The height and width at which a model with a dynamic spatial size is loaded to be described."""


def describe(
    path: str | Path,
    spec: InputSpec | str | Path | None = None,
    providers: str | Sequence[str] | None = None,
    methods: MethodReasons | None = None,
) -> dict[str, Any]:
    """A description of the ONNX file at ``path`` as a JSON-ready dict.

    Parameters
    ----------
    path : the .onnx file (external data stays on disk and is not read).
    spec : an :class:`InputSpec` or the path of a spec file, used when loading the model as a classifier (default
        None: the spec file beside the model, its metadata, the graph; see :mod:`blackbox_xai.model.resolve`).
    providers : onnxruntime providers for the trial load (default CPU).
    methods : ``blackbox_xai.methods.applicability`` (or any function model -> {method: reason or None}) to list
        the methods that apply; None (default) lists the model's capabilities only (the model package does not
        import the methods).

    Returns
    -------
    dict with ``path``, ``file_bytes``, ``producer``, ``ir_version``, ``opset`` (domain -> version), ``nodes``,
    ``ops`` (op -> count, most frequent first), ``metadata`` (metadata_props, long values shortened),
    ``external_data`` (the data files named), ``inputs`` and ``outputs`` (each ``name``, ``shape`` with a string for
    each dynamic dimension, ``dtype``, and ``role`` or ``kind``), ``explainable`` (bool), ``reason`` (None, or one
    line why blackbox-xai cannot explain it) and, when explainable: ``note`` (None, or what the caller must still
    give: a model with a dynamic height and width is described at :data:`TRIAL_SIZE`), ``classes``, ``output_kind``,
    ``labels`` (how many class names), ``spec``,
    ``spec_source``, ``assumptions``, ``capabilities``, ``methods`` ({name: None or why not}, with ``methods``).

    Raises :class:`~blackbox_xai.errors.ModelError` only when the file is missing or is not an ONNX model.
    """
    path = Path(path)
    proto = _load_proto(path)
    graph = proto.graph
    initializers = {init.name for init in graph.initializer}
    from .diagnose import external_data

    description: dict[str, Any] = {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "ir_version": proto.ir_version,
        "opset": {imp.domain or "ai.onnx": imp.version for imp in proto.opset_import},
        "nodes": len(graph.node),
        "ops": _histogram(node.op_type if not node.domain else f"{node.domain}:{node.op_type}" for node in graph.node),
        "metadata": {p.key: (p.value if len(p.value) <= 200 else p.value[:197] + "...") for p in proto.metadata_props},
        "external_data": sorted({location for _, location in external_data(proto)}),
        "inputs": [dict(_value(v), role=_input_role(_value(v))) for v in graph.input if v.name not in initializers],
        "outputs": [dict(_value(v), kind=_output_kind(_value(v))) for v in graph.output],
    }
    del proto, graph
    if isinstance(spec, (str, Path)):
        spec = InputSpec.from_json(spec)
    note, trial_size = None, False
    try:
        try:
            model = _trial_load(path, spec, providers)
        except SpecError as error:
            if "no fixed size" not in str(error):
                raise
            # a dynamic spatial size: described at a trial size, and the size to give is named
            model = _trial_load(path, (spec or InputSpec()).replace(size=TRIAL_SIZE), providers)
            trial_size = True
            note = (f"the input's height and width are dynamic: described at {TRIAL_SIZE[0]}x{TRIAL_SIZE[1]}; give "
                    "the size the model was trained at (spec key size, --size H,W)")
        except ModelError as error:
            scores = [value["name"] for value in description["outputs"] if value["kind"].startswith("class scores")]
            if "choose a score output" not in str(error) or not scores:
                raise
            # output 0 is a class index: described with the first score output, which the caller must name
            model = _trial_load(path, (spec or InputSpec()).replace(output=scores[0]), providers)
            note = (f"{str(error).split(':')[0]} (a class index or labels, not scores): described with the score "
                    f"output {scores[0]!r}; name it with the spec key output (--output {scores[0]})")
    except BlackboxError as error:
        description.update(explainable=False, reason=_static_reason(description) or str(error))
        return description
    description.update(
        explainable=True,
        reason=None,
        note=note,
        classes=model.n_classes,
        output_kind=model.output_kind,
        labels=len(model.labels) if model.labels else None,
        spec=model.spec.to_dict(),
        spec_source={**model.spec_source, **({"size": "trial size (dynamic in the graph)"} if trial_size else {})},
        assumptions=list(model.assumptions),
        capabilities={name: model.capability_gap(name) for name in _capability_names()},
    )
    if methods is not None:
        description["methods"] = dict(methods(model))
    return description


def format_description(description: Mapping[str, Any]) -> str:
    """The text form of :func:`describe`'s result: one line per fact, inputs and outputs one per line."""
    d = description
    lines = [f"model     {d['path']} ({d['file_bytes']:,} bytes)"]
    opsets = ", ".join(f"{domain} {version}" for domain, version in d["opset"].items())
    lines.append(f"producer  {d['producer'] or '-'}  (IR {d['ir_version']}, opset {opsets})")
    for title, key, extra in (("input", "inputs", "role"), ("output", "outputs", "kind")):
        for value in d[key]:
            shape = "[" + ", ".join(str(dim) for dim in value["shape"]) + "]"
            lines.append(f"{title:<9} {value['name']} {shape} {value['dtype']}: {value[extra]}")
    lines.append(f"nodes     {d['nodes']}: " + ", ".join(f"{op} {n}" for op, n in d["ops"].items()))
    if d["metadata"]:
        lines.append("metadata  " + ", ".join(f"{k}={v!r}" for k, v in d["metadata"].items()))
    if d["external_data"]:
        lines.append("data      external: " + ", ".join(d["external_data"]))
    if not d["explainable"]:
        lines.append(f"explain   no: {d['reason']}")
        return "\n".join(lines)
    lines.append(f"explain   yes: a classifier with {d['classes']} classes ({d['output_kind']})")
    if d.get("note"):
        lines.append(f"note      {d['note']}")
    spec = {k: v for k, v in d["spec"].items() if v is not None}
    lines.append("spec      " + ", ".join(f"{k}={v}" for k, v in spec.items()))
    sources: dict[str, list[str]] = {}
    for name, source in d["spec_source"].items():
        sources.setdefault(source, []).append(name)
    lines.append("from      " + "; ".join(f"{source}: {', '.join(names)}" for source, names in sources.items()))
    lines.extend(f"warning   {line}" for line in d["assumptions"])
    offered = [name for name, gap in d["capabilities"].items() if gap is None]
    lines.append("offers    " + ", ".join(offered))
    for name, gap in d["capabilities"].items():
        if gap is not None:
            lines.append(f"lacks     {name}: {gap}")
    if "methods" in d:
        applicable = [name for name, reason in d["methods"].items() if reason is None]
        lines.append("methods   " + (", ".join(applicable) or "none"))
        for name, reason in d["methods"].items():
            if reason is not None:
                lines.append(f"not       {name}: {reason}")
    return "\n".join(lines)


def _trial_load(path: Path, spec: InputSpec | None, providers: str | Sequence[str] | None) -> OnnxModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the assumptions are returned, not printed
        return OnnxModel(path, spec=spec, providers=providers, batch_size=1, dynamic_batch=False)


def _capability_names() -> tuple[str, ...]:
    from .capabilities import CAPABILITIES

    return CAPABILITIES


def _histogram(ops: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _value(value: Any) -> dict[str, Any]:
    """Name, shape (an int per fixed dimension, the dimension's name or "?" per dynamic one) and element type."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return {"name": value.name, "shape": [], "dtype": kind or "unknown"}
    tensor = value.type.tensor_type
    dims: list[int | str] = []
    for dim in tensor.shape.dim:
        dims.append(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?"))
    return {"name": value.name, "shape": dims, "dtype": ONNX_ELEM_TYPES.get(tensor.elem_type, str(tensor.elem_type)),
            "rank_known": tensor.HasField("shape")}


def _input_role(value: Mapping[str, Any]) -> str:
    dims, dtype = value["shape"], value["dtype"]
    if dtype not in ("float32", "float16", "uint8", "float64"):
        return f"not an image ({dtype} values: ids, sizes or flags)"
    if not value.get("rank_known", True):
        return "rank unknown (the graph does not say)"
    if len(dims) == 4:
        if dims[1] in (1, 3):
            return f"image NCHW, {dims[1]} channel{'s' if dims[1] == 3 else ''}"
        if dims[3] in (1, 3):
            return f"image NHWC, {dims[3]} channel{'s' if dims[3] == 3 else ''}"
        return "4-D without a channel dimension of 1 or 3 (not an image blackbox-xai can feed)"
    if len(dims) == 5:
        return "5-D (a video or a volume: not an image)"
    return f"{len(dims)}-D (not an image)"


def _output_kind(value: Mapping[str, Any]) -> str:
    dims, dtype, name = value["shape"], value["dtype"], value["name"].lower()
    if dtype in ("int64", "int32", "int8", "uint8"):
        return f"class index or labels ({dtype}; not scores)"
    if dtype not in ("float32", "float16", "float64"):
        return f"{dtype} (not a tensor of scores)"
    if any(word in name for word in _DETECTION_NAMES):
        return "detections (boxes or their scores)"
    if len(dims) == 2:
        return "class scores"
    if len(dims) == 4 and dims[2:] == [1, 1]:
        return "class scores (N, C, 1, 1)"
    if len(dims) == 3:
        return "detections or tokens (one row per candidate: not class scores)"
    if len(dims) == 4:
        return "dense map (segmentation or features: not class scores)"
    if len(dims) == 1:
        return "one value per image"
    return f"{len(dims)}-D (not class scores)"


def _static_reason(description: Mapping[str, Any]) -> str | None:
    """Why the graph alone rules out explaining it, in blackbox-xai's terms (None when the graph does not say)."""
    inputs = description["inputs"]
    images = [value for value in inputs if value["role"].startswith("image")]
    if not images:
        if len(inputs) == 1:
            return (f"its input {inputs[0]['name']!r} is {inputs[0]['role']}: blackbox-xai explains models with one "
                    "image input")
        return (f"none of its {len(inputs)} inputs is an image ({', '.join(v['name'] for v in inputs)}): "
                "blackbox-xai explains models with one image input")
    if len(inputs) > 1:
        others = ", ".join(value["name"] for value in inputs if value is not images[0])
        return (f"it has {len(inputs)} inputs (besides the image {images[0]['name']!r}: {others}): blackbox-xai "
                "explains single-input image models")
    outputs = description["outputs"]
    if not any(value["kind"].startswith("class scores") for value in outputs):
        kinds = "; ".join(f"{value['name']}: {value['kind']}" for value in outputs)
        return (f"no output holds class scores ({kinds}): blackbox-xai explains classifiers (detectors, "
                "segmenters and class indices are not explained)")
    return None
