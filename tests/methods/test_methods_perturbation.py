"""Occlusion and RISE against closed forms and known evidence, on real CallableModel paths."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import blackbox_xai as bx
from blackbox_xai.errors import ConstantMapWarning, ParameterError, TargetError
from blackbox_xai.methods import RISE, Occlusion
from blackbox_xai.methods.fill import fill_image


def linear_model(weights: np.ndarray, bias: np.ndarray | None = None) -> bx.CallableModel:
    """A black box linear in the pixels: score_k = sum(weights[k] * pixels) + bias_k (raw scores)."""
    n_classes, height, width, _ = weights.shape
    bias = np.zeros(n_classes, np.float32) if bias is None else bias

    def scores(pixels: np.ndarray) -> np.ndarray:
        return np.einsum("nhwc,khwc->nk", pixels.astype(np.float64), weights).astype(np.float32) + bias

    return bx.CallableModel(scores, spec=bx.InputSpec(size=(height, width)), output_kind="logits")


def occlusion_closed_form(weights: np.ndarray, pixels: np.ndarray, fill: np.ndarray, window: tuple[int, int],
                          stride: tuple[int, int]) -> np.ndarray:
    """For a linear score, occluding window W drops the score by sum_{q in W} w_q (x_q - fill_q). Each pixel's
    saliency is the mean drop over the windows covering it; window sums come from an integral image."""
    height, width = pixels.shape[:2]
    contribution = (weights * (pixels - fill)).sum(axis=2).astype(np.float64)
    integral = np.pad(contribution.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def starts(length: int, size: int, step: int) -> list[int]:
        values = list(range(0, length - size + 1, step))
        return values if values[-1] == length - size else values + [length - size]

    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for y in starts(height, window[0], stride[0]):
        for x in starts(width, window[1], stride[1]):
            y2, x2 = y + window[0], x + window[1]
            drop = integral[y2, x2] - integral[y, x2] - integral[y2, x] + integral[y, x]
            total[y:y2, x:x2] += drop
            count[y:y2, x:x2] += 1
    return total / count


@pytest.fixture
def photo() -> np.ndarray:
    from skimage import data

    return np.asarray(data.chelsea()[:60, :70], dtype=np.float32)


@pytest.mark.parametrize("fill", ["grey", "black", "mean", "blur", "zero"])
@pytest.mark.parametrize("window,stride", [((8, 8), (4, 4)), ((11, 7), (6, 5))])
def test_occlusion_equals_closed_form_on_linear_model(photo, fill, window, stride):
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(1, *photo.shape)).astype(np.float64)
    model = linear_model(weights)
    explanation = Occlusion(window=window, stride=stride, fill=fill, score="raw").explain(model, photo, target=0)
    expected = occlusion_closed_form(weights[0], photo.astype(np.float64), fill_image(photo, fill), window, stride)
    np.testing.assert_allclose(explanation.saliency, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_occlusion_contrastive_and_list_targets_are_linear_combinations(photo):
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(3, *photo.shape))
    model = linear_model(weights)
    method = Occlusion(window=10, stride=5, score="raw")
    maps = [method.explain(model, photo, target=k).saliency for k in range(3)]
    contrast = method.explain(model, photo, target=(0, 2))
    several = method.explain(model, photo, target=[0, 1])
    np.testing.assert_allclose(contrast.saliency, maps[0] - maps[2], rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(several.saliency, maps[0] + maps[1], rtol=1e-4, atol=1e-2)
    assert contrast.target == {"contrast": [0, 2]} and several.target == [0, 1]


def region_mean_model(region: np.ndarray) -> bx.CallableModel:
    """Score = mean brightness (0-1) of a known region: the evidence is exactly that region."""

    def scores(pixels: np.ndarray) -> np.ndarray:
        return (pixels.mean(axis=3)[:, region].mean(axis=1) / 255.0)[:, None]

    return bx.CallableModel(scores, spec=bx.InputSpec(size=region.shape))


def test_rise_recovers_the_region_a_model_looks_at():
    region = np.zeros((64, 64), bool)
    region[8:28, 30:58] = True
    model = region_mean_model(region)
    image = np.full((64, 64, 3), 200.0, np.float32)
    saliency = RISE(n_masks=2000, cells=8, estimator="paper", seed=0).explain(model, image, target=0).saliency
    inside, outside = saliency[region].mean(), saliency[~region].mean()
    assert inside > outside + 3 * saliency[~region].std()
    top = saliency >= np.quantile(saliency, 1 - region.mean())
    iou = (top & region).sum() / (top | region).sum()
    assert iou > 0.7, iou
    # Known scale: away from the region a pixel's mask is independent of the score, so the map there is
    # E[score] * E[M_p] / p_keep = (200 / 255) * p_keep.
    np.testing.assert_allclose(outside, 200 / 255 * 0.5, rtol=0.03)


def test_rise_with_all_cells_kept_is_the_clean_score_everywhere(photo):
    rng = np.random.default_rng(3)
    model = linear_model(rng.normal(size=(2, *photo.shape)) * 1e-3)
    explanation = RISE(n_masks=50, p_keep=1.0, score="probability", estimator="paper").explain(model, photo, target=1)
    clean = model.convert(model.predict(photo[None]), "probability")[0, 1]
    np.testing.assert_allclose(explanation.saliency, clean, rtol=1e-5)


def test_rise_same_seed_same_map_other_seed_other_map(photo):
    model = linear_model(np.random.default_rng(4).normal(size=(2, *photo.shape)) * 1e-3)
    first = RISE(n_masks=100, seed=7).explain(model, photo, target=0).saliency
    again = RISE(n_masks=100, seed=7).explain(model, photo, target=0).saliency
    other = RISE(n_masks=100, seed=8).explain(model, photo, target=0).saliency
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_rise_streams_masks_in_batches_of_the_model_batch_size(photo):
    seen: list[int] = []

    def scores(pixels: np.ndarray) -> np.ndarray:
        seen.append(len(pixels))
        return pixels.mean(axis=(1, 2, 3))[:, None]

    model = bx.CallableModel(scores, spec=bx.InputSpec(size=photo.shape[:2]), batch_size=24)
    explanation = RISE(n_masks=100, seed=0).explain(model, photo, target=0)
    assert max(seen) <= 24
    assert explanation.timing["forward_passes"] == 101  # 100 masks + the clean image
    assert explanation.timing["batch_size"] == 24


def test_saliency_comes_back_at_the_original_resolution():
    region = np.zeros((32, 32), bool)
    region[:16, :16] = True
    model = region_mean_model(region)
    image = np.full((96, 64, 3), 180.0, np.float32)
    explanation = Occlusion(window=8, stride=8, score="raw").explain(model, image, target=0)
    assert explanation.saliency.shape == (96, 64)
    # The model's evidence (top-left quarter at 32x32) maps to the top-left quarter of the original image.
    assert explanation.saliency[:48, :32].mean() > 10 * abs(explanation.saliency[48:, 32:].mean())


def test_explanation_save_and_load_round_trip(tmp_path, photo):
    model = linear_model(np.random.default_rng(5).normal(size=(2, *photo.shape)) * 1e-3)
    explanation = bx.explain(model, photo, method="rise", n_masks=64, seed=11)
    explanation.extras["segments"] = np.arange(12).reshape(3, 4)
    written = explanation.save(tmp_path / "out" / "cat")
    assert sorted(p.name for p in written) == ["cat.json", "cat.npz", "cat.png"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
    loaded = bx.Explanation.load(tmp_path / "out" / "cat")
    np.testing.assert_array_equal(loaded.saliency, explanation.saliency)
    np.testing.assert_array_equal(loaded.extras["segments"], explanation.extras["segments"])
    np.testing.assert_allclose(loaded.scores, explanation.scores)
    assert loaded.params == {"n_masks": 64, "cells": 7, "p_keep": 0.5, "fill": "zero", "score": "probability",
                             "estimator": "centred", "sampling": "sobol", "antithetic": True, "tolerance": None,
                             "seed": 11}
    assert loaded.timing["forward_passes"] == 65
    assert loaded.method == "rise" and loaded.target == explanation.target


def test_bad_parameters_and_targets_are_refused(photo):
    model = linear_model(np.zeros((2, *photo.shape)))
    with pytest.raises(ParameterError):
        RISE(p_keep=0)
    with pytest.raises(ParameterError):
        Occlusion(window=0)
    with pytest.raises(ParameterError):
        bx.explain(model, photo, method="nonexistent")
    with pytest.raises(ParameterError):
        bx.explain(model, photo, method="rise", n_mask=10)
    with pytest.raises(TargetError):
        bx.explain(model, photo, method="occlusion", target=2)
    with pytest.raises(TargetError):
        bx.explain(model, photo, method="occlusion", target=(1, 1))


def test_a_constant_map_warns_and_says_why(rng: np.random.Generator) -> None:
    """A saturated model (class 0 ahead by 100 logits: its probability is exactly 1.0 in float32) gives occlusion
    nothing to measure with probabilities: the map is all zeros, and explain says so and suggests logits. On the
    logits the same model gives a real map and no warning."""
    weights = rng.normal(0, 0.01, size=(3, 16, 16, 3)).astype(np.float32)
    model = linear_model(weights, bias=np.array([100.0, 0.0, 0.0], np.float32))
    image = rng.uniform(0, 255, size=(16, 16, 3)).astype(np.uint8)
    with pytest.warns(ConstantMapWarning, match=r"constant \(0 everywhere\).*score='logit'"):
        flat = Occlusion(window=4, stride=4).explain(model, image, target=0)
    assert np.ptp(flat.saliency) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = Occlusion(window=4, stride=4, score="logit").explain(model, image, target=0)
    assert np.ptp(logits.saliency) > 0


def test_occlusion_refuses_a_stride_that_leaves_pixels_unoccluded():
    """A stride larger than the window would leave pixels between windows that no window ever covers (their
    saliency would be 0/0); the refusal names both numbers. Equal sizes tile the image exactly."""
    with pytest.raises(ParameterError, match="stride.*at most the window \\(8 pixels"):
        Occlusion(window=8)  # default stride 16
    with pytest.raises(ParameterError, match="along x"):
        Occlusion(window=(8, 4), stride=(8, 6))
    tiles = Occlusion(window=8, stride=8).positions(24, 16)
    assert tiles == [(y, x) for y in (0, 8, 16) for x in (0, 8)]


def test_explain_records_where_the_explanation_came_from(tmp_path):
    """The library (not only the CLI) records the image file, its sha256, the model file's sha256 and the spec."""
    import hashlib

    import cv2

    from blackbox_xai import groundtruth

    model_path = Path(__file__).resolve().parents[2] / "models" / "shapes_clean.onnx"
    model = bx.load_model(model_path, spec=model_path.with_suffix(".spec.json"))
    image = groundtruth.make_images(1, seed=3)[0][0]
    path = tmp_path / "shape.png"
    cv2.imwrite(str(path), np.asarray(image, np.uint8)[..., ::-1])
    explanation = bx.explain(model, path, method="centre")
    assert explanation.source == str(path)
    assert explanation.image_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert explanation.model_sha256 == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert explanation.spec == json.loads(json.dumps(model.spec.to_dict()))
    from_array = bx.explain(model, np.asarray(image, np.uint8), method="centre")
    assert from_array.image_sha256 == hashlib.sha256(np.ascontiguousarray(image, np.uint8).tobytes()).hexdigest()


def test_a_long_run_announces_its_passes_and_time(caplog):
    """Before a run estimated (from the clean image's own pass) to take over ANNOUNCE_SECONDS, the method logs the
    passes it plans: occlusion's are its windows, LIME's its samples minus the clean one."""
    import logging
    import time

    from blackbox_xai.methods import LIME

    assert Occlusion(window=8, stride=8).planned_passes((24, 16)) == 6
    assert LIME(n_samples=300).planned_passes((24, 16)) == 299

    def slow(batch):
        time.sleep(0.01 * len(batch))
        return batch.reshape(len(batch), -1)[:, :3].astype(np.float64)

    model = bx.CallableModel(slow, spec=bx.InputSpec(size=(40, 40)), batch_size=64)
    with caplog.at_level(logging.INFO, logger="blackbox_xai.plan"):
        Occlusion(window=2, stride=2).explain(model, np.full((40, 40, 3), 100.0), target=0)  # 400 windows, ~4 s
    assert not caplog.records  # under ANNOUNCE_SECONDS: nothing
    from blackbox_xai.methods import base

    original = base.ANNOUNCE_SECONDS
    base.ANNOUNCE_SECONDS = 1.0
    try:
        with caplog.at_level(logging.INFO, logger="blackbox_xai.plan"):
            Occlusion(window=2, stride=2).explain(model, np.full((40, 40, 3), 100.0), target=0)
    finally:
        base.ANNOUNCE_SECONDS = original
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["occlusion"]
    assert "400 passes planned, up to about" in caplog.records[0].getMessage()
