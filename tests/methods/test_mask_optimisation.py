"""Meaningful and extremal perturbation: the chain rule pieces against finite differences, and the optimised masks
against the ground truth of the synthetic shapes model, by the exact backward graph and as a black box (SPSA)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import blackbox_xai as bx
from blackbox_xai.errors import ParameterError
from blackbox_xai.evaluation.localisation import iou, pointing_game
from blackbox_xai.groundtruth import make_images, shapes_model
from blackbox_xai.methods.extremal import ExtremalPerturbation, SmoothMaskGenerator
from blackbox_xai.methods.mask_optimisation import BlurPyramid, Resampler, ScoreGradient, interpolation_matrix
from blackbox_xai.methods.meaningful import MeaningfulPerturbation, _total_variation
from blackbox_xai.targets import resolve_target


@pytest.fixture(scope="module")
def shapes():
    model = shapes_model("clean")
    images, labels, masks, _ = make_images(3, seed=3)
    return model, images.astype(np.float32), labels, masks


def black_box(model: bx.OnnxModel) -> bx.CallableModel:
    """The same network as a pure black box: only its outputs are visible."""
    return bx.CallableModel(lambda batch: model.predict(batch), spec=bx.InputSpec(size=model.input_size),
                            batch_size=model.batch_size, output_kind="logits")


def directional(f, x: np.ndarray, direction: np.ndarray, step: float) -> float:
    return float((np.sum(f(x + step * direction)) - np.sum(f(x - step * direction))) / (2 * step))


# ------------------------------------------------------------------------------------------------------------
# The differentiable pieces
# ------------------------------------------------------------------------------------------------------------

def test_interpolation_matrix_is_cv2_bilinear_resize(rng):
    grid = rng.normal(size=(7, 9)).astype(np.float32)
    expected = cv2.resize(grid, (31, 20), interpolation=cv2.INTER_LINEAR)
    ours = interpolation_matrix(20, 7) @ grid @ interpolation_matrix(31, 9).T
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_resampler_adjoint_is_the_transpose(rng):
    resampler = Resampler((7, 9), (20, 31))
    a, b = rng.normal(size=(2, 7, 9)), rng.normal(size=(2, 20, 31))
    assert np.sum(resampler.forward(a) * b) == pytest.approx(np.sum(a * resampler.adjoint(b)), rel=1e-5)


def test_blur_pyramid_ends_and_derivative(rng):
    pixels = rng.uniform(0, 255, (24, 30, 3)).astype(np.float32)
    pyramid = BlurPyramid(pixels, max_sigma=3.0, levels=8)
    np.testing.assert_allclose(pyramid.apply(np.ones((1, 24, 30)))[0], pixels, atol=1e-4)
    blurred = cv2.GaussianBlur(pixels, (0, 0), sigmaX=3.0, borderType=cv2.BORDER_REFLECT)
    np.testing.assert_allclose(pyramid.apply(np.zeros((1, 24, 30)))[0], blurred, atol=1e-4)
    # Two levels: the blend m * image + (1 - m) * blur, by its closed form.
    blend = BlurPyramid(pixels, max_sigma=3.0, levels=2)
    m = rng.uniform(0, 1, (1, 24, 30)).astype(np.float32)
    np.testing.assert_allclose(blend.apply(m)[0], m[0, ..., None] * pixels + (1 - m[0, ..., None]) * blurred,
                               atol=1e-3)
    # Adjoint against finite differences, away from the level boundaries (piecewise linear).
    masks = rng.uniform(0.02, 0.98, (1, 24, 30))
    masks = np.where(np.abs(masks * 7 - np.rint(masks * 7)) < 0.05, masks + 0.06, masks)
    weights = rng.normal(size=(1, 24, 30, 3))
    direction = rng.normal(size=masks.shape)
    numeric = directional(lambda m: pyramid.apply(m) * weights, masks, direction, 1e-4)
    assert np.sum(pyramid.adjoint(masks, weights) * direction) == pytest.approx(numeric, rel=1e-3)


@pytest.mark.parametrize("smoothness", [0.0, 0.05])
def test_smooth_mask_generator_adjoint_and_shape(rng, smoothness):
    generator = SmoothMaskGenerator((40, 52), step=4.0, sigma=12.0, smoothness=smoothness)
    ones = generator.forward(np.ones((1, *generator.grid_shape)))
    assert ones.min() > 0.95 and ones.max() <= 1.0 + 1e-6 if smoothness == 0 else ones.min() > 0.9
    # One bump: a disc of radius about sigma around its centre (flat top of radius sigma / 2).
    single = np.zeros((1, *generator.grid_shape))
    single[0, 5, 6] = 1.0
    mask = generator.forward(single)[0]
    assert mask[20, 24] > 0.9 and mask[20, 24 + 20] < 0.2 and mask[3, 3] < 0.05
    params = rng.uniform(0, 1, (2, *generator.grid_shape))
    weights = rng.normal(size=(2, 40, 52))
    direction = rng.normal(size=params.shape)
    numeric = directional(lambda p: generator.forward(p) * weights, params, direction, 1e-7)
    assert np.sum(generator.adjoint(params, weights) * direction) == pytest.approx(numeric, rel=1e-4)


def test_total_variation_gradient(rng):
    mask = rng.uniform(0, 1, (9, 11))
    value, gradient = _total_variation(mask, 3.0)
    expected = np.mean(np.abs(np.diff(mask, axis=0)) ** 3) + np.mean(np.abs(np.diff(mask, axis=1)) ** 3)
    assert value == pytest.approx(expected, rel=1e-9)
    direction = rng.normal(size=mask.shape)
    numeric = directional(lambda m: _total_variation(m, 3.0)[0], mask, direction, 1e-6)
    assert np.sum(gradient * direction) == pytest.approx(numeric, rel=1e-4)


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_exact_score_gradient_matches_finite_differences(shapes, score):
    """The whole chain (bumps -> mask -> blur blend -> backward graph) against central differences of the model."""
    model, images, labels, _ = shapes
    pixels = images[0]
    # The model is saturated on its class (p = 0.9999, which float32 cannot resolve by differences): the
    # probability is checked on another class, whose small probability float32 resolves well.
    explained = int(labels[0]) if score == "logit" else (int(labels[0]) + 1) % 4
    target = resolve_target(explained, model.predict(pixels)[0])
    generator = SmoothMaskGenerator((96, 96), step=3.0, sigma=9.0)
    pyramid = BlurPyramid(pixels, 8.0, levels=8)
    oracle = ScoreGradient(model, target, score, "exact", 8, 0.1, seed=0)
    assert oracle.source == "exact"
    params = np.random.default_rng(1).uniform(0.2, 0.8, (1, *generator.grid_shape)).astype(np.float32)
    scores, gradient = oracle(params, generator.forward, generator.adjoint, pyramid.apply, pyramid.adjoint)
    # Directions supported on a block of weights over the target shape, where the score depends on the mask.
    ys, xs = np.nonzero(shapes[3][0])
    cy, cx = int(ys.mean() / 3), int(xs.mean() / 3)
    direction = np.zeros_like(params)
    direction[0, cy - 3:cy + 4, cx - 3:cx + 4] = np.random.default_rng(2).uniform(0.5, 1.0, size=(7, 7))
    numeric = directional(lambda p: oracle.scores(pyramid.apply(generator.forward(p))), params, direction, 1e-3)
    assert abs(numeric) > 0.01 * abs(scores[0])  # the direction matters to the score
    assert float(np.sum(gradient * direction)) == pytest.approx(numeric, rel=0.05)


def test_spsa_estimate_agrees_with_the_exact_gradient(shapes):
    model, images, labels, _ = shapes
    pixels = images[1]
    target = resolve_target(int(labels[1]), model.predict(pixels)[0])
    generator = SmoothMaskGenerator((96, 96), step=3.0, sigma=9.0)
    pyramid = BlurPyramid(pixels, 8.0, levels=8)
    params = np.full((1, *generator.grid_shape), 0.5, np.float32)
    args = (params, generator.forward, generator.adjoint, pyramid.apply, pyramid.adjoint)
    _, exact = ScoreGradient(model, target, "logit", "exact", 8, 0.1, seed=0)(*args)
    spsa = ScoreGradient(black_box(model), target, "logit", "auto", 256, 0.05, seed=0, block=4)
    assert spsa.source == "spsa"
    passes = model.forward_passes
    _, estimate = spsa(*args)
    assert model.forward_passes - passes == 2 * 256
    assert np.corrcoef(exact.ravel(), estimate.ravel())[0, 1] > 0.5


# ------------------------------------------------------------------------------------------------------------
# Extremal perturbation
# ------------------------------------------------------------------------------------------------------------

def check_extremal(explanation: bx.Explanation, mask: np.ndarray, min_iou: float) -> None:
    extras = explanation.extras
    for reached, wanted, binary in zip(extras["areas"], extras["target_areas"], extras["masks"]):
        assert abs(reached - wanted) < 0.01  # exact-area masks: within 1% of the image
        assert set(np.unique(binary)) <= {0.0, 1.0}
    assert pointing_game(explanation.saliency, mask) == 1.0
    assert iou(explanation.saliency, mask) >= min_iou
    # Keeping only the smallest region (5% of the image) keeps most of the clean score: the evidence is inside.
    assert extras["scores"][0] > 0.9 * extras["clean_score"]


def test_extremal_preserve_finds_the_evidence_with_exact_gradients(shapes):
    model, images, labels, masks = shapes
    for index in (0, 1):
        explanation = ExtremalPerturbation(iterations=200).explain(model, images[index], int(labels[index]))
        assert explanation.extras["gradient_source"] == "exact"
        assert explanation.timing["forward_passes"] <= 200 * 3 + 10
        check_extremal(explanation, masks[index], min_iou=0.4)


@pytest.mark.slow
def test_extremal_black_box_spsa_finds_the_evidence(shapes):
    model, images, labels, masks = shapes
    box = black_box(model)
    explanation = ExtremalPerturbation(iterations=200, spsa_directions=6, areas=(0.05, 0.1)).explain(
        box, images[1], int(labels[1]))
    assert explanation.extras["gradient_source"] == "spsa"
    assert explanation.timing["forward_passes"] == 200 * 2 * 2 * 6 + 1 + 2 + 1  # + clean, final scores, clean
    check_extremal(explanation, masks[1], min_iou=0.3)


def test_extremal_delete_variant_and_determinism(shapes):
    model, images, labels, masks = shapes
    method = ExtremalPerturbation(variant="delete", areas=(0.1,), iterations=150)
    first = method.explain(model, images[1], int(labels[1]))
    # Deleting the region costs the score much of its value, and the region is the evidence.
    assert first.extras["scores"][0] < first.extras["clean_score"] - 2.0
    assert pointing_game(first.saliency, masks[1]) == 1.0
    again = method.explain(model, images[1], int(labels[1]))
    np.testing.assert_array_equal(first.saliency, again.saliency)


def test_extremal_rejects_bad_parameters():
    for params in ({"areas": (0.0,)}, {"areas": (1.5,)}, {"variant": "keep"}, {"iterations": 0},
                   {"gradient": "numeric"}, {"blur_levels": 1}, {"step": 0}, {"spsa_block": 0}):
        with pytest.raises(ParameterError):
            ExtremalPerturbation(**params)


def test_exact_gradient_refused_on_a_black_box(shapes):
    model, images, labels, _ = shapes
    with pytest.raises(ParameterError, match="black box"):
        ExtremalPerturbation(gradient="exact", iterations=2).explain(black_box(model), images[0])


# ------------------------------------------------------------------------------------------------------------
# Meaningful perturbation
# ------------------------------------------------------------------------------------------------------------

def test_meaningful_perturbation_deletes_the_evidence(shapes):
    model, images, labels, masks = shapes
    for index in (0, 1):
        explanation = MeaningfulPerturbation(score="logit").explain(model, images[index], int(labels[index]))
        extras = explanation.extras
        assert extras["gradient_source"] == "exact"
        assert pointing_game(explanation.saliency, masks[index]) == 1.0
        assert iou(explanation.saliency, masks[index]) > 0.2
        # Blurring the deleted region lowers the score.
        assert extras["final_score"] < extras["clean_score"] - 1.0
        # Inside the target the mask deleted more than outside it.
        assert explanation.saliency[masks[index]].mean() > 2 * explanation.saliency[~masks[index]].mean()


@pytest.mark.slow
def test_meaningful_perturbation_black_box(shapes):
    model, images, labels, masks = shapes
    explanation = MeaningfulPerturbation(score="logit", iterations=150, spsa_directions=6).explain(
        black_box(model), images[1], int(labels[1]))
    assert explanation.extras["gradient_source"] == "spsa"
    assert pointing_game(explanation.saliency, masks[1]) == 1.0
    assert explanation.saliency[masks[1]].mean() > 2 * explanation.saliency[~masks[1]].mean()


def test_meaningful_seed_and_parameters(shapes):
    model, images, labels, _ = shapes
    # Logits: the shapes model is saturated, so with probabilities the mask never moves and every map is constant.
    a = MeaningfulPerturbation(iterations=20, seed=3, score="logit").explain(model, images[0])
    b = MeaningfulPerturbation(iterations=20, seed=3, score="logit").explain(model, images[0])
    c = MeaningfulPerturbation(iterations=20, seed=4, score="logit").explain(model, images[0])
    assert np.ptp(a.saliency) > 0.01
    np.testing.assert_array_equal(a.saliency, b.saliency)
    assert np.abs(a.saliency - c.saliency).max() > 1e-3  # the seed drives the jitter
    for params in ({"mask_size": 0}, {"l1": -1}, {"beta": 0.5}, {"score": "odds"}, {"learning_rate": 0}):
        with pytest.raises(ParameterError):
            MeaningfulPerturbation(**params)


# ------------------------------------------------------------------------------------------------------------
# The entry points: bx.explain and the CLI
# ------------------------------------------------------------------------------------------------------------

def test_explain_and_cli_run_the_new_methods(shapes, tmp_path):
    import subprocess
    import sys

    from blackbox_xai.groundtruth import models_dir

    model, images, labels, masks = shapes
    explanation = bx.explain(model, images[1], method="Extremal-Perturbation", target=int(labels[1]),
                             areas=(0.1,), iterations=60)
    assert explanation.method == "extremal" and explanation.params["areas"] == (0.1,)
    assert pointing_game(explanation.saliency, masks[1]) == 1.0
    image_path = tmp_path / "shape.png"
    cv2.imwrite(str(image_path), images[1][..., ::-1].astype(np.uint8))
    out = tmp_path / "out"
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))

    MeaningfulPerturbation(iterations=5).explain(model, images[1], progress=progress)
    assert seen[-1] == (5, 5) and len(seen) == 5
    result = subprocess.run(
        [sys.executable, "-m", "blackbox_xai.cli", "explain", str(models_dir() / "shapes_clean.onnx"), str(image_path),
         "--method", "extremal,meaningful", "--param", "iterations=20", "--param", "extremal.areas=[0.1]",
         "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    saved = bx.Explanation.load(out / "shape_extremal")
    assert saved.params["iterations"] == 20 and saved.extras["masks"].shape == (1, 96, 96)
    assert abs(float(saved.extras["areas"][0]) - 0.1) < 0.01
    assert (out / "shape_meaningful.png").exists()
