"""Read torch's legacy checkpoints without torch, through a restricted unpickler.

A torch checkpoint is a pickle, and a pickle can call any importable function while it loads (``os.system``
included). :func:`read_torch_checkpoint` therefore reads it with an unpickler whose ``find_class`` is a whitelist:
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` (replaced by a harmless recorder) and the
``torch.*Storage`` types (replaced by markers). Neither torch nor any pickled code is run.

The format is the legacy (pre-1.6, non-zip) one of ``torch/serialization.py``; the zip format is refused with a
clear message.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import BlackboxError, ModelError

__all__ = ["CheckpointError", "UnsafeCheckpointError", "read_torch_checkpoint"]


class CheckpointError(ModelError, ValueError):
    """A torch checkpoint cannot be read: truncated, corrupt, or of an unsupported format."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle references a global outside the small set a tensor state dict needs."""


# torch/serialization.py: MAGIC_NUMBER and PROTOCOL_VERSION of the legacy (non-zip) format.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> element type. BFloat16 has no numpy type and is refused.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.<Name>Storage`` class named in the pickle."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    """A storage announced by a persistent id; its bytes follow the pickles."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    """What ``torch._utils._rebuild_tensor_v2`` would rebuild: a strided view of a storage."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    """Safe stand-in for ``torch._utils._rebuild_tensor_v2``: records the view, runs nothing."""
    if not isinstance(storage, _Storage):
        raise CheckpointError("tensor record does not point to a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointError(f"bad tensor storage offset {storage_offset!r}")
    if not _is_int_tuple(size) or not _is_int_tuple(stride) or len(size) != len(stride):
        raise CheckpointError(f"bad tensor size/stride {size!r} / {stride!r}")
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows only what a tensor state dict needs and refuses every other global.

    A pickle can call any importable function while it loads (``os.system`` included), so ``find_class`` is a
    whitelist: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` (replaced by a harmless
    recorder) and the ``torch.*Storage`` types (replaced by markers).
    """

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            # A bound method, not the module-level function: a pickle BUILD opcode cannot set attributes on it.
            return self._rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"refusing to load checkpoint: its pickle references the global {module}.{name}, which is not part of "
            "a plain tensor state dict (a pickle can run arbitrary code; only collections.OrderedDict, "
            "torch._utils._rebuild_tensor_v2 and torch.*Storage are allowed)"
        )

    def _rebuild_tensor_v2(self, *args: Any, **kwargs: Any) -> _TensorRef:
        return _rebuild_tensor_v2(*args, **kwargs)

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id in checkpoint: {pid!r:.80}")
        _, storage_type, key, location, numel = pid[:5]
        view_metadata = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"persistent id names {storage_type!r:.80} instead of a storage type")
        if not isinstance(key, str) or not isinstance(location, str):
            raise CheckpointError("storage key and location must be strings")
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise CheckpointError(f"bad storage size {numel!r}")
        if view_metadata is not None:
            raise CheckpointError("storage views (torch < 0.4 checkpoints) are not supported")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type.dtype, numel)
        elif storage.dtype != storage_type.dtype or storage.numel != numel:
            raise CheckpointError(f"storage {key} is declared twice with different types or sizes")
        return storage


def _load_pickle(file: IO[bytes], storages: dict[str, _Storage]) -> Any:
    try:
        return _RestrictedUnpickler(file, storages).load()
    except BlackboxError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, MemoryError) as error:
        raise CheckpointError(f"corrupt or truncated checkpoint pickle: {error}") from None


def _read_exact(file: IO[bytes], count: int, what: str) -> bytes:
    data = file.read(count)
    if len(data) != count:
        raise CheckpointError(f"checkpoint is truncated while reading {what}")
    return data


def _materialize(ref: _TensorRef) -> np.ndarray:
    data = ref.storage.data
    if data is None:
        raise CheckpointError(f"storage {ref.storage.key} has no data in the checkpoint")
    if any(dim == 0 for dim in ref.shape):
        array = np.zeros(ref.shape, dtype=data.dtype)
    else:
        last = ref.offset + sum((dim - 1) * step for dim, step in zip(ref.shape, ref.stride, strict=True))
        if last >= data.size:
            raise CheckpointError(f"tensor view runs past the end of storage {ref.storage.key}")
        strides = tuple(step * data.itemsize for step in ref.stride)
        view = np.lib.stride_tricks.as_strided(data[ref.offset:], shape=ref.shape, strides=strides, writeable=False)
        array = np.array(view)  # own, contiguous copy
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    return array


def read_torch_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a state dict saved in torch's legacy serialization format, without torch.

    The legacy (pre-1.6, non-zip) format is a sequence of pickles: the magic number, the protocol version (1001),
    a ``sys_info`` dict, the state dict itself (tensors reference storages through persistent ids
    ``('storage', storage_type, key, location, numel, view_metadata)``), and the list of storage keys; then, for
    each key in that order, an int64 little-endian element count followed by the raw element bytes.

    The pickles are read by a restricted unpickler that allows only ``collections.OrderedDict``,
    ``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage`` types; any other global raises
    :class:`UnsafeCheckpointError` before anything runs.

    Returns a dict from parameter name to a numpy array in the checkpoint's order: floating-point tensors as
    float32, integer tensors (such as ``num_batches_tracked``) in their own integer type.
    """
    path = Path(path)
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as error:
        raise CheckpointError(f"cannot open checkpoint {path}: {error}") from None
    with file:
        head = file.read(4)
        if head[:2] == b"PK":
            raise CheckpointError(
                f"{path} is a zip-format torch checkpoint (torch >= 1.6); only the legacy format is supported"
            )
        file.seek(0)
        file_size = os.fstat(file.fileno()).st_size
        storages: dict[str, _Storage] = {}
        magic = _load_pickle(file, storages)
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(f"{path} is not a legacy torch checkpoint (bad magic number)")
        protocol = _load_pickle(file, storages)
        if protocol != _LEGACY_PROTOCOL:
            raise CheckpointError(f"unsupported torch checkpoint protocol version {protocol!r}")
        sys_info = _load_pickle(file, storages)
        if not isinstance(sys_info, dict):
            raise CheckpointError("checkpoint sys_info record is malformed")
        if sys_info.get("little_endian", True) is not True:
            raise CheckpointError("big-endian torch checkpoints are not supported")
        state = _load_pickle(file, storages)
        keys = _load_pickle(file, storages)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise CheckpointError("checkpoint storage key list is malformed")
        for key in keys:
            storage = storages.get(key)
            if storage is None:
                raise CheckpointError(f"checkpoint lists storage {key} that no tensor uses")
            (count,) = struct.unpack("<q", _read_exact(file, 8, f"the size of storage {key}"))
            if count != storage.numel:
                raise CheckpointError(f"storage {key} holds {count} elements, its header says {storage.numel}")
            dtype = storage.dtype.newbyteorder("<")
            nbytes = count * dtype.itemsize
            if nbytes > file_size - file.tell():
                raise CheckpointError(f"checkpoint is truncated: storage {key} needs {nbytes} bytes")
            raw = _read_exact(file, nbytes, f"storage {key}")
            storage.data = np.frombuffer(raw, dtype=dtype).astype(storage.dtype, copy=False)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint holds a {type(state).__name__}, not a state dict")
    result: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise CheckpointError(f"checkpoint entry {name!r:.80} is not a named tensor")
        result[name] = _materialize(value)
    return result
