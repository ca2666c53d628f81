"""Evaluation metrics against hand-computed values, closed forms on CallableModels, and Quantus (dev only)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

import blackbox_xai as bx
from blackbox_xai.errors import ParameterError
from blackbox_xai.evaluation import (
    METRICS,
    aopc,
    deletion,
    evaluate,
    insertion,
    iou,
    list_metrics,
    noisy_linear_imputation,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    road,
    sensitivity,
    sparseness,
    zero_pixel,
)
from blackbox_xai.evaluation.localisation import default_tolerance
from blackbox_xai.image import resize_map, resize_pixels
from blackbox_xai.methods import RISE, Occlusion
from blackbox_xai.model import to_model_input

trapezoid = getattr(np, "trapezoid", None) or np.trapz

# A 4x4 map and mask small enough to score by hand. The mask is the top-right 2x2 block {9, 8, 7, 2}.
MAP = np.array([[1, 2, 9, 8],
                [0, 3, 7, 2],
                [0, 0, 1, 6],
                [5, 0, 0, 0]], dtype=np.float64)
MASK = np.zeros((4, 4), bool)
MASK[:2, 2:] = True


# --------------------------------------------------------------------------------------------- localisation


def test_localisation_metrics_on_a_hand_scored_4x4_map():
    # Maximum 9 at (0, 2) is on the mask.
    assert pointing_game(MAP, MASK, tolerance=0) == 1.0
    # Mass: 26 of 44 units of relevance lie in the mask (the minimum is already 0).
    assert relevance_mass_accuracy(MAP, MASK) == pytest.approx(26 / 44)
    # The K = 4 largest values are 9, 8, 7 (in the mask) and 6 (outside): 3 of 4.
    assert relevance_rank_accuracy(MAP, MASK) == pytest.approx(3 / 4)
    # Top-4 set {9, 8, 7, 6}: intersection 3, union 5.
    assert iou(MAP, MASK) == pytest.approx(3 / 5)
    # Threshold 0.5 * 9 = 4.5 keeps {9, 8, 7, 6, 5}: intersection 3, union 6.
    assert iou(MAP, MASK, threshold=0.5) == pytest.approx(3 / 6)


def test_localisation_metrics_use_the_min_subtracted_map():
    shifted = MAP - 3.0  # negative values: the raw sum would give (26 - 12) / (44 - 48)
    assert relevance_mass_accuracy(shifted, MASK) == pytest.approx(26 / 44)
    assert relevance_rank_accuracy(shifted, MASK) == pytest.approx(3 / 4)
    assert iou(shifted, MASK, threshold=0.5) == pytest.approx(3 / 6)
    assert relevance_mass_accuracy(np.full((4, 4), 7.0), MASK) == 0.0  # a constant map has no relevance mass


def test_a_constant_map_points_nowhere():
    # Every pixel is a maximum: by the any-of-the-maxima rule it would hit any mask, whatever the tolerance.
    for value in (0.0, 7.0):
        assert pointing_game(np.full((4, 4), value), MASK, tolerance=0) == 0.0
        assert pointing_game(np.full((4, 4), value), MASK) == 0.0
    nearly = np.zeros((4, 4))
    nearly[0, 3] = 1e-9  # one pixel above the rest is a maximum again
    assert pointing_game(nearly, MASK, tolerance=0) == 1.0


def test_pointing_game_tolerance_in_pixels_and_its_default_scaling():
    saliency = np.zeros((4, 4))
    saliency[3, 3] = 1.0  # two rows below the mask pixel (1, 3)
    assert pointing_game(saliency, MASK, tolerance=0) == 0.0
    assert pointing_game(saliency, MASK, tolerance=1.9) == 0.0
    assert pointing_game(saliency, MASK, tolerance=2.0) == 1.0
    saliency[3, 3], saliency[3, 0] = 0.0, 1.0  # distance to (1, 2) is sqrt(4 + 4)
    assert pointing_game(saliency, MASK, tolerance=2.8) == 0.0
    assert pointing_game(saliency, MASK, tolerance=2.9) == 1.0
    assert default_tolerance((224, 224)) == 15.0
    assert default_tolerance((448, 600)) == 30.0
    # Default at 64 x 64: 15 * 64 / 224 = 4.29 pixels.
    big_mask = np.zeros((64, 64), bool)
    big_mask[:10, :10] = True
    near, far = np.zeros((64, 64)), np.zeros((64, 64))
    near[13, 9], far[15, 9] = 1.0, 1.0  # 4 and 6 pixels below the mask
    assert pointing_game(near, big_mask) == 1.0 and pointing_game(far, big_mask) == 0.0


def test_rank_accuracy_shares_ties_fairly():
    saliency = np.zeros((4, 4))
    saliency[0, 0] = 1.0
    mask = np.zeros((4, 4), bool)
    mask[0, :3] = True
    # K = 3: (0, 0) is a sure hit; the 15 tied zeros fill 2 places, 2 of them being in the mask.
    assert relevance_rank_accuracy(saliency, mask) == pytest.approx((1 + 2 * 2 / 15) / 3)
    # The same value whatever the pixel order.
    assert relevance_rank_accuracy(saliency[::-1, ::-1], mask[::-1, ::-1]) == pytest.approx((1 + 4 / 15) / 3)


def test_localisation_parameter_checks():
    with pytest.raises(ParameterError, match="empty"):
        pointing_game(MAP, np.zeros((4, 4), bool))
    with pytest.raises(ParameterError, match="shape"):
        iou(MAP, np.ones((5, 4), bool))
    with pytest.raises(ParameterError, match="threshold"):
        iou(MAP, MASK, threshold=1.5)
    with pytest.raises(ParameterError, match="tolerance"):
        pointing_game(MAP, MASK, tolerance=-1)
    with pytest.raises(ParameterError, match="NaN"):
        relevance_mass_accuracy(np.full((4, 4), np.nan), MASK)
    with pytest.raises(ParameterError, match="2-D"):
        sparseness(np.zeros(5))


# ---------------------------------------------------------------------------------------------- complexity


def test_sparseness_is_the_gini_index_of_absolute_values():
    # Sorted |a| = 1, 2, 3, 4: sum (2i - n - 1) a_i = -3 - 2 + 3 + 12 = 10, over n * sum = 40.
    assert sparseness(np.array([[1.0, -2.0], [3.0, -4.0]])) == pytest.approx(0.25)
    assert sparseness(np.array([[0.0, 0.0], [0.0, 5.0]])) == pytest.approx(3 / 4)
    assert sparseness(np.full((3, 3), 2.0)) == pytest.approx(0.0)
    assert sparseness(np.zeros((3, 3))) == 0.0


# -------------------------------------------------------------------------------------------- faithfulness


def logistic_model(weights: np.ndarray, spec: bx.InputSpec | None = None, batch_size: int = 64,
                   seen: list | None = None, offset: float = 0.0) -> bx.CallableModel:
    """Two classes with logits (w . x + offset, 0): p(class 0) = sigmoid(w . x + offset), linear logit difference."""

    def scores(pixels: np.ndarray) -> np.ndarray:
        if seen is not None:
            seen.append(len(pixels))
        z = np.einsum("nhwc,hwc->n", pixels.astype(np.float64), weights) + offset
        return np.stack([z, np.zeros_like(z)], axis=1).astype(np.float32)

    spec = spec or bx.InputSpec(size=weights.shape[:2])
    return bx.CallableModel(scores, spec=spec, batch_size=batch_size, output_kind="logits")


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def expected_progressive_curve(weights, start, finish, saliency, n_steps):
    """Closed form: after step i the first counts[i] pixels (by decreasing saliency) come from ``finish``; each
    pixel j changes the logit by sum_c w_jc (finish_jc - start_jc)."""
    total = saliency.size
    order = np.argsort(-saliency.ravel(), kind="stable")
    change = (weights * (finish - start)).sum(axis=2).ravel()[order]
    counts = (np.arange(n_steps + 1) * total) // n_steps
    cumulative = np.concatenate([[0.0], np.cumsum(change)])
    logits = (weights * start).sum() + cumulative[counts]
    curve = sigmoid(logits)
    return curve, trapezoid(curve, counts / total)


@pytest.fixture
def linear_case():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(12, 10, 3)) * 4e-4
    pixels = rng.uniform(0, 255, size=(12, 10, 3)).astype(np.float32)
    saliency = rng.normal(size=(12, 10))
    return weights, pixels, saliency


@pytest.mark.parametrize("n_steps", [7, 100, 120])
def test_deletion_curve_equals_the_closed_form_of_a_linear_logit_model(linear_case, n_steps):
    weights, pixels, saliency = linear_case
    model = logistic_model(weights)
    result = deletion(model, pixels, saliency, target=0, n_steps=n_steps)
    finish = np.zeros_like(pixels)  # no mean in the spec: deleted pixels are black
    curve, auc = expected_progressive_curve(weights, pixels, finish, saliency, n_steps)
    np.testing.assert_allclose(result.curve, curve, rtol=1e-5)
    assert result.score == pytest.approx(auc, rel=1e-5)
    assert result.x[0] == 0 and result.x[-1] == 1 and len(result.curve) == n_steps + 1


def test_deletion_removes_to_the_mean_colour_of_a_normalised_spec(linear_case):
    weights, pixels, saliency = linear_case
    spec = bx.InputSpec(size=(12, 10), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    model = logistic_model(weights, spec=spec)
    result = deletion(model, pixels, saliency, target=0, n_steps=20)
    finish = np.broadcast_to(np.array([0.485, 0.456, 0.406]) * 255, pixels.shape)
    curve, auc = expected_progressive_curve(weights, pixels, finish, saliency, 20)
    np.testing.assert_allclose(result.curve, curve, rtol=1e-5)
    assert result.score == pytest.approx(auc, rel=1e-5)


@pytest.mark.parametrize("spec", [
    bx.InputSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    bx.InputSpec(mean=(103.9, 116.8, 123.7), value_range=(0, 255), channel_order="BGR"),
    bx.InputSpec(mean=(0.5,), std=(0.5,), channels=1),
])
def test_the_deletion_baseline_is_zero_in_normalised_space(spec):
    spec = spec.replace(layout="NHWC", dtype="float32")
    image = np.broadcast_to(zero_pixel(spec), (1, 2, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(to_model_input(image, spec), 0.0, atol=1e-5)
    assert np.array_equal(zero_pixel(bx.InputSpec()), np.zeros(3))


def test_insertion_curve_equals_the_closed_form_from_the_blurred_image(linear_case):
    weights, pixels, saliency = linear_case
    model = logistic_model(weights)
    result = insertion(model, pixels, saliency, target=0, n_steps=30)
    blurred = cv2.GaussianBlur(pixels, (11, 11), 5, borderType=cv2.BORDER_REFLECT_101)
    curve, auc = expected_progressive_curve(weights, blurred, pixels, saliency, 30)
    np.testing.assert_allclose(result.curve, curve, rtol=1e-5)
    assert result.score == pytest.approx(auc, rel=1e-5)


def test_fraction_of_kept_pixels_gives_a_straight_line_and_auc_one_half():
    # A single raw score = fraction of pixels not removed (any removal order gives 1 - x).
    def kept(pixels: np.ndarray) -> np.ndarray:
        return (pixels > 0).all(axis=3).mean(axis=(1, 2))[:, None]

    model = bx.CallableModel(kept, spec=bx.InputSpec(size=(8, 8)))
    image = np.full((8, 8, 3), 200.0, np.float32)
    result = deletion(model, image, np.random.default_rng(1).random((8, 8)), target=0, n_steps=16)
    np.testing.assert_allclose(result.curve, 1 - result.x, atol=1e-7)
    assert result.score == pytest.approx(0.5)
    rows = deletion(model, image, np.random.default_rng(1).random((8, 8)), target=0, n_steps=None)
    assert len(rows.curve) == 9  # one row of pixels per step, as the reference implementation
    np.testing.assert_allclose(rows.x, np.arange(9) / 8)


def test_curves_are_evaluated_in_chunks_of_the_batch_size(linear_case):
    weights, pixels, saliency = linear_case
    seen: list[int] = []
    model = logistic_model(weights, batch_size=7, seen=seen)
    seen.clear()  # drop the probe call
    deletion(model, pixels, saliency, target=0, n_steps=50)
    assert max(seen) <= 7 and sum(seen) == 1 + 51  # target check + 51 curve images
    seen.clear()
    aopc(model, pixels, saliency, target=0, patch_size=2, n_regions=20)
    assert max(seen) <= 7 and sum(seen) == 1 + 21


def test_aopc_equals_the_closed_form_with_a_black_fill(linear_case):
    weights, pixels, saliency = linear_case
    model = logistic_model(weights)
    result = aopc(model, pixels, saliency, target=0, patch_size=4, n_regions=5, fill="black")
    # 12 x 10 with patches of 4: a 3 x 3 grid whose right column is 2 pixels wide.
    contribution = (weights * pixels).sum(axis=2)
    cells = [(y, x) for y in range(0, 12, 4) for x in range(0, 10, 4)]
    sums = np.array([saliency[y:y + 4, x:x + 4].sum() for y, x in cells])
    order = np.argsort(-sums, kind="stable")[:5]
    logits = contribution.sum() - np.concatenate(
        [[0.0], np.cumsum([contribution[cells[k][0]:cells[k][0] + 4, cells[k][1]:cells[k][1] + 4].sum()
                           for k in order])])
    drops = sigmoid(logits[0]) - sigmoid(logits)
    np.testing.assert_allclose(result.curve, drops, rtol=1e-5, atol=1e-7)
    assert result.score == pytest.approx(drops.mean(), rel=1e-5)  # (1 / (L + 1)) sum_{k=0..L}


def test_aopc_noise_is_seeded_and_patch_size_scales_with_the_image():
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(16, 16, 3)) * 1e-3
    model = logistic_model(weights)
    pixels = rng.uniform(0, 255, size=(16, 16, 3)).astype(np.float32)
    saliency = rng.random((16, 16))
    first = aopc(model, pixels, saliency, target=0, n_regions=10, seed=3)
    again = aopc(model, pixels, saliency, target=0, n_regions=10, seed=3)
    other = aopc(model, pixels, saliency, target=0, n_regions=10, seed=4)
    assert np.array_equal(first.curve, again.curve) and not np.allclose(first.curve, other.curve)
    # Default patch side 9 at 224: 1 pixel at 16 (16 * 9 / 224 = 0.64), so 10 regions = 10 pixels.
    counted: list[int] = []

    def changed(pixels_batch: np.ndarray) -> np.ndarray:
        # Pixels that differ from the first image of the batch (the clean image, k = 0, in a one-chunk curve).
        counted.extend(int(v) for v in (pixels_batch != pixels_batch[:1]).any(axis=3).sum(axis=(1, 2)))
        return np.zeros((len(pixels_batch), 1), np.float32)

    probe = bx.CallableModel(changed, spec=bx.InputSpec(size=(16, 16)))
    counted.clear()
    aopc(probe, pixels, saliency, target=0, n_regions=10)
    assert counted[-11:] == list(range(11))
    big = bx.CallableModel(changed, spec=bx.InputSpec(size=(448, 448)))
    counted.clear()
    aopc(big, np.full((448, 448, 3), 100.0, np.float32), np.random.default_rng(0).random((448, 448)), target=0,
         n_regions=2)
    assert counted[-3:] == [0, 18 * 18, 2 * 18 * 18]  # 18 x 18 patches at 448


def test_linear_imputation_reproduces_a_linear_ramp_exactly():
    yy, xx = np.mgrid[:20, :24].astype(np.float64)
    ramp = np.stack([20 + 3 * yy + 2 * xx + 10 * c for c in range(3)], axis=2)
    removed = np.zeros((20, 24), bool)
    removed[5:12, 6:15] = True   # an interior block
    removed[15, 20] = True       # and an isolated pixel
    removed[3:17, 2] = True      # and a thin line
    imputed = noisy_linear_imputation(ramp, removed, noise=0.0)
    np.testing.assert_allclose(imputed, ramp, atol=1e-3)


def test_imputation_noise_is_gaussian_with_the_requested_std_on_removed_pixels_only():
    rng = np.random.default_rng(5)
    image = rng.uniform(50, 200, size=(40, 40, 3))
    removed = rng.random((40, 40)) < 0.5
    clean = noisy_linear_imputation(image, removed, noise=0.0)
    noisy = noisy_linear_imputation(image, removed, noise=2.55, rng=0)
    difference = (noisy - clean)[removed]
    assert np.std(difference) == pytest.approx(2.55, rel=0.1)
    assert np.array_equal(noisy[~removed], image[~removed].astype(np.float32))
    assert np.array_equal(noisy, noisy_linear_imputation(image, removed, noise=2.55, rng=0))


def test_road_scores_the_imputed_images(linear_case):
    weights, pixels, saliency = linear_case
    model = logistic_model(weights, batch_size=4)
    result = road(model, pixels, saliency, target=0, order="lerf", noise=0.0)
    assert len(result.curve) == 9 and np.allclose(result.x, np.arange(1, 10) / 10)
    order = np.argsort(saliency.ravel(), kind="stable")  # least relevant first
    expected = []
    for p in range(10, 100, 10):
        removed = np.zeros(saliency.size, bool)
        removed[order[:round(p / 100 * saliency.size)]] = True
        image = noisy_linear_imputation(pixels, removed.reshape(saliency.shape))
        expected.append(sigmoid((weights * image).sum()))
    np.testing.assert_allclose(result.curve, expected, rtol=1e-5)
    assert result.score == pytest.approx(np.mean(expected), rel=1e-5)


def test_faithfulness_parameter_checks(linear_case):
    weights, pixels, saliency = linear_case
    model = logistic_model(weights)
    with pytest.raises(ParameterError, match="n_steps"):
        deletion(model, pixels, saliency, n_steps=0)
    with pytest.raises(ParameterError, match="must match"):
        deletion(model, pixels, saliency[:5])
    with pytest.raises(ParameterError, match="blur_kernel"):
        insertion(model, pixels, saliency, blur_kernel=4)
    with pytest.raises(ParameterError, match="fill"):
        aopc(model, pixels, saliency, fill="pink")
    with pytest.raises(ParameterError, match="percentages"):
        road(model, pixels, saliency, percentages=[50, 100])
    with pytest.raises(ParameterError, match="order"):
        road(model, pixels, saliency, order="middle")
    with pytest.raises(ParameterError, match="score"):
        deletion(model, pixels, saliency, score="softmax")
    with pytest.raises(ParameterError, match="baseline"):
        deletion(model, pixels, saliency, baseline=np.zeros(4))


# ----------------------------------------------------------------------------- orderings on a known region


@pytest.fixture(scope="module")
def region_case():
    """A detector of a fixed +-1 pattern inside a known region: its evidence is exactly that region."""
    rng = np.random.default_rng(7)
    size = (48, 48)
    region = np.zeros(size, bool)
    region[12:36, 8:30] = True
    pattern = rng.choice([-1.0, 1.0], size=(*size, 3))
    image = 127.5 + np.where(region[..., None], 100 * pattern, 60 * rng.choice([-1.0, 1.0], size=(*size, 3)))
    weights = 0.03 * pattern * region[..., None] / (3 * region.sum())
    model = logistic_model(weights, offset=-1.5)
    maps = {"oracle": region.astype(np.float64), "random": rng.random(size), "inverted": 1.0 - region}
    return model, image.astype(np.float32), maps


def test_an_oracle_map_beats_random_and_inverted_maps_on_deletion_and_insertion(region_case):
    model, image, maps = region_case
    deletions = {name: deletion(model, image, m, target=0).score for name, m in maps.items()}
    insertions = {name: insertion(model, image, m, target=0).score for name, m in maps.items()}
    assert deletions["oracle"] < deletions["random"] < deletions["inverted"], deletions
    assert insertions["oracle"] > insertions["random"] > insertions["inverted"], insertions


def test_an_oracle_map_beats_a_random_map_on_aopc_and_road(region_case):
    model, image, maps = region_case
    aopcs = {name: aopc(model, image, m, target=0, n_regions=50).score for name, m in maps.items()}
    assert aopcs["oracle"] > aopcs["random"] > aopcs["inverted"], aopcs
    morf = {name: road(model, image, m, target=0, percentages=(10, 20)).score for name, m in maps.items()}
    assert morf["oracle"] < morf["random"], morf
    lerf_oracle = road(model, image, maps["oracle"], target=0, order="lerf", percentages=(10, 20)).score
    assert lerf_oracle > morf["oracle"]


# --------------------------------------------------------------------------------------------- robustness


@pytest.fixture(scope="module")
def small_linear():
    rng = np.random.default_rng(11)
    weights = rng.normal(size=(16, 16, 3)) * 1e-3
    image = rng.uniform(20, 235, size=(16, 16, 3)).astype(np.float32)
    return logistic_model(weights), image


def test_sensitivity_is_zero_for_a_map_that_ignores_the_image():
    constant = bx.CallableModel(lambda p: np.tile([[2.0, 0.0]], (len(p), 1)), spec=bx.InputSpec(size=(8, 8)))
    image = np.full((8, 8, 3), 90.0, np.float32)
    result = sensitivity(constant, image, RISE(n_masks=8, seed=1, estimator="paper"), target=0, n_samples=3)
    assert result.max == 0.0 and result.avg == 0.0 and result.values.shape == (3,)


def test_sensitivity_reuses_the_method_seed_and_grows_with_the_radius(small_linear):
    model, image = small_linear
    method = RISE(n_masks=32, cells=4, seed=3)
    tiny = sensitivity(model, image, method, target=0, n_samples=3, radius=1e-3)
    large = sensitivity(model, image, method, target=0, n_samples=3, radius=40.0)
    assert tiny.max < 1e-3 < large.avg  # the same masks for every copy: a tiny radius changes almost nothing
    assert tiny.avg <= tiny.max and large.avg <= large.max
    again = sensitivity(model, image, method, target=0, n_samples=3, radius=40.0)
    assert np.array_equal(large.values, again.values)
    with pytest.raises(ParameterError, match="radius"):
        sensitivity(model, image, method, target=0, radius=0)


# ------------------------------------------------------------------------------------------------ evaluate


def test_evaluate_returns_floats_and_curves_for_every_metric(small_linear):
    model, image = small_linear
    explanation = Occlusion(window=4, stride=2, score="raw").explain(model, image, target=0)
    mask = np.zeros((16, 16), bool)
    mask[4:10, 4:10] = True
    scores = evaluate(model, image, explanation, metrics=list_metrics(), mask=mask, n_samples=2, n_steps=20)
    assert set(list_metrics()) <= set(scores)
    for name, info in METRICS.items():
        assert isinstance(scores[name], float)
        assert (f"{name}_curve" in scores) == info.curve
    assert scores["deletion_curve"].shape == (21,)
    assert scores["road_morf_curve"].shape == (9,)
    assert scores["pointing_game"] == pointing_game(explanation.saliency, mask)
    assert scores["sparseness"] == pytest.approx(sparseness(explanation.saliency))


def test_evaluate_compares_at_model_size_for_faithfulness_and_original_size_for_masks():
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(32, 32, 3)) * 1e-3
    model = logistic_model(weights)
    image = rng.uniform(0, 255, size=(96, 64, 3)).astype(np.float32)
    explanation = Occlusion(window=8, stride=4).explain(model, image, target=1)
    assert explanation.saliency.shape == (96, 64)
    mask = np.zeros((96, 64), bool)
    mask[:40, :30] = True
    scores = evaluate(model, image, explanation, metrics=["deletion", "relevance_mass"], mask=mask)
    small = deletion(model, resize_pixels(image, (32, 32)), resize_map(explanation.saliency, (32, 32)), target=1)
    assert scores["deletion"] == pytest.approx(small.score, rel=1e-6)
    assert scores["relevance_mass"] == pytest.approx(relevance_mass_accuracy(explanation.saliency, mask))


def test_evaluate_reads_contrastive_and_list_targets_back_from_json(small_linear, tmp_path):
    model, image = small_linear
    explanation = Occlusion(window=4, stride=2).explain(model, image, target=(1, 0))
    assert explanation.target == {"contrast": [1, 0]}
    scores = evaluate(model, image, explanation, metrics="deletion", n_steps=10)
    expected = deletion(model, image, explanation.saliency, target=(1, 0), n_steps=10)
    assert scores["deletion"] == pytest.approx(expected.score)
    assert scores["deletion"] < 0  # p(1) - p(0) with p(0) near 1/2: the contrast, not a single class
    explanation.save(tmp_path / "exp")
    loaded = bx.Explanation.load(tmp_path / "exp")
    assert evaluate(model, image, loaded, metrics="deletion", n_steps=10)["deletion"] == pytest.approx(
        expected.score, rel=1e-6)
    listed = Occlusion(window=4, stride=2).explain(model, image, target=[0, 1])
    summed = evaluate(model, image, listed, metrics=["insertion"], n_steps=5)
    np.testing.assert_allclose(summed["insertion_curve"], 1.0, rtol=1e-6)  # p(0) + p(1) = 1 everywhere


def test_evaluate_robustness_reexplains_with_the_recorded_method_once_for_both_metrics(small_linear):
    model, image = small_linear
    explanation = RISE(n_masks=16, cells=4, seed=5).explain(model, image, target=0)
    before = model.forward_passes
    scores = evaluate(model, image, explanation, metrics=["max_sensitivity", "avg_sensitivity"], n_samples=3)
    assert model.forward_passes - before == 3 * (16 + 1)  # one set of re-explanations serves both metrics
    direct = sensitivity(model, image, RISE(n_masks=16, cells=4, seed=5), target=0, n_samples=3)
    assert scores["max_sensitivity"] == pytest.approx(direct.max)
    assert scores["avg_sensitivity"] == pytest.approx(direct.avg)


def test_evaluate_reads_the_clean_scores_from_the_explanation(small_linear, tmp_path):
    model, image = small_linear
    explanation = Occlusion(window=4, stride=2).explain(model, image, target=0)
    before = model.forward_passes
    reused = evaluate(model, image, explanation, metrics=["deletion", "insertion"], n_steps=10)
    # the two curves' images only (11 each): the clean image is not run again to resolve the target
    assert model.forward_passes - before == 2 * 11
    explanation.save(tmp_path / "exp")
    loaded = bx.Explanation.load(tmp_path / "exp")  # no image: its scores cannot be matched to this image
    before = model.forward_passes
    rerun = evaluate(model, image, loaded, metrics=["deletion", "insertion"], n_steps=10)
    assert model.forward_passes - before == 2 * 11 + 1
    for name in ("deletion", "insertion", "deletion_curve", "insertion_curve"):
        np.testing.assert_array_equal(reused[name], rerun[name])
    # a target that needs the scores' values ("top1") is resolved on this model, not read from the record
    handmade = bx.Explanation(saliency=explanation.saliency, target="top1", method="occlusion",
                              scores=np.array([0.0, 1e9], np.float32), image=image)
    top = int(np.argmax(model.predict(image)[0]))
    before = model.forward_passes
    scores = evaluate(model, image, handmade, metrics="deletion", n_steps=10)
    assert model.forward_passes - before == 11 + 1
    assert scores["deletion"] == pytest.approx(deletion(model, image, explanation.saliency, target=top,
                                                        n_steps=10).score)


def test_evaluate_refuses_bad_requests(small_linear):
    model, image = small_linear
    explanation = Occlusion(window=4, stride=2).explain(model, image, target=0)
    with pytest.raises(ParameterError, match=r"metric pointing_game needs a ground-truth mask \(mask=\.\.\.\)"):
        evaluate(model, image, explanation, metrics=["deletion", "pointing_game"])
    with pytest.raises(ParameterError, match="unknown metric"):
        evaluate(model, image, explanation, metrics=["delete"])
    with pytest.raises(ParameterError, match="tolerance"):
        evaluate(model, image, explanation, metrics=["deletion"], tolerance=3)
    with pytest.raises(ParameterError, match="mask has shape"):
        evaluate(model, image, explanation, metrics=["iou"], mask=np.ones((8, 8), bool))
    with pytest.raises(ParameterError, match="image it explains"):
        evaluate(model, image[:8], explanation)
    assert evaluate(model, image, explanation, metrics="Relevance-Mass-Accuracy",
                    mask=np.eye(16, dtype=bool)).keys() == {"relevance_mass"}


# ------------------------------------------------------------------------------- Quantus (dev dependency)


@pytest.fixture(scope="module")
def quantus():
    module = pytest.importorskip("quantus")
    warnings.filterwarnings("ignore", module="quantus")
    return module


@pytest.fixture(scope="module")
def random_batch():
    rng = np.random.default_rng(21)
    n, h, w = 6, 16, 16
    x = rng.uniform(0, 255, size=(n, 3, h, w)).astype(np.float32)
    a = rng.normal(size=(n, 1, h, w)).astype(np.float32)
    s = np.zeros((n, 1, h, w))
    for i in range(n):
        y0, x0 = rng.integers(0, 8, 2)
        s[i, 0, y0:y0 + 7, x0:x0 + 8] = 1
        if i % 2 == 0:  # plant the maximum in the mask for half of the images
            a[i, 0, y0 + 3, x0 + 3] = a[i].max() + 1
    return x, a, s, np.zeros(n, int)


def test_localisation_and_sparseness_agree_with_quantus(quantus, random_batch):
    x, a, s, y = random_batch
    common = {"model": None, "x_batch": x, "y_batch": y, "s_batch": s}
    quiet = {"disable_warnings": True}
    hits = quantus.PointingGame(**quiet)(a_batch=a, **common)
    ours = [pointing_game(a[i, 0], s[i, 0], tolerance=0) for i in range(len(a))]
    np.testing.assert_array_equal(np.asarray(hits, float), ours)
    assert 0 < sum(ours) < len(ours)
    # Quantus sums the raw map: give it the min-subtracted map that ours uses.
    shifted = a - a.min(axis=(1, 2, 3), keepdims=True)
    mass = quantus.RelevanceMassAccuracy(normalise=False, **quiet)(a_batch=shifted, **common)
    ours = [relevance_mass_accuracy(a[i, 0], s[i, 0]) for i in range(len(a))]
    np.testing.assert_allclose(mass, ours, rtol=1e-6)
    rank = quantus.RelevanceRankAccuracy(normalise=False, **quiet)(a_batch=a, **common)
    ours = [relevance_rank_accuracy(a[i, 0], s[i, 0]) for i in range(len(a))]
    np.testing.assert_allclose(rank, ours, rtol=1e-12)
    # Defaults (abs, normalise by max): the Gini index is scale-invariant; Quantus adds 1e-7 to every value.
    gini = quantus.Sparseness(**quiet)(a_batch=a.copy(), **common)
    ours = [sparseness(a[i, 0]) for i in range(len(a))]
    np.testing.assert_allclose(gini, ours, atol=1e-6)


def test_noisy_linear_imputation_agrees_with_quantus(quantus):
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    rng = np.random.default_rng(8)
    image = rng.uniform(0, 255, size=(20, 17, 3))
    removed = rng.random((20, 17)) < 0.6  # touches the borders too
    expected = quantus_imputation(image.transpose(2, 0, 1).copy(), np.flatnonzero(removed), noise=0.0)
    np.testing.assert_allclose(noisy_linear_imputation(image, removed), expected.transpose(1, 2, 0), atol=1e-4)


def torch_module(function):
    """A torch.nn.Module (channel-first in, scores out) around a numpy function of NHWC pixels."""
    torch = pytest.importorskip("torch")

    class Wrapped(torch.nn.Module):
        def forward(self, x):
            pixels = x.detach().cpu().numpy().transpose(0, 2, 3, 1)
            return torch.from_numpy(np.asarray(function(pixels), dtype=np.float32))

    return Wrapped().eval()


def two_class_linear(weights):
    return lambda pixels: np.einsum("nhwc,khwc->nk", pixels.astype(np.float64), weights).astype(np.float32)


def test_aopc_agrees_with_quantus_region_perturbation(quantus, random_batch):
    x, a, _, _ = random_batch
    weights = np.random.default_rng(9).normal(size=(2, 16, 16, 3)) * 3e-4
    function = two_class_linear(weights)
    x = x.copy()
    x[:, :, 0, 0] = 0.0  # Quantus's "black" is the image minimum
    y = np.arange(len(x)) % 2
    curves = quantus.RegionPerturbation(patch_size=4, regions_evaluation=10, normalise=False,
                                        perturb_baseline="black", disable_warnings=True)(
        model=torch_module(function), x_batch=x, y_batch=y, a_batch=a, channel_first=True, softmax=True)
    model = bx.CallableModel(function, spec=bx.InputSpec(size=(16, 16)), output_kind="logits")
    for i in range(len(x)):
        ours = aopc(model, x[i].transpose(1, 2, 0), a[i, 0], target=int(y[i]), patch_size=4, n_regions=10,
                    fill="black")
        # Quantus returns f(x_0) - f(x_k) for k = 1..L; AOPC adds k = 0 and divides by L + 1.
        np.testing.assert_allclose(ours.curve[1:], curves[i], atol=1e-6)
        assert ours.score == pytest.approx(np.sum(curves[i]) / 11, abs=1e-6)


def test_max_and_avg_sensitivity_agree_with_quantus(quantus, small_linear):
    model, image = small_linear
    method = Occlusion(window=4, stride=2, score="raw")
    radius, n_samples, seed = 8.0, 4, 13
    ours = sensitivity(model, image, method, target=0, n_samples=n_samples, radius=radius, seed=seed)

    def our_copies():
        """Our perturbations, in our order: uniform in the L-infinity ball, clipped to [0, 255]."""
        rng = np.random.default_rng(seed)
        return iter([np.clip(image + rng.uniform(-radius, radius, image.shape).astype(np.float32), 0, 255)
                     for _ in range(n_samples)])

    def explain(model, inputs, targets, **kwargs):
        maps = [method.explain(bx_model, x.transpose(1, 2, 0), target=int(t)).saliency
                for x, t in zip(inputs, targets, strict=True)]
        return np.stack(maps)[:, None]

    bx_model = model
    x = image.transpose(2, 0, 1)[None].copy()
    a = method.explain(model, image, target=0).saliency[None, None]
    results = {}
    for name, cls in (("max", quantus.MaxSensitivity), ("avg", quantus.AvgSensitivity)):
        copies = our_copies()

        def replay(arr, copies=copies, **kwargs):
            return next(copies).transpose(2, 0, 1).reshape(arr.shape)

        metric = cls(nr_samples=n_samples, perturb_func=replay, normalise=False, abs=False, disable_warnings=True)
        results[name] = metric(model=torch_module(model.predict), x_batch=x, y_batch=np.array([0]), a_batch=a,
                               explain_func=explain, channel_first=True)[0]
    assert results["max"] == pytest.approx(ours.max, rel=1e-5)
    assert results["avg"] == pytest.approx(ours.avg, rel=1e-5)
