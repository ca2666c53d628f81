"""Tests of LIME (blackbox_xai.methods.lime): known linear ground truth, an independent weighted-Ridge reference,
determinism, perturbation content, streaming, parameter checks, and the zoo model on skimage's chelsea.

``python tests/methods/test_lime.py --bench`` measures LIME's wall time against raw onnxruntime time (not a test).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_distances

from blackbox_xai.errors import ParameterError
from blackbox_xai.methods.lime import LIME
from blackbox_xai.model import CallableModel, InputSpec

HEIGHT, WIDTH, ROWS, COLUMNS = 48, 64, 4, 4  # a 4x4 grid of 12x16 cells


def _noise_image(seed: int = 7) -> np.ndarray:
    """Random uint8 pixels: no cell equals its own mean colour, so a hidden cell is always detectably hidden."""
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _present(batch: np.ndarray, original: np.ndarray) -> np.ndarray:
    """(n, 16) 1.0 where a grid cell of ``batch`` is exactly the original, written from the grid geometry alone."""
    equal = (batch == original[None].astype(np.float32)).all(axis=-1)
    cells = equal.reshape(len(batch), ROWS, HEIGHT // ROWS, COLUMNS, WIDTH // COLUMNS).all(axis=(2, 4))
    return cells.reshape(len(batch), ROWS * COLUMNS).astype(np.float64)


class SuperpixelModel(CallableModel):
    """A black box whose outputs are a known function of which grid cells are present; it records every
    (presence, outputs) pair it computes so that a test can refit the surrogate independently."""

    def __init__(self, original: np.ndarray, function, batch_size: int = 64) -> None:
        self.original = original
        self.rows: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []

        def black_box(batch: np.ndarray) -> np.ndarray:
            present = _present(batch, original)
            outputs = function(present)
            self.rows.append(present)
            self.outputs.append(outputs)
            return outputs

        super().__init__(black_box, spec=InputSpec(size=(HEIGHT, WIDTH)), batch_size=batch_size,
                         output_kind="logits")
        self.rows.clear()  # forget the probe
        self.outputs.clear()


def _weighted_ridge(x: np.ndarray, y: np.ndarray, weights: np.ndarray, alpha: float) -> tuple[np.ndarray, float, float]:
    """argmin_b,beta sum_i w_i (y_i - b - x_i beta)^2 + alpha |beta|^2 in closed form; weighted R^2."""
    total = weights.sum()
    x_mean, y_mean = weights @ x / total, weights @ y / total
    xc, yc = x - x_mean, y - y_mean
    beta = np.linalg.solve(xc.T @ (weights[:, None] * xc) + alpha * np.eye(x.shape[1]), xc.T @ (weights * yc))
    intercept = y_mean - x_mean @ beta
    residual = y - intercept - x @ beta
    r2 = 1.0 - (weights @ residual ** 2) / (weights @ (y - y_mean) ** 2)
    return beta, float(intercept), float(r2)


# ---------------------------------------------------------------------------------------------------------------
# 1. Known ground truth: a score linear in superpixel presence
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0, (0, 1)])
def test_linear_score_recovers_the_weights(target) -> None:
    rng = np.random.default_rng(3)
    w0, w1 = rng.normal(0.0, 1.0, 16), rng.normal(0.0, 1.0, 16)
    expected = w0 if target == 0 else w0 - w1
    image = _noise_image()
    model = SuperpixelModel(image, lambda z: np.stack([2.0 + z @ w0, -1.0 + z @ w1, np.zeros(len(z))], axis=1))
    explanation = LIME(segmentation="grid", segmentation_params={"cells": (ROWS, COLUMNS)}, score="raw").explain(
        model, image, target)
    extras = explanation.extras
    coef = extras["segment_weights"]
    assert extras["n_segments"] == 16 and coef.shape == (16,)
    assert extras["r2"] > 0.999  # the surrogate is exact up to Ridge shrinkage
    relative_error = np.linalg.norm(coef - expected) / np.linalg.norm(expected)
    assert relative_error < 0.02, relative_error  # alpha=1 against ~500 units of weight: ~1% shrinkage
    assert np.corrcoef(coef, expected)[0, 1] > 0.9999
    assert extras["intercept"] == pytest.approx(2.0 if target == 0 else 3.0, abs=0.1)
    # The grid's cell f covers rows f // 4, columns f % 4: the map is that cell's coefficient.
    cells = (np.arange(HEIGHT)[:, None] // 12) * 4 + np.arange(WIDTH)[None, :] // 16
    np.testing.assert_array_equal(extras["segments"], cells)
    np.testing.assert_array_equal(explanation.saliency, coef[cells])
    # The black box saw the original once and n_samples - 1 = 999 perturbed images.
    assert sum(len(r) for r in model.rows) == 1000 and explanation.timing["forward_passes"] == 1000


def test_nonlinear_score_matches_an_independent_weighted_ridge() -> None:
    """With interactions the fit is not exact, so the kernel weights, the all-off convention and the Ridge all
    matter: refit from the (presence, score) pairs the black box saw, with scikit-learn's cosine distance and
    lime_image's kernel sqrt(exp(-d^2 / 0.25^2)), by a closed-form weighted Ridge."""
    rng = np.random.default_rng(5)
    w = rng.normal(0.0, 1.0, 16)

    def outputs(z: np.ndarray) -> np.ndarray:
        score = 0.5 + z @ w + 3.0 * z[:, 0] * z[:, 1] - 2.0 * z[:, 2] * z[:, 3] * z[:, 4] + np.sin(3.0 * z.sum(1))
        return np.stack([score, np.zeros(len(z))], axis=1)

    image = _noise_image(11)
    model = SuperpixelModel(image, outputs)
    explanation = LIME(n_samples=400, segmentation="grid", segmentation_params={"cells": 4}, score="raw",
                       seed=4).explain(model, image, 0)
    x, y = np.concatenate(model.rows), np.concatenate(model.outputs)[:, 0]
    assert len(x) == 400 and x[0].all()  # the clean image first, then the samples
    distances = cosine_distances(x, np.ones((1, 16))).ravel()
    weights = np.sqrt(np.exp(-distances ** 2 / 0.25 ** 2))
    beta, intercept, r2 = _weighted_ridge(x, y, weights, alpha=1.0)
    extras = explanation.extras
    np.testing.assert_allclose(extras["segment_weights"], beta, rtol=1e-5, atol=1e-5)
    assert extras["intercept"] == pytest.approx(intercept, abs=1e-5)
    assert extras["r2"] == pytest.approx(r2, abs=1e-7)
    assert 0.3 < r2 < 0.99  # genuinely not linear
    assert extras["local_prediction"] == pytest.approx(intercept + beta.sum(), abs=1e-5)
    assert extras["clean_score"] == pytest.approx(float(outputs(np.ones((1, 16)))[0, 0]), abs=1e-5)
    # Samples switch each superpixel on with probability 1/2 (lime_image), not a uniform count of features.
    assert abs(x[1:].mean() - 0.5) < 0.02


# ---------------------------------------------------------------------------------------------------------------
# 2. Determinism, segmenters, perturbation content
# ---------------------------------------------------------------------------------------------------------------


def _smooth_image() -> np.ndarray:
    from blackbox_xai import zoo

    return cv2.resize(zoo.sample_image("chelsea"), (96, 64), interpolation=cv2.INTER_AREA)


def _pixel_linear_model(batch_size: int = 64) -> CallableModel:
    weights = np.random.default_rng(2).normal(0.0, 1.0, (64 * 96 * 3, 3)).astype(np.float32) / 1000.0
    return CallableModel(lambda b: b.reshape(len(b), -1) @ weights, spec=InputSpec(size=(64, 96)),
                         batch_size=batch_size, output_kind="logits")


def test_same_seed_same_map_other_seed_other_map() -> None:
    image, model = _smooth_image(), _pixel_linear_model()
    first = LIME(n_samples=120, seed=0).explain(model, image, 1)
    again = LIME(n_samples=120, seed=0).explain(model, image, 1)
    other = LIME(n_samples=120, seed=1).explain(model, image, 1)
    np.testing.assert_array_equal(first.saliency, again.saliency)
    np.testing.assert_array_equal(first.extras["segments"], again.extras["segments"])
    assert first.extras["segments"].dtype == np.int32
    assert not np.allclose(first.saliency, other.saliency)
    assert first.params["seed"] == 0 and first.params["segmentation_params"] == {
        "kernel_size": 4, "max_dist": 200, "ratio": 0.2}


@pytest.mark.parametrize("segmentation", ["quickshift", "slic", "felzenszwalb", "grid"])
def test_every_segmentation_gives_a_piecewise_constant_map(segmentation: str) -> None:
    image, model = _smooth_image(), _pixel_linear_model()
    explanation = LIME(n_samples=60, segmentation=segmentation).explain(model, image, 0)
    segments, coef = explanation.extras["segments"], explanation.extras["segment_weights"]
    count = explanation.extras["n_segments"]
    assert segments.shape == (64, 96) and 4 <= count <= 200
    np.testing.assert_array_equal(np.unique(segments), np.arange(count))  # 0..F-1, no gaps
    np.testing.assert_array_equal(explanation.saliency, coef[segments])


@pytest.mark.parametrize("hide", ["mean", "grey", "black", "zero", "blur"])
def test_hidden_superpixels_take_the_fill(hide: str) -> None:
    seen: list[np.ndarray] = []
    image = _smooth_image()
    spec = InputSpec(size=(64, 96), mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    model = CallableModel(lambda b: (seen.append(b.copy()), b.reshape(len(b), -1)[:, :2])[1], spec=spec,
                          output_kind="logits")
    seen.clear()
    explanation = LIME(n_samples=20, segmentation="slic", fill=hide).explain(model, image, 0)
    segments = explanation.extras["segments"]
    pixels = image.astype(np.float32)
    if hide == "mean":
        fill = np.zeros_like(pixels)
        for f in np.unique(segments):
            fill[segments == f] = pixels[segments == f].mean(axis=0)
    elif hide == "blur":
        fill = cv2.GaussianBlur(pixels, (0, 0), sigmaX=0.05 * 64, borderType=cv2.BORDER_REFLECT)
    else:
        fill = np.broadcast_to(np.float32({"grey": 127.5, "black": 0.0}.get(hide, 0.0)), pixels.shape).copy()
        if hide == "zero":
            fill[:] = np.float32([127.5, 102.0, 76.5])  # the spec's mean in pixel units
    hidden_somewhere = 0
    for image_ in np.concatenate(seen[1:]):  # seen[0] is the clean image
        kept = (image_ == pixels).all(axis=-1)
        for f in np.unique(segments):
            region = segments == f
            if kept[region].all():
                continue
            np.testing.assert_allclose(image_[region], fill[region], atol=1e-3)
            hidden_somewhere += 1
    assert hidden_somewhere > 0


# ---------------------------------------------------------------------------------------------------------------
# 3. Bad parameters
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"n_samples": 1}, "n_samples"),
    ({"n_samples": 10.5}, "n_samples"),
    ({"n_samples": "1000"}, "n_samples"),
    ({"segmentation": "watershed"}, "segmentation must be one of"),
    ({"segmentation_params": {"kernel": 3}}, "unknown quickshift parameter"),
    ({"segmentation_params": {"rng": 3}}, "unknown quickshift parameter"),
    ({"segmentation": "slic", "segmentation_params": [("n_segments", 3)]}, "must be a dict"),
    ({"segmentation": "grid", "segmentation_params": {"cells": 0}}, "cells"),
    ({"segmentation": "grid", "segmentation_params": {"cells": (3, 2, 1)}}, "cells"),
    ({"segmentation": "grid", "segmentation_params": {"n_segments": 3}}, "unknown grid parameter"),
    ({"fill": "white"}, "fill must be one of"),
    ({"kernel_width": 0}, "kernel_width"),
    ({"kernel_width": float("nan")}, "kernel_width"),
    ({"alpha": -1}, "alpha"),
    ({"score": "softmax"}, "score must be one of"),
    ({"seed": 1.5}, "seed"),
])
def test_bad_parameters_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        LIME(**kwargs)


def test_segmenter_failure_and_oversized_grid_raise_parameter_errors() -> None:
    image, model = _smooth_image(), _pixel_linear_model()
    with pytest.raises(ParameterError, match="does not fit"):
        LIME(n_samples=4, segmentation="grid", segmentation_params={"cells": 100}).explain(model, image, 0)
    with pytest.raises(ParameterError, match="slic failed"):
        LIME(n_samples=4, segmentation="slic", segmentation_params={"n_segments": "many"}).explain(model, image, 0)


# ---------------------------------------------------------------------------------------------------------------
# 4. Streaming
# ---------------------------------------------------------------------------------------------------------------


class RecordingModel(CallableModel):
    """Records how many images every ``predict`` call receives (what LIME builds at once)."""

    def __init__(self, *args, **kwargs) -> None:
        self.calls: list[int] = []
        super().__init__(*args, **kwargs)
        self.calls.clear()

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        self.calls.append(1 if np.ndim(pixels) == 3 else len(pixels))
        return super().predict(pixels)


def test_perturbed_images_are_streamed_in_batches() -> None:
    weights = np.random.default_rng(0).normal(0.0, 1.0, (64 * 96 * 3, 2)).astype(np.float32) / 1000.0
    model = RecordingModel(lambda b: b.reshape(len(b), -1) @ weights, spec=InputSpec(size=(64, 96)), batch_size=7,
                           output_kind="logits")
    progress: list[tuple[int, int]] = []
    LIME(n_samples=50, segmentation="slic").explain(model, _smooth_image(), 0,
                                                     progress=lambda d, t: progress.append((d, t)))
    assert max(model.calls) <= 7
    assert model.calls == [1] + [7] * 7  # the clean image, then 49 perturbed images in chunks of 7
    assert model.forward_passes == 50
    assert progress[-1] == (50, 50) and [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert len(progress) >= 8


# ---------------------------------------------------------------------------------------------------------------
# 5. The zoo model on chelsea
# ---------------------------------------------------------------------------------------------------------------

# A generous polygon around the cat in chelsea resized to 224x224 (x, y), drawn over the image: the cat's head
# fills the frame except a light blurred background on the right (x > ~175-195) and a strip at the top left. It
# covers 78% of the image, so being "on the cat" is a weak claim by itself; the faithfulness check below is the
# discriminating one.
CAT_POLYGON = np.array([(18, 0), (195, 0), (188, 40), (182, 75), (180, 110), (175, 150), (168, 190), (172, 224),
                        (0, 224), (0, 110), (10, 60)], np.int32)
EGYPTIAN_CAT = 285


@pytest.mark.slow
def test_zoo_chelsea_top_superpixels_are_on_the_cat_and_matter() -> None:
    from blackbox_xai import zoo

    model = zoo.efficientnet_lite0(batch_size=32)
    image = zoo.sample_image("chelsea")
    explanation = LIME().explain(model, image, "top1")
    assert explanation.target == EGYPTIAN_CAT
    extras = explanation.extras
    segments, coef, count = extras["segments"], extras["segment_weights"], extras["n_segments"]
    assert segments.shape == (224, 224) and 20 <= count <= 150  # quickshift as lime_image: 35 here
    cat = np.zeros((224, 224), np.uint8)
    cv2.fillPoly(cat, [CAT_POLYGON], 1)
    cat = cat.astype(bool)
    on_cat = np.array([cat[segments == f].mean() for f in range(count)])
    top = np.argsort(coef)[::-1][:5]
    assert on_cat[top[0]] > 0.95  # the most important superpixel lies on the cat
    assert (on_cat[top] > 0.5).sum() >= 4  # (a random superpixel lies mostly on the cat with probability 0.74)
    assert extras["r2"] > 0.15  # a weak but real local fit (0.29 here; lime's usual order on ImageNet)
    # Faithfulness: hiding the 5 top superpixels (each with its mean colour, computed here) lowers the probability
    # more than hiding 5 random superpixels does in at least 90% of 100 draws (97% here: 0.68 against 0.79 on average).
    pixels = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    means = np.zeros_like(pixels)
    for f in range(count):
        means[segments == f] = pixels[segments == f].mean(axis=0)
    rng = np.random.default_rng(0)
    subsets = [top] + [rng.choice(count, 5, replace=False) for _ in range(100)]
    batch = np.repeat(pixels[None], len(subsets), axis=0)
    for image_, subset in zip(batch, subsets):
        hidden = np.isin(segments, subset)
        image_[hidden] = means[hidden]
    probability = model.scores(batch)[:, EGYPTIAN_CAT]
    clean = extras["clean_score"]
    assert probability[0] < clean - 0.05
    assert np.mean(probability[1:] > probability[0]) >= 0.9


# ---------------------------------------------------------------------------------------------------------------
# Speed against raw onnxruntime (run by hand: python tests/methods/test_lime.py --bench)
# ---------------------------------------------------------------------------------------------------------------


def bench_lime(repeats: int = 3, batch_size: int = 32) -> dict:
    """Wall time of ``LIME(n_samples=1000).explain`` on the zoo model (chelsea, 224) against raw onnxruntime
    time for the same 1000 passes in the same chunks, with scripts/bench.py's helpers (RawRunner, time_method):
    medians of ``repeats`` (raw, method) pairs and one interleaved run. The segmentation is timed apart."""
    import importlib.util
    import statistics
    import time
    from pathlib import Path

    from blackbox_xai.image import load_image, resize_pixels
    from blackbox_xai.methods.lime import resolve_segmentation_params, segment_image

    path = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"
    spec = importlib.util.spec_from_file_location("_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = bench.load_model(batch_size, None)
    image = bench.load_image()
    method = LIME(n_samples=1000)
    chunk_sizes = bench.explain_chunks(method.n_samples - 1, model.batch_size)  # clean + 999 perturbed
    raw = bench.RawRunner(model, image)
    raw.run(sorted(set(chunk_sizes)))
    pixels = resize_pixels(load_image(image), model.input_size)
    params = resolve_segmentation_params("quickshift", None)
    segmentation = []
    for _ in range(3):
        began = time.perf_counter()
        segment_image(pixels, "quickshift", params, 0)
        segmentation.append(time.perf_counter() - began)
    pairs = []
    for _ in range(repeats):
        raw_s = raw.run(chunk_sizes)
        run = bench.time_method(model, method, image)
        assert run["forward_passes"] == sum(chunk_sizes) and run["onnxruntime_calls"] == len(chunk_sizes)
        pairs.append((raw_s, run["wall_s"], run["in_model_s"], run["ort_in_run_s"]))
    inter = bench.time_method(model, method, image, raw)
    seg_s = statistics.median(segmentation)
    raw_s, wall_s = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    return {
        "passes": sum(chunk_sizes), "raw_s": raw_s, "wall_s": wall_s, "segmentation_s": seg_s,
        "ratio": wall_s / raw_s, "ratio_without_segmentation": (wall_s - seg_s) / raw_s,
        "ratio_interleaved": inter["wall_s"] / inter["raw_interleaved_s"],
        "ratio_interleaved_without_segmentation": (inter["wall_s"] - seg_s) / inter["raw_interleaved_s"],
        "in_model_s": statistics.median(p[2] for p in pairs), "ort_in_run_s": statistics.median(p[3] for p in pairs),
        "pairs": pairs,
    }


if __name__ == "__main__" and "--bench" in sys.argv:
    import json

    print(json.dumps(bench_lime(), indent=1))
