"""Load and save ONNX models, external data included.

Models over 2 GiB cannot be one protobuf message: their weights live in files beside the model ("external
data"), named by a ``location`` relative to the model's folder. :func:`load` refuses locations that are absolute
or lead out of that folder (a model file must not make us read arbitrary files). :func:`save` writes large
tensors to one data file beside the model when the model would not fit in a message, and leaves the in-memory
model as it was.

A huge model can be edited without loading its weights: ``load(path, load_external_data=False)``, edit the graph,
then ``save`` the result in the same folder, so that the untouched external references still point at the
original data file.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator

import numpy as np
import onnx
from onnx import GraphProto, ModelProto, TensorProto, numpy_helper

from ..errors import ModelError
from .analysis import PROTOBUF_LIMIT

__all__ = ["load", "save", "external_tensors", "check_external_location"]


def load(path: str | Path, load_external_data: bool = True) -> ModelProto:
    """Read an ONNX model.

    Parameters
    ----------
    path : the ``.onnx`` file.
    load_external_data : read external weights into the model (default). With False they stay on disk and the
        tensors keep their references (for editing huge models; save the result in the same folder).

    Raises
    ------
    ModelError : missing, unreadable or corrupt file; an external-data location that is absolute, leaves the
        model's folder, or (when loading it) is missing.
    """
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"expected an .onnx file, got a folder: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as error:
        raise ModelError(f"{path} is not a valid ONNX model (truncated or corrupt?): {_first_line(error)}") from None
    except OSError as error:
        raise ModelError(f"cannot read model {path}: {error.strerror or error}") from None
    folder = path.resolve().parent
    external = list(external_tensors(model))
    for tensor in external:
        check_external_location(tensor, folder)
    if load_external_data and external:
        for tensor in external:
            _load_tensor_data(tensor, folder)
    return model


def save(
    model: ModelProto,
    path: str | Path,
    external_data: bool | None = None,
    size_threshold: int = 1024,
    location: str | None = None,
) -> Path:
    """Write a model; large models get their weights in one external data file beside it.

    Parameters
    ----------
    model : the model; it is left unchanged.
    path : the ``.onnx`` file to write (parent folders are created).
    external_data : True to write tensors of ``size_threshold`` bytes or more to an external data file, False to
        write one file, None (default) to use external data only when the model exceeds the 2 GiB protobuf limit.
    size_threshold : smallest tensor (bytes) moved to the data file.
    location : name of the data file, relative to the model's folder (default ``<model file name>.data``).

    Tensors that already reference external data (a model loaded with ``load_external_data=False``) are left as
    references; their files must exist relative to the new model's folder, so save such a model beside its data.

    Returns the path written. Raises :class:`ModelError` when the model cannot be written as asked.
    """
    path = Path(path)
    folder = path.resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    referenced = set()
    for tensor in external_tensors(model):
        referenced.add(_location(tensor))
        resolved = check_external_location(tensor, folder)
        if not resolved.exists():
            raise ModelError(
                f"tensor {tensor.name!r} references external data {_location(tensor)!r}, which is not beside "
                f"{path}; save the model in the folder of its data, or load it with load_external_data=True"
            )
    tensors = [t for t in _all_tensors(model.graph) if t.data_location != TensorProto.EXTERNAL]
    if external_data is None:
        external_data = sum(t.ByteSize() for t in tensors) > PROTOBUF_LIMIT
    moved: list[TensorProto] = []
    data_name = location or f"{path.name}.data"
    if external_data:
        _check_relative(data_name, folder)
        if data_name in referenced:
            raise ModelError(
                f"cannot write external data to {data_name!r}: the model still reads tensors from that file; "
                "choose another model file name or location"
            )
        moved = [t for t in tensors if t.data_type != TensorProto.STRING and _data_bytes(t) >= size_threshold]
    data_path = folder / data_name
    try:
        if moved:
            data_path.parent.mkdir(parents=True, exist_ok=True)
            _write_external(moved, data_path, data_name)
        try:
            with open(path, "wb") as handle:
                handle.write(model.SerializeToString())
        except ValueError as error:  # protobuf refuses messages over 2 GiB
            raise ModelError(f"model too large for one file ({error}); save with external_data=True") from None
    except OSError as error:
        raise ModelError(f"cannot write model {path}: {error.strerror or error}") from None
    finally:
        if moved:
            _restore(moved, folder)
    return path


def external_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """The tensors of a model (initializers, node attributes, subgraphs) whose data is external."""
    for tensor in _all_tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            yield tensor


def check_external_location(tensor: TensorProto, folder: str | Path) -> Path:
    """The file that an external tensor reads, refusing absolute locations and ones outside ``folder``."""
    return _check_relative(_location(tensor), Path(folder), tensor.name)


def _check_relative(location: str, folder: Path, name: str | None = None) -> Path:
    what = f"tensor {name!r}" if name else "external data"
    if not location:
        raise ModelError(f"{what} is marked external but has no location")
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or PureWindowsPath(
        location
    ).drive:
        raise ModelError(f"{what} has an absolute external-data location {location!r}; refusing to read it")
    base = folder.resolve()
    resolved = (base / location).resolve()
    if resolved != base and base not in resolved.parents:
        raise ModelError(f"{what} has an external-data location {location!r} outside the model's folder; refusing")
    return resolved


def _location(tensor: TensorProto) -> str:
    for entry in tensor.external_data:
        if entry.key == "location":
            return entry.value
    return ""


def _external_field(tensor: TensorProto, key: str) -> str | None:
    for entry in tensor.external_data:
        if entry.key == key:
            return entry.value
    return None


def _all_tensors(graph: GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _all_tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _all_tensors(sub)


def _load_tensor_data(tensor: TensorProto, folder: Path) -> None:
    source = check_external_location(tensor, folder)
    offset = int(_external_field(tensor, "offset") or 0)
    length = _external_field(tensor, "length")
    try:
        with open(source, "rb") as handle:
            handle.seek(offset)
            data = handle.read(int(length)) if length is not None else handle.read()
    except OSError as error:
        raise ModelError(
            f"cannot read external data {_location(tensor)!r} of tensor {tensor.name!r}: {error.strerror or error}"
        ) from None
    if length is not None and len(data) != int(length):
        raise ModelError(f"external data file {_location(tensor)!r} is truncated (tensor {tensor.name!r})")
    tensor.raw_data = data
    tensor.ClearField("external_data")
    tensor.ClearField("data_location")


def _data_bytes(tensor: TensorProto) -> int:
    if tensor.HasField("raw_data"):
        return len(tensor.raw_data)
    count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
    return count * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize


_DATA_FIELDS = frozenset(
    {"raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data",
     "external_data", "data_location"}
)


def _write_external(tensors: list[TensorProto], data_path: Path, data_name: str) -> None:
    """Move the data of ``tensors`` to ``data_path`` and make them reference it."""
    with open(data_path, "wb") as handle:
        for tensor in tensors:
            data = tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()
            offset = handle.tell()
            padding = (-offset) % 4096  # page-aligned offsets let onnxruntime map the data
            handle.write(b"\0" * padding)
            offset += padding
            handle.write(data)
            kept = [(field.name, value) for field, value in tensor.ListFields() if field.name not in _DATA_FIELDS]
            tensor.Clear()
            for field_name, value in kept:
                if isinstance(value, (int, float, str, bytes)):
                    setattr(tensor, field_name, value)
                else:
                    getattr(tensor, field_name).extend(value)
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(data)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value


def _restore(tensors: list[TensorProto], folder: Path) -> None:
    """Read the data of ``tensors`` back from the file just written, so that the caller's model keeps its weights
    (tensors that stored typed values, such as ``float_data``, come back as the same values in ``raw_data``)."""
    for tensor in tensors:
        if tensor.data_location == TensorProto.EXTERNAL:
            _load_tensor_data(tensor, folder)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
