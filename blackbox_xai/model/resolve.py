"""Where each value of a model's input spec comes from, and what was assumed.

A value of the :class:`~blackbox_xai.model.InputSpec` is taken from the first of these that states it:

1. the caller (``spec=`` fields given explicitly, ``--spec FILE``, command-line flags): ``"caller"``;
2. a spec file beside the model, ``<model>.spec.json`` (``models/resnet.onnx`` -> ``models/resnet.spec.json``; same
   keys as any spec file, a relative ``labels`` path is read from its folder): ``"spec file <path>"``;
3. the ONNX file's ``metadata_props`` (:data:`METADATA_KEYS`): ``"metadata <key>"``;
4. the graph (input name, layout, size, dtype, channels): ``"graph"``;
5. a default: ``"default"`` (output 0, channel order RGB, no labels), ``"uint8 input"`` (a uint8 input takes bytes:
   value range 0..255, no mean/std) or ``"assumed"`` for the normalisation (value range 0..1, mean 0, std 1) of a
   float input that nothing above states.

The dtype always follows the graph, except that a dtype the caller gave explicitly must match it. Whenever the
normalisation is assumed, :func:`assumption_line` says so in one line, which
:class:`~blackbox_xai.model.OnnxModel` records in ``assumptions`` and emits once as an
:class:`~blackbox_xai.errors.AssumedSpecWarning`.

Metadata keys read (:data:`METADATA_KEYS`):

- ``blackbox_xai.spec``: a JSON object with the spec keys (input, output, size, layout, channel_order,
  value_range, mean, std, labels; a relative labels path is read from the model's folder). It wins over the keys
  below. Write it with ``onnx.helper.set_model_props(model, {"blackbox_xai.spec": json.dumps({...})})``.
- ``Image.BitmapPixelFormat`` (ONNX's image metadata, onnx/docs/MetadataProps.md; keys and values
  case-insensitive): ``Rgb8``/``Rgba8`` -> channel order RGB, ``Bgr8``/``Bgra8`` -> BGR (``Gray8``: the graph's one
  channel says it already).
- ``Image.NominalPixelRange``: ``NominalRange_0_255`` -> value range [0, 255], no mean/std; ``Normalized_0_1`` ->
  [0, 1]; ``Normalized_1_1`` -> [-1, 1] (value range [0, 1], mean 0.5, std 0.5); ``NominalRange_16_235`` ->
  16 + 219/255 p (value range [0, 255], std 255/219, mean -16 * 255/219).
- ``names``: class names as Ultralytics exports write them (a Python dict ``{0: 'person', ...}``), used as labels
  when none are given.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

from ..errors import SpecError
from .spec import JSON_KEYS, InputSpec

SPEC_FILE_SUFFIX = ".spec.json"
METADATA_SPEC_KEY = "blackbox_xai.spec"
METADATA_KEYS = (METADATA_SPEC_KEY, "Image.BitmapPixelFormat", "Image.NominalPixelRange", "names")
NORMALISATION = ("value_range", "mean", "std")

CALLER = "caller"
GRAPH = "graph"
DEFAULT = "default"
UINT8 = "uint8 input"
ASSUMED = "assumed"

_GRAPH_KEYS = ("input", "layout", "size", "dtype", "channels")
_PIXEL_FORMATS = {"rgb8": "RGB", "rgba8": "RGB", "bgr8": "BGR", "bgra8": "BGR"}
_PIXEL_RANGES: dict[str, dict[str, Any]] = {
    "nominalrange_0_255": dict(value_range=(0.0, 255.0), mean=(0.0,), std=(1.0,)),
    "normalized_0_1": dict(value_range=(0.0, 1.0), mean=(0.0,), std=(1.0,)),
    "normalized_1_1": dict(value_range=(0.0, 1.0), mean=(0.5,), std=(0.5,)),
    "nominalrange_16_235": dict(value_range=(0.0, 255.0), mean=(-16.0 * 255.0 / 219.0,), std=(255.0 / 219.0,)),
}


def spec_file_beside(model_path: str | Path) -> Path:
    """The spec file read beside a model: ``x.onnx`` -> ``x.spec.json`` (another name: ``name.spec.json``)."""
    path = Path(model_path)
    stem = path.stem if path.suffix.lower() == ".onnx" else path.name
    return path.with_name(stem + SPEC_FILE_SUFFIX)


def metadata_fields(props: Mapping[str, str], base_dir: Path | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec fields a model's ``metadata_props`` state, and for each the key it came from.

    Raises :class:`~blackbox_xai.errors.SpecError` when ``blackbox_xai.spec`` is not a valid spec (the model
    file's metadata is wrong)."""
    fields: dict[str, Any] = {}
    sources: dict[str, str] = {}
    lowered = {key.lower(): (key, str(value)) for key, value in props.items()}
    if "image.bitmappixelformat" in lowered:
        key, value = lowered["image.bitmappixelformat"]
        if value.strip().lower() in _PIXEL_FORMATS:
            fields["channel_order"] = _PIXEL_FORMATS[value.strip().lower()]
            sources["channel_order"] = f"metadata {key}"
    if "image.nominalpixelrange" in lowered:
        key, value = lowered["image.nominalpixelrange"]
        for name, stated in _PIXEL_RANGES.get(value.strip().lower(), {}).items():
            fields[name] = stated
            sources[name] = f"metadata {key}"
    if METADATA_SPEC_KEY in props:
        try:
            data = json.loads(props[METADATA_SPEC_KEY])
            stated_spec = InputSpec.from_dict(data, base_dir=base_dir)
        except (json.JSONDecodeError, SpecError) as error:
            raise SpecError(f"the model's metadata {METADATA_SPEC_KEY} is not a valid spec ({error}); fix the "
                            "model file's metadata, or give the spec yourself") from None
        for name in stated_spec.explicit:
            fields[name] = getattr(stated_spec, name)
            sources[name] = f"metadata {METADATA_SPEC_KEY}"
    return fields, sources


def metadata_labels(props: Mapping[str, str]) -> list[str] | None:
    """Class names from an Ultralytics-style ``names`` entry (``{0: 'person', 1: 'bicycle', ...}``), or None."""
    text = props.get("names")
    if not text:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(names, dict) or sorted(names) != list(range(len(names))):
        return None
    return [str(names[i]) for i in range(len(names))]


def resolve_spec(
    given: InputSpec,
    model_path: str | Path | None,
    props: Mapping[str, str],
    spec_file: bool | str | Path = True,
) -> tuple[InputSpec, dict[str, str]]:
    """The caller's spec completed from the spec file beside the model and the model's metadata.

    Parameters
    ----------
    given : the caller's spec; its explicit fields win.
    model_path : the model file (None for an in-memory model: no spec file is looked for).
    props : the model's ``metadata_props`` as a dict.
    spec_file : True (default) reads ``<model>.spec.json`` when it exists; False reads none; a path reads that
        file (it must exist).

    Returns
    -------
    (spec, sources): the spec (fields taken from the file or the metadata count as explicit, except ``dtype``,
    which follows the graph) and where each field came from so far (see the module's docstring); the graph's and
    the defaults' part is added by :func:`complete_sources`.
    """
    sources = {name: CALLER for name in given.explicit}
    layers: list[tuple[dict[str, Any], dict[str, str]]] = []
    path = None
    if spec_file is not False:
        if spec_file is True:
            candidate = spec_file_beside(model_path) if model_path is not None else None
            path = candidate if candidate is not None and candidate.is_file() else None
        else:
            path = Path(spec_file)
    if path is not None:
        try:
            beside = InputSpec.from_json(path)
        except SpecError as error:
            if spec_file is not True:
                raise
            raise SpecError(f"{error} (the spec file beside the model: fix or remove it, or give a spec)") from None
        layers.append(({name: getattr(beside, name) for name in beside.explicit},
                       {name: f"spec file {path}" for name in beside.explicit}))
    base_dir = Path(model_path).parent if model_path is not None else None
    layers.append(metadata_fields(props, base_dir))
    values: dict[str, Any] = {}
    for name in (*JSON_KEYS, "channels"):
        if name in given.explicit or name == "dtype":
            continue
        for fields, origins in layers:
            if name in fields:
                values[name], sources[name] = fields[name], origins[name]
                break
    spec = dataclasses.replace(given, explicit=given.explicit | frozenset(values), **values)
    return spec, sources


def complete_sources(spec: InputSpec, sources: Mapping[str, str]) -> dict[str, str]:
    """``sources`` with every spec field named: the graph's fields, the uint8 defaults, the assumed
    normalisation and the other defaults."""
    complete = dict(sources)
    for name in (*JSON_KEYS, "channels"):
        if name in complete:
            continue
        if name in _GRAPH_KEYS:
            complete[name] = GRAPH
        elif name in NORMALISATION:
            complete[name] = UINT8 if spec.dtype == "uint8" else ASSUMED
        else:
            complete[name] = DEFAULT
    return complete


def assumption_line(spec: InputSpec, sources: Mapping[str, str], model_path: str | Path | None) -> str | None:
    """One line saying which normalisation was assumed and how to set it, or None when nothing was."""
    assumed = [name for name in NORMALISATION if sources.get(name) == ASSUMED]
    if not assumed:
        return None
    channels = int(spec.channels)

    def numbers(values: tuple[float, ...]) -> str:
        shown = values[:channels]
        text = [f"{v:g}" for v in shown]
        return text[0] if len(set(text)) == 1 else "[" + ", ".join(text) + "]"

    stated = {"value_range": f"value range [{spec.value_range[0]:g}, {spec.value_range[1]:g}]",
              "mean": f"mean {numbers(spec.mean)}", "std": f"std {numbers(spec.std)}"}
    name = Path(model_path).name if model_path is not None else "the model"
    where = (f"in {spec_file_beside(model_path).name} beside the model" if model_path is not None
             else "in the spec")
    flags = "/".join("--" + n.replace("_", "-") for n in assumed)
    return (f"{name}: normalisation assumed, not known: {', '.join(stated[n] for n in assumed)} (no spec, spec "
            f"file or metadata states it); if the model expects other inputs, set {', '.join(assumed)} {where} "
            f"(or --spec FILE, {flags}, InputSpec(...))")
