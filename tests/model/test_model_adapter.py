"""The model adapter: InputSpec inference, preprocessing, chunked prediction, score kinds, image loading.

Every expected value is computed here with numpy (and cv2 for resizing) from the weights of tiny real ONNX models
built by ``onnx_builders``, run through real onnxruntime sessions.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

import onnx_builders as ob
from blackbox_xai.errors import ImageError, ModelError, ParameterError, ScoreError, SpecError
from blackbox_xai.image import load_image
from blackbox_xai.model import CallableModel, InputSpec, OnnxModel, to_model_input

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------------------------

def reference_input(
    pixels: np.ndarray,
    size: tuple[int, int] | None = None,
    layout: str = "NCHW",
    value_max: float = 1.0,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    order: str = "RGB",
    dtype: str = "float32",
    gray: bool = False,
) -> np.ndarray:
    """The model input for RGB pixels (N, H, W, 3) in [0, 255], written out step by step in float64."""
    images = []
    for image in np.asarray(pixels, dtype=np.float32):
        if size is not None and image.shape[:2] != tuple(size):
            shrink = size[0] < image.shape[0] and size[1] < image.shape[1]
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        images.append(image.astype(np.float64))
    x = np.stack(images)
    if gray:
        x = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]
    elif order == "BGR":
        x = x[..., [2, 1, 0]]
    x = x * (value_max / 255.0)
    if dtype == "uint8":
        x = np.clip(np.round(x), 0, 255)
    else:
        channels = x.shape[-1]
        x = (x - np.asarray(mean[:channels])) / np.asarray(std[:channels])
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return x.astype({"float32": np.float32, "float16": np.float16, "uint8": np.uint8}[dtype])


def reference_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def random_pixels(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    return rng.uniform(0, 255, size=(n, height, width, 3)).astype(np.float32)


def close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4, atol: float = 1e-4) -> None:
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------------------------

PREPROCESS_CASES = {
    "nchw-unit-range": dict(layout="NCHW", value_range=(0, 1)),
    "nhwc-255-range": dict(layout="NHWC", value_range=(0, 255)),
    "imagenet-mean-std": dict(layout="NCHW", value_range=(0, 1), mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "bgr-255-caffe": dict(layout="NCHW", value_range=(0, 255), channel_order="BGR", mean=(103.9, 116.8, 123.7)),
    "bgr-nhwc-std": dict(layout="NHWC", value_range=(0, 1), channel_order="BGR", mean=0.5, std=0.25),
}


@pytest.mark.parametrize("case", sorted(PREPROCESS_CASES))
def test_logits_match_numpy_reference(tmp_path: Path, rng: np.random.Generator, case: str) -> None:
    options = PREPROCESS_CASES[case]
    layout = options["layout"]
    weights = ob.linear_classifier(tmp_path / "m.onnx", height=6, width=7, n_classes=5, layout=layout)
    spec_fields = {k: v for k, v in options.items() if k != "layout"}
    model = OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(**spec_fields))
    assert model.spec.layout == layout and model.spec.size == (6, 7)
    pixels = random_pixels(rng, 5, 6, 7)
    mean = options.get("mean", 0.0)
    std = options.get("std", 1.0)
    mean = (mean,) * 3 if isinstance(mean, float) else mean
    std = (std,) * 3 if isinstance(std, float) else std
    expected_input = reference_input(
        pixels, layout=layout, value_max=options["value_range"][1], mean=mean, std=std,
        order=options.get("channel_order", "RGB"),
    )
    close(to_model_input(pixels, model.spec), expected_input, rtol=1e-5, atol=1e-4)
    close(model.predict(pixels), weights.logits(expected_input), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("image_size", [(13, 17), (3, 4)], ids=["shrink", "enlarge"])
def test_images_at_another_size_are_resized_like_cv2(
    tmp_path: Path, rng: np.random.Generator, image_size: tuple[int, int]
) -> None:
    weights = ob.linear_classifier(tmp_path / "m.onnx", height=6, width=7)
    model = OnnxModel(tmp_path / "m.onnx")
    pixels = random_pixels(rng, 3, *image_size)
    expected_input = reference_input(pixels, size=(6, 7))
    model_input = to_model_input(pixels, model.spec)
    assert model_input.shape == (3, 3, 6, 7)
    close(model_input, expected_input, rtol=1e-5, atol=1e-4)
    close(model.predict(pixels), weights.logits(expected_input), atol=1e-3)
    # The resize is not a no-op: the result differs from, e.g., nearest-neighbour sampling.
    nearest = np.stack([cv2.resize(p, (7, 6), interpolation=cv2.INTER_NEAREST) for p in pixels])
    assert not np.allclose(model_input, nearest.transpose(0, 3, 1, 2) / 255.0, atol=1e-3)


def test_float16_model(tmp_path: Path, rng: np.random.Generator) -> None:
    weights = ob.linear_classifier(tmp_path / "m.onnx", height=5, width=5, dtype="float16")
    spec = InputSpec.create(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    model = OnnxModel(tmp_path / "m.onnx", spec=spec)
    assert model.spec.dtype == "float16"
    pixels = random_pixels(rng, 4, 5, 5)
    expected_input = reference_input(pixels, mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype="float16")
    model_input = to_model_input(pixels, model.spec)
    assert model_input.dtype == np.float16
    # float16 rounding of the same float32 value; allow one half-precision ulp of difference.
    close(model_input, expected_input, rtol=1e-3, atol=1e-3)
    close(model.predict(pixels), weights.logits(model_input), rtol=1e-4, atol=1e-3)
    close(model.predict(pixels), weights.logits(expected_input), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_uint8_model(tmp_path: Path, rng: np.random.Generator, layout: str) -> None:
    weights = ob.linear_classifier(tmp_path / "m.onnx", height=5, width=6, dtype="uint8", layout=layout)
    model = OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(value_range=(0, 255)))
    assert model.spec.dtype == "uint8" and model.spec.layout == layout
    pixels = random_pixels(rng, 3, 5, 6)
    pixels[0, 0, 0] = (0.0, 254.6, 255.0)  # rounding and the top of the range
    expected_input = reference_input(pixels, layout=layout, value_max=255.0, dtype="uint8")
    model_input = to_model_input(pixels, model.spec)
    assert model_input.dtype == np.uint8
    np.testing.assert_array_equal(model_input, expected_input)
    close(model.predict(pixels), weights.logits(expected_input), atol=1e-3)


def test_uint8_model_refuses_mean_std(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "m.onnx", dtype="uint8")
    with pytest.raises(SpecError, match="uint8"):
        OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(mean=IMAGENET_MEAN, std=IMAGENET_STD))


def test_grayscale_model_takes_luma(tmp_path: Path, rng: np.random.Generator) -> None:
    weights = ob.linear_classifier(tmp_path / "m.onnx", height=5, width=5, channels=1)
    model = OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(mean=0.5, std=0.2))
    assert model.spec.channels == 1 and model.spec.layout == "NCHW"
    pixels = random_pixels(rng, 3, 5, 5)
    expected_input = reference_input(pixels, gray=True, mean=(0.5,), std=(0.2,))
    close(to_model_input(pixels, model.spec), expected_input, rtol=1e-5, atol=1e-4)
    close(model.predict(pixels), weights.logits(expected_input), atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# Spec inference
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "layout, dtype", [("NCHW", "float32"), ("NHWC", "float32"), ("NCHW", "float16"), ("NHWC", "uint8")]
)
def test_spec_inferred_from_graph(tmp_path: Path, layout: str, dtype: str) -> None:
    ob.linear_classifier(tmp_path / "m.onnx", height=9, width=4, layout=layout, dtype=dtype, input_name="pixel_values")
    model = OnnxModel(tmp_path / "m.onnx")
    assert model.spec.input == "pixel_values"
    assert model.spec.layout == layout
    assert model.spec.size == (9, 4)
    assert model.input_size == (9, 4)
    assert model.spec.dtype == dtype
    assert model.spec.channels == 3
    assert model.output_name == "logits"
    assert model.n_classes == 5
    assert model.fixed_batch is None


def test_explicit_layout_wins_over_inference(tmp_path: Path, rng: np.random.Generator) -> None:
    # An NHWC model of 3 x 5 images has input [N, 3, 5, 3]: a dimension of 3 on both channel axes, and inference
    # takes it for NCHW 5 x 3 images. An explicit layout must win.
    weights = ob.linear_classifier(tmp_path / "hwc.onnx", height=3, width=5, layout="NHWC")
    inferred = OnnxModel(tmp_path / "hwc.onnx")
    assert inferred.spec.layout == "NCHW" and inferred.spec.size == (5, 3)
    model = OnnxModel(tmp_path / "hwc.onnx", spec=InputSpec.create(layout="NHWC"))
    assert model.spec.layout == "NHWC" and model.spec.size == (3, 5)
    pixels = random_pixels(rng, 2, 3, 5)
    close(model.predict(pixels), weights.logits(reference_input(pixels, layout="NHWC")), atol=1e-3)


def test_explicit_size_equal_to_graph_and_explicit_input_name(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "m.onnx", height=6, width=7, input_name="x")
    model = OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(size=(6, 7), input="x", channel_order="BGR"))
    assert model.spec.size == (6, 7) and model.spec.input == "x" and model.spec.channel_order == "BGR"
    with pytest.raises(SpecError, match="no input 'y'"):
        OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(input="y"))


def test_explicit_size_contradicting_fixed_graph_size(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "m.onnx", height=6, width=7)
    with pytest.raises(SpecError, match=r"contradicts the model's fixed input size \[6, 7\]"):
        OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(size=(7, 6)))


def test_dynamic_size_model_needs_a_size(tmp_path: Path, rng: np.random.Generator) -> None:
    weights = ob.dynamic_size_classifier(tmp_path / "d.onnx")
    with pytest.raises(SpecError, match="no fixed size"):
        OnnxModel(tmp_path / "d.onnx")
    model = OnnxModel(tmp_path / "d.onnx", spec=InputSpec.create(size=(10, 12), mean=0.5, std=0.5))
    assert model.input_size == (10, 12) and model.spec.layout == "NCHW"
    for shape in [(10, 12), (21, 25)]:  # at the given size, and resized to it
        pixels = random_pixels(rng, 3, *shape)
        expected_input = reference_input(pixels, size=(10, 12), mean=(0.5,) * 3, std=(0.5,) * 3)
        channel_means = expected_input.astype(np.float64).mean(axis=(2, 3))
        close(model.predict(pixels), weights.logits(channel_means), atol=1e-4)


@pytest.mark.parametrize("shape", [(10,), (7, 5, 5)], ids=["vector", "seven-channels"])
def test_non_image_input_is_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    ob.non_image_classifier(tmp_path / "n.onnx", shape=shape)
    with pytest.raises(SpecError, match="not an image input"):
        OnnxModel(tmp_path / "n.onnx")


def test_choose_output_by_name_and_index(tmp_path: Path, rng: np.random.Generator) -> None:
    first, second = ob.two_output_classifier(tmp_path / "two.onnx", n_first=6, n_second=4)
    pixels = random_pixels(rng, 3, 8, 8)
    expected_input = reference_input(pixels)
    default = OnnxModel(tmp_path / "two.onnx")
    assert default.output_name == "aux_scores" and default.n_classes == 6
    close(default.predict(pixels), first.logits(expected_input), atol=1e-3)
    for output in ("logits", 1, "1"):
        model = OnnxModel(tmp_path / "two.onnx", spec=InputSpec.create(output=output))
        assert model.output_name == "logits" and model.n_classes == 4
        close(model.predict(pixels), second.logits(expected_input), atol=1e-3)
    with pytest.raises(SpecError, match="out of range"):
        OnnxModel(tmp_path / "two.onnx", spec=InputSpec.create(output=2))
    with pytest.raises(SpecError, match="no output 'probs'"):
        OnnxModel(tmp_path / "two.onnx", spec=InputSpec.create(output="probs"))


# ---------------------------------------------------------------------------------------------------------------
# Batching and chunking
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_fixed_batch_one_model_with_batch_size_8(tmp_path: Path, rng: np.random.Generator, dynamic_batch: bool
                                                 ) -> None:
    weights = ob.linear_classifier(tmp_path / "b1.onnx", height=5, width=5, batch=1)
    model = OnnxModel(tmp_path / "b1.onnx", batch_size=8, dynamic_batch=dynamic_batch)
    if dynamic_batch:  # the graph was rewritten to take any batch, after a 2-image check against per-image runs
        assert model.fixed_batch is None and "matches per-sample runs" in model.batch_rewrite
        assert model.session.get_inputs()[0].shape[0] != 1
    else:  # run one image at a time
        assert model.fixed_batch == 1 and model.batch_rewrite is None
    assert model.batch_size == 8
    assert model.forward_passes == 0  # the probe is not counted
    pixels = random_pixels(rng, 11, 5, 5)
    together = model.predict(pixels)
    assert model.forward_passes == 11
    one_by_one = np.concatenate([model.predict(image) for image in pixels])
    assert model.forward_passes == 22
    np.testing.assert_array_equal(together, one_by_one)
    close(together, weights.logits(reference_input(pixels)), atol=1e-3)
    assert model.forward_seconds > 0


def test_fixed_batch_other_than_one_is_refused(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "b4.onnx", batch=4)
    with pytest.raises(ModelError, match="fixed batch of 4"):
        OnnxModel(tmp_path / "b4.onnx")


def test_onnx_predict_in_chunks_equals_single_shot(tmp_path: Path, rng: np.random.Generator) -> None:
    weights = ob.linear_classifier(tmp_path / "m.onnx", height=4, width=4, n_classes=7)
    model = OnnxModel(tmp_path / "m.onnx", batch_size=16)
    pixels = random_pixels(rng, 70, 4, 4)
    outputs = model.predict(pixels)
    assert outputs.shape == (70, 7) and model.forward_passes == 70
    close(outputs, weights.logits(reference_input(pixels)), atol=1e-3)
    single = OnnxModel(tmp_path / "m.onnx", batch_size=70).predict(pixels)
    close(outputs, single, rtol=1e-6, atol=1e-5)


def test_callable_model_never_gets_more_than_batch_size(rng: np.random.Generator) -> None:
    W = rng.standard_normal((3, 4 * 4 * 3)).astype(np.float32) / 20
    received: list[int] = []

    def linear(batch: np.ndarray) -> np.ndarray:
        received.append(len(batch))
        return batch.reshape(len(batch), -1) @ W.T

    model = CallableModel(linear, spec=InputSpec(size=(4, 4)), batch_size=16)
    assert received == [1]  # the probe
    received.clear()
    pixels = random_pixels(rng, 70, 4, 4)
    outputs = model.predict(pixels)
    assert received == [16, 16, 16, 16, 6]
    assert model.forward_passes == 70
    reference = pixels.astype(np.float64).reshape(70, -1) @ W.T.astype(np.float64)
    close(outputs, reference, rtol=1e-5, atol=1e-3)


def test_callable_model_with_preprocess_gets_the_model_input(rng: np.random.Generator) -> None:
    seen = []

    def function(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return batch.reshape(len(batch), -1)[:, :5].astype(np.float32)

    spec = InputSpec.create(size=(4, 5), mean=IMAGENET_MEAN, std=IMAGENET_STD, channel_order="BGR")
    model = CallableModel(function, spec=spec, preprocess=True, batch_size=4)
    seen.clear()
    pixels = random_pixels(rng, 6, 8, 10)  # resized to (4, 5) by the preprocessing
    model.predict(pixels)
    expected = reference_input(pixels, size=(4, 5), mean=IMAGENET_MEAN, std=IMAGENET_STD, order="BGR")
    close(np.concatenate(seen), expected, rtol=1e-5, atol=1e-4)


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "m.onnx")
    with pytest.raises(ParameterError, match="batch_size"):
        OnnxModel(tmp_path / "m.onnx", batch_size=0)


# ---------------------------------------------------------------------------------------------------------------
# Logits and probabilities
# ---------------------------------------------------------------------------------------------------------------

def test_softmax_graph_gives_probabilities(tmp_path: Path, rng: np.random.Generator) -> None:
    weights = ob.linear_classifier(tmp_path / "p.onnx", height=5, width=5, softmax=True, scale=2.0)
    model = OnnxModel(tmp_path / "p.onnx")
    assert model.output_name == "probabilities" and model.output_kind == "probabilities"
    pixels = random_pixels(rng, 4, 5, 5)
    logits = weights.logits(reference_input(pixels))
    outputs = model.predict(pixels)
    close(outputs, reference_softmax(logits), rtol=1e-4, atol=1e-6)
    close(model.convert(outputs, "probability"), outputs, rtol=0, atol=0)
    # log-probabilities = logits minus the row's log-sum-exp
    log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    close(model.convert(outputs, "logit"), log_probs, rtol=1e-3, atol=1e-3)
    close(model.convert(outputs, "raw"), outputs, rtol=0, atol=0)
    close(model.scores(pixels, "probability"), reference_softmax(logits), rtol=1e-4, atol=1e-6)


def test_gemm_graph_gives_logits(tmp_path: Path, rng: np.random.Generator) -> None:
    weights = ob.linear_classifier(tmp_path / "l.onnx", height=5, width=5, scale=2.0)
    model = OnnxModel(tmp_path / "l.onnx")
    assert model.output_kind == "logits"
    pixels = random_pixels(rng, 4, 5, 5)
    logits = weights.logits(reference_input(pixels))
    outputs = model.predict(pixels)
    close(outputs, logits, atol=1e-3)
    close(model.convert(outputs, "probability"), reference_softmax(logits), rtol=1e-3, atol=1e-5)
    close(model.convert(outputs, "logit"), outputs, rtol=0, atol=0)
    close(model.scores(pixels, "probability").sum(axis=1), np.ones(4), atol=1e-5)
    with pytest.raises(ParameterError, match="score kind"):
        model.convert(outputs, "probs")


def test_output_kind_override(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "l.onnx")
    assert OnnxModel(tmp_path / "l.onnx", output_kind="probabilities").output_kind == "probabilities"


def test_callable_output_kind_detection(rng: np.random.Generator) -> None:
    W = rng.standard_normal((4, 3)).astype(np.float32)

    def logits(batch: np.ndarray) -> np.ndarray:
        return (batch.mean(axis=(1, 2)) / 50.0) @ W.T

    def probabilities(batch: np.ndarray) -> np.ndarray:
        return reference_softmax(logits(batch)).astype(np.float32)

    spec = InputSpec(size=(6, 6))
    as_logits = CallableModel(logits, spec=spec)
    as_probabilities = CallableModel(probabilities, spec=spec)
    assert as_logits.output_kind == "logits"
    assert as_probabilities.output_kind == "probabilities"
    assert as_logits.n_classes == as_probabilities.n_classes == 4
    pixels = random_pixels(rng, 5, 6, 6)
    expected_logits = (pixels.astype(np.float64).mean(axis=(1, 2)) / 50.0) @ W.T.astype(np.float64)
    close(as_logits.scores(pixels, "probability"), reference_softmax(expected_logits), rtol=1e-4, atol=1e-6)
    close(as_probabilities.scores(pixels, "probability"), reference_softmax(expected_logits), rtol=1e-4, atol=1e-6)
    # log of the probabilities = logits up to a per-row constant
    recovered = as_probabilities.scores(pixels, "logit")
    close(recovered - recovered[:, :1], expected_logits - expected_logits[:, :1], rtol=1e-3, atol=1e-4)


def test_nan_outputs_raise_score_error(tmp_path: Path) -> None:
    ob.nan_classifier(tmp_path / "nan.onnx")
    with pytest.raises(ScoreError, match="NaN"):
        OnnxModel(tmp_path / "nan.onnx")
    model = CallableModel(lambda b: np.where(b[:, 0, 0, :1] > 200, np.nan, 1.0) * np.ones((1, 3)),
                          spec=InputSpec(size=(2, 2)))
    pixels = np.zeros((3, 2, 2, 3), np.float32)
    pixels[1] = 255
    with pytest.raises(ScoreError, match="1 of 3 images"):
        model.predict(pixels)


# ---------------------------------------------------------------------------------------------------------------
# Spec files and labels
# ---------------------------------------------------------------------------------------------------------------

def test_spec_from_json_with_all_keys(tmp_path: Path, rng: np.random.Generator, monkeypatch) -> None:
    first, second = ob.two_output_classifier(tmp_path / "two.onnx", height=8, width=8, n_second=4)
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "labels.txt").write_text("cat\ndog\n\nfox\nowl\n")
    spec_data = {
        "input": "image", "output": "logits", "size": [8, 8], "layout": "NCHW", "channel_order": "BGR",
        "value_range": [0, 255], "mean": [103.9, 116.8, 123.7], "std": [57.4, 57.1, 58.4], "dtype": "float32",
        "labels": "labels.txt",
    }
    (spec_dir / "spec.json").write_text(json.dumps(spec_data))
    monkeypatch.chdir(tmp_path)  # the labels path is resolved beside the spec, not in the working directory
    spec = InputSpec.from_json(spec_dir / "spec.json")
    assert spec.input == "image" and spec.output == "logits" and spec.size == (8, 8) and spec.layout == "NCHW"
    assert spec.channel_order == "BGR" and spec.value_range == (0.0, 255.0) and spec.dtype == "float32"
    assert spec.mean == (103.9, 116.8, 123.7) and spec.std == (57.4, 57.1, 58.4)
    assert Path(spec.labels) == spec_dir / "labels.txt"
    assert set(spec_data) <= spec.explicit
    model = OnnxModel(tmp_path / "two.onnx", spec=spec)
    assert model.labels == ["cat", "dog", "fox", "owl"]
    assert [model.class_name(i) for i in range(4)] == ["cat", "dog", "fox", "owl"]
    assert model.class_name(9) == "9"
    pixels = random_pixels(rng, 3, 8, 8)
    expected_input = reference_input(pixels, value_max=255.0, mean=spec_data["mean"], std=spec_data["std"], order="BGR")
    close(model.predict(pixels), second.logits(expected_input), atol=1e-3)


def test_spec_file_errors(tmp_path: Path) -> None:
    (tmp_path / "unknown.json").write_text(json.dumps({"size": [8, 8], "normalize": True}))
    with pytest.raises(SpecError, match="unknown spec keys"):
        InputSpec.from_json(tmp_path / "unknown.json")
    (tmp_path / "broken.json").write_text('{"size": [8, 8],')
    with pytest.raises(SpecError, match="cannot read spec file"):
        InputSpec.from_json(tmp_path / "broken.json")
    with pytest.raises(SpecError, match="not found"):
        InputSpec.from_json(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SpecError, match="JSON object"):
        InputSpec.from_json(tmp_path / "list.json")
    for bad in ({"layout": "CHW"}, {"value_range": [0, 2]}, {"std": [1, 0, 1]}, {"mean": [1, 2]}, {"size": [0, 4]},
                {"dtype": "int64"}, {"channel_order": "RGBA"}):
        with pytest.raises(SpecError):
            InputSpec.create(**bad)


def test_labels_count_mismatch(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "m.onnx", n_classes=5)
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    with pytest.raises(SpecError, match="3 names but the model has 5 outputs"):
        OnnxModel(tmp_path / "m.onnx", labels=tmp_path / "labels.txt")
    with pytest.raises(SpecError, match="3 names but the model has 5 outputs"):
        OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(labels=str(tmp_path / "labels.txt")))
    with pytest.raises(SpecError, match="cannot read labels file"):
        OnnxModel(tmp_path / "m.onnx", labels=tmp_path / "missing.txt")
    model = OnnxModel(tmp_path / "m.onnx", labels=["a", "b", "c", "d", "e"])
    assert model.class_name(4) == "e"


# ---------------------------------------------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------------------------------------------

def test_bad_model_files_raise_model_error(tmp_path: Path, rng: np.random.Generator) -> None:
    with pytest.raises(ModelError, match="not found"):
        OnnxModel(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="folder"):
        OnnxModel(tmp_path)
    ob.linear_classifier(tmp_path / "m.onnx", height=16, width=16)
    ob.truncated_copy(tmp_path / "m.onnx", tmp_path / "half.onnx")
    (tmp_path / "random.onnx").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "text.onnx").write_text("this is not a model\n" * 20)
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name in ("half.onnx", "random.onnx", "text.onnx", "empty.onnx"):
        with pytest.raises(ModelError):
            OnnxModel(tmp_path / name)


def test_info_describes_the_graph(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "p.onnx", height=6, width=7, n_classes=4, softmax=True, dtype="float16")
    info = OnnxModel(tmp_path / "p.onnx").info()
    assert info["inputs"] == [{"name": "image", "shape": ["N", 3, 6, 7], "dtype": "float16"}]
    assert info["outputs"] == [{"name": "probabilities", "shape": ["N", 4], "dtype": "float32"}]
    assert info["opset"] == {"ai.onnx": 13}
    assert info["ops"] == {"Cast": 1, "Flatten": 1, "Gemm": 1, "Softmax": 1}
    assert info["nodes"] == 4 and info["classes"] == 4 and info["output_kind"] == "probabilities"
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["spec"]["size"] == [6, 7] and info["spec"]["dtype"] == "float16"


# ---------------------------------------------------------------------------------------------------------------
# Providers
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="onnxruntime has no CUDAExecutionProvider (install blackbox-xai[gpu])")
def test_cuda_gives_the_cpu_logits(tmp_path: Path, rng: np.random.Generator) -> None:
    weights = ob.linear_classifier(tmp_path / "m.onnx", height=16, width=16, n_classes=10)
    cpu = OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(mean=IMAGENET_MEAN, std=IMAGENET_STD))
    gpu = OnnxModel(tmp_path / "m.onnx", spec=InputSpec.create(mean=IMAGENET_MEAN, std=IMAGENET_STD),
                    providers="cuda")
    assert gpu.providers[0] == "CUDAExecutionProvider"
    pixels = random_pixels(rng, 40, 16, 16)
    expected = weights.logits(reference_input(pixels, mean=IMAGENET_MEAN, std=IMAGENET_STD))
    close(gpu.predict(pixels), cpu.predict(pixels), rtol=1e-3, atol=1e-3)
    close(gpu.predict(pixels), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="onnxruntime has no CUDAExecutionProvider (install blackbox-xai[gpu])")
def test_cuda_backward_graph_gives_the_cpu_gradient(tmp_path: Path, rng: np.random.Generator,
                                                    providers: object = "cuda") -> None:
    """The backward graph (built in ONNX, run by the CUDA provider) gives the CPU provider's logits and input
    gradients on a small CNN to float32 precision (TF32 off: with it, errors reach 1e-3 of the largest value),
    and the gradient session really runs on CUDA. ``providers`` overrides the default to check that very claim."""
    ob.small_cnn(tmp_path / "cnn.onnx", size=32, channels=(32, 64), hidden=64)
    spec = InputSpec.create(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    cpu = OnnxModel(tmp_path / "cnn.onnx", spec=spec)
    gpu = OnnxModel(tmp_path / "cnn.onnx", spec=spec, providers=providers)
    pixels = random_pixels(rng, 6, 32, 32)
    seeds = rng.normal(size=(6, 5)).astype(np.float32)
    cpu_logits, cpu_gradients = cpu.gradient(pixels, seeds)
    gpu_logits, gpu_gradients = gpu.gradient(pixels, seeds)
    gradient_sessions = [entry.session for entry in gpu.__dict__["_gradient_models"].values()]
    assert gradient_sessions and all(session.get_providers()[0] == "CUDAExecutionProvider"
                                     for session in gradient_sessions)
    for gpu_values, cpu_values in ((gpu_logits, cpu_logits), (gpu_gradients, cpu_gradients)):
        scale = float(np.abs(cpu_values).max())
        close(gpu_values / scale, cpu_values / scale, rtol=0, atol=1e-5)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message shown when the CUDA provider is missing")
def test_cuda_without_gpu_build_raises_model_error(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=r"blackbox-xai\[gpu\]"):
        OnnxModel(tmp_path / "m.onnx", providers="cuda")


def test_unknown_providers(tmp_path: Path) -> None:
    ob.linear_classifier(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="unknown provider"):
        OnnxModel(tmp_path / "m.onnx", providers="tpu")
    with pytest.raises(ModelError, match="not available"):
        OnnxModel(tmp_path / "m.onnx", providers=["NoSuchExecutionProvider"])
    model = OnnxModel(tmp_path / "m.onnx", providers=["CPUExecutionProvider"])
    assert model.providers == ["CPUExecutionProvider"]
    with pytest.raises(ModelError, match="NoSuchExecutionProvider"):
        OnnxModel(tmp_path / "m.onnx", providers=[("NoSuchExecutionProvider", {"use_tf32": "0"})])


def test_provider_given_with_options(tmp_path: Path, rng: np.random.Generator) -> None:
    """A (name, options) pair is accepted like a name (the form that turns TF32 back on for CUDA)."""
    weights = ob.linear_classifier(tmp_path / "m.onnx")
    model = OnnxModel(tmp_path / "m.onnx", providers=[("CPUExecutionProvider", {})])
    assert model.providers == ["CPUExecutionProvider"]
    pixels = random_pixels(rng, 3, 8, 8)
    close(model.predict(pixels), weights.logits(reference_input(pixels)))


# ---------------------------------------------------------------------------------------------------------------
# Image loading
# ---------------------------------------------------------------------------------------------------------------

def test_load_grayscale_png(tmp_path: Path, rng: np.random.Generator) -> None:
    gray = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    assert cv2.imwrite(str(tmp_path / "g.png"), gray)
    pixels = load_image(tmp_path / "g.png")
    assert pixels.dtype == np.float32 and pixels.shape == (9, 11, 3)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], gray.astype(np.float32))


def test_load_rgba_png_drops_alpha_and_keeps_rgb_order(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (7, 5, 1), dtype=np.uint8)
    bgra = np.concatenate([rgb[..., ::-1], alpha], axis=2)  # cv2 writes BGRA
    assert cv2.imwrite(str(tmp_path / "a.png"), bgra)
    pixels = load_image(str(tmp_path / "a.png"))
    assert pixels.dtype == np.float32 and pixels.shape == (7, 5, 3)
    np.testing.assert_array_equal(pixels, rgb.astype(np.float32))


def test_load_16bit_png(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896], [65535, 65535, 0]], dtype=np.uint16)
    deep = np.stack([values, np.zeros_like(values), values[::-1, ::-1]], axis=2)  # RGB
    assert cv2.imwrite(str(tmp_path / "d.png"), deep[..., ::-1])
    pixels = load_image(tmp_path / "d.png")
    assert pixels.dtype == np.float32 and pixels.shape == (2, 3, 3)
    expected = deep.astype(np.float64) * 255.0 / 65535.0
    close(pixels, expected, rtol=0, atol=1e-4)
    assert pixels[1, 0, 0] == 255.0 and pixels[0, 1, 0] == 1.0 and pixels[0, 2, 0] == 128.0


def test_load_pure_red_png_and_jpeg(tmp_path: Path) -> None:
    red_bgr = np.zeros((16, 16, 3), np.uint8)
    red_bgr[..., 2] = 255  # cv2 writes BGR: red is the last channel
    assert cv2.imwrite(str(tmp_path / "red.png"), red_bgr)
    assert cv2.imwrite(str(tmp_path / "red.jpg"), red_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    png = load_image(tmp_path / "red.png")
    assert np.all(png[..., 0] == 255) and np.all(png[..., 1:] == 0)
    jpeg = load_image(tmp_path / "red.jpg")
    assert jpeg.dtype == np.float32 and jpeg.shape == (16, 16, 3)
    assert np.all(jpeg[..., 0] >= 250) and np.all(jpeg[..., 1:] <= 5)


def test_load_arrays() -> None:
    unit = np.array([[[0.0, 0.5, 1.0]]], np.float32)
    close(load_image(unit), [[[0.0, 127.5, 255.0]]], rtol=0, atol=1e-5)
    close(load_image(np.array([[[10, 20, 30]]], np.uint8)), [[[10, 20, 30]]], rtol=0, atol=0)
    close(load_image(np.array([[65535, 0]], np.uint16)), [[[255] * 3, [0] * 3]], rtol=0, atol=1e-4)
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.array([[[np.nan, 0, 0]]], np.float32))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def test_undecodable_and_missing_images(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("definitely not a PNG\n")
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(tmp_path / "fake.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
