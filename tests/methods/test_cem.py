"""Tests of CEM (pertinent positives and negatives) on models whose decision rule is known.

The synthetic ground-truth model (class = hue of the coloured target shape: 0 red, 1 green, 2 blue, 3 yellow) is run
through its exact backward graph (OnnxModel) and as a pure black box (a CallableModel around its predict). Every
class reported by CEM is checked by running the model on the returned image here, in the test.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from blackbox_xai.errors import ParameterError, TargetError
from blackbox_xai.explanation import Explanation
from blackbox_xai.groundtruth import make_images, shapes_model
from blackbox_xai.methods.cem import (
    CEM,
    Problem,
    Autoencoder,
    autoencoder_gradient,
    hinge_gradient_exact,
    logit_jacobian_fd,
    make_segments,
)
from blackbox_xai.methods.fill import fill_image
from blackbox_xai.model import CallableModel
from blackbox_xai.render.contrastive import contrastive_panel, save_contrastive

RED, YELLOW = 0, 3


@pytest.fixture(scope="module")
def shapes():
    model = shapes_model("clean")
    images, labels, masks, _ = make_images(64, seed=0)
    predicted = model.predict(images).argmax(axis=1)
    red = [i for i in range(len(images)) if labels[i] == RED and predicted[i] == RED]
    return model, images, masks, red


def black_box(model):
    """The ONNX model seen only through its predict function: no gradient, no graph."""
    return CallableModel(lambda batch: model.predict(batch), spec=model.spec, batch_size=32, labels=model.labels)


def model_class(model, image: np.ndarray) -> int:
    return int(model.predict(np.asarray(image, np.float32)[None])[0].argmax())


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def check_pn(exp, model, image: np.ndarray, mask: np.ndarray, label: str) -> None:
    extras = exp.extras
    pn = extras["pn_image"]
    assert pn.dtype == np.float32 and pn.shape == image.shape
    assert extras["pn_found"] is True
    assert model_class(model, pn) == YELLOW == extras["pn_class"]  # "why red and not yellow": now yellow
    assert model_class(model, image) == RED
    delta = pn - image
    assert delta.min() >= -1e-3  # a PN only adds
    np.testing.assert_allclose(extras["pn_delta"], delta, atol=1e-3)
    amount = delta.sum(axis=2)
    np.testing.assert_allclose(extras["pn_map"], amount, atol=1e-2)
    in_mask = amount[mask].sum() / amount.sum()
    near = amount[dilate(mask, 3)].sum() / amount.sum()
    print(f"\n{label}: PN class {extras['pn_class']} at c = {extras['pn_c']:.3g}, "
          f"delta L1 {amount.sum() / 255:.1f} (x 255), in the target mask {in_mask:.2f} (mask area "
          f"{mask.mean():.3f}, density x{in_mask / mask.mean():.1f}), within 3 px of it {near:.2f} (area {dilate(mask, 3).mean():.3f}); {exp.timing['forward_passes']} passes, "
          f"{exp.timing['seconds']:.1f} s")
    # The addition concentrates on the target shape: over 3 times the density of a uniform addition.
    assert in_mask > 3 * mask.mean()
    assert near > 0.4


# ---------------------------------------------------------------------------------------------------------------
# 1. Pertinent negatives "why red and not yellow", exact and black-box
# ---------------------------------------------------------------------------------------------------------------


def test_pn_exact_gradients_turns_red_into_yellow(shapes) -> None:
    model, images, masks, red = shapes
    index = 45  # a red disc covering 10% of the image
    assert index in red
    exp = CEM(mode="pn", iterations=200, c_steps=3).explain(model, images[index], target=(RED, YELLOW))
    assert exp.params["gradient"] == "exact" and exp.params["max_passes"] == 10000
    check_pn(exp, model, images[index], masks[index], "PN exact (superpixels)")


def test_pn_black_box_finite_differences(shapes) -> None:
    model, images, masks, _ = shapes
    index = 45
    box = black_box(model)
    exp = CEM(mode="pn", n_segments=30, iterations=35, c_steps=2, max_passes=20000).explain(
        box, images[index], target=(RED, YELLOW))
    assert exp.params["gradient"] == "finite-difference"
    assert exp.timing["forward_passes"] == exp.extras["passes"] + 1 <= 20000 + 1  # + the clean pass of explain
    check_pn(exp, model, images[index], masks[index], "PN black box (superpixels, finite differences)")


def test_pn_without_contrast_leaves_the_class(shapes) -> None:
    model, images, _, red = shapes
    index = red[0]
    exp = CEM(mode="pn", features="grid", cells=12, iterations=100, c_steps=2).explain(model, images[index])
    assert exp.extras["pn_found"] and exp.extras["contrast_class"] == -1
    assert model_class(model, exp.extras["pn_image"]) == exp.extras["pn_class"] != RED


# ---------------------------------------------------------------------------------------------------------------
# 2. Pertinent positives: a few features keep the class, on the target
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["exact", "black-box"])
def test_pp_keeps_red_with_few_features_on_the_target(shapes, path) -> None:
    model, images, masks, red = shapes
    index, mask = 27, masks[27]
    assert index in red
    subject = model if path == "exact" else black_box(model)
    iterations = 200 if path == "exact" else 50
    exp = CEM(mode="pp", iterations=iterations, c_steps=2).explain(subject, images[index])
    extras = exp.extras
    assert extras["pp_found"]
    assert model_class(model, extras["pp_image"]) == RED == extras["pp_class"]
    # The PP image is the fill plus the kept part: fill + a * (x0 - fill), a in [0, 1] per superpixel.
    fill = fill_image(images[index], "zero", model.spec)
    kept = extras["pp_map"]
    np.testing.assert_allclose(extras["pp_image"], fill + kept[..., None] * (images[index] - fill), atol=1e-2)
    np.testing.assert_allclose(extras["pp_delta"], images[index] - extras["pp_image"], atol=1e-3)
    np.testing.assert_array_equal(exp.saliency, kept)  # saliency = the PP map
    segments, variable = extras["segments"], extras["pp_variable"][:, 0]
    areas = np.bincount(segments.ravel())
    mass = float((variable * areas).sum() / areas.sum())
    used = float((variable > 0).mean())
    peak = np.unravel_index(int(np.argmax(kept)), kept.shape)
    region = kept > 0.5 * kept.max()
    iou = float((region & mask).sum() / (region | mask).sum())
    in_mask = float(kept[mask].sum() / kept.sum())
    print(f"\nPP {path}: kept mass {mass:.3f} of the image, {used:.3f} of the {len(variable)} superpixels used, "
          f"{in_mask:.2f} of the kept mass in the target (area {mask.mean():.3f}), peak in target {mask[peak]}, "
          f"IoU {iou:.2f}; {exp.timing['forward_passes']} passes, {exp.timing['seconds']:.1f} s")
    assert mass < 0.3 and used < 0.3
    assert mask[peak]  # pointing game
    assert in_mask > 0.5 and iou > 0.3


# ---------------------------------------------------------------------------------------------------------------
# 3. Full-pixel CEM with exact gradients
# ---------------------------------------------------------------------------------------------------------------


def test_full_pixel_cem_exact(shapes) -> None:
    model, images, masks, _ = shapes
    index = 5
    exp = CEM(mode="both", features="pixels", iterations=150, c_steps=2).explain(
        model, images[index], target=(RED, YELLOW))
    extras = exp.extras
    assert exp.params["n_features"] == 96 * 96 and exp.params["gradient"] == "exact"
    assert extras["pp_variable"].shape == extras["pn_variable"].shape == (96 * 96, 3)
    assert extras["pp_found"] and extras["pn_found"]
    assert model_class(model, extras["pp_image"]) == extras["pp_class"] == RED
    assert model_class(model, extras["pn_image"]) == extras["pn_class"] == YELLOW
    kept = extras["pp_map"]
    in_target = kept[masks[index]].sum() / kept.sum()
    print(f"\nfull-pixel CEM: PP keeps {kept.mean():.4f} of the pixels' mass, {in_target:.2f} of it in the target;"
          f" PN delta L1 {extras['pn_delta'].sum() / 255:.1f}; {exp.timing['forward_passes']}"
          f" passes, {exp.timing['seconds']:.1f} s")
    assert kept.mean() < 0.1 and in_target > 0.5


# ---------------------------------------------------------------------------------------------------------------
# 4. Exact gradient of the hinge term vs central differences
# ---------------------------------------------------------------------------------------------------------------


def reference_image(mode: str, x0: np.ndarray, fill: np.ndarray, segments: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The CEM image of the variable v, written independently in float64."""
    lifted = v[segments].astype(np.float64)
    if mode == "pn":
        return np.clip(x0.astype(np.float64) + 255.0 * lifted, 0.0, 255.0)
    return fill + lifted * (x0.astype(np.float64) - fill)


@pytest.mark.parametrize("mode", ["pn", "pp"])
def test_exact_hinge_gradient_matches_finite_differences(shapes, mode) -> None:
    model, images, _, red = shapes
    x0 = images[red[1]]
    segments = make_segments(x0, "superpixels", 30)
    fill = fill_image(x0, "zero", model.spec).astype(np.float64)
    problem = Problem(mode, x0, fill, segments, RED, YELLOW if mode == "pn" else None, 0.0)
    rng = np.random.default_rng(0)
    v = rng.uniform(0.0, 0.3 if mode == "pn" else 0.1, problem.shape)
    logits, value, gradient = hinge_gradient_exact(model, problem, v)
    _, seed = problem.seed(logits)
    assert value > 0 and gradient.shape == problem.shape
    step = 1e-3
    reference = np.empty(problem.shape)
    for f in range(problem.shape[0]):
        for k in range(problem.shape[1]):
            scores = []
            for sign in (1.0, -1.0):
                moved = v.copy()
                moved[f, k] += sign * step
                image = reference_image(mode, x0, fill, segments, moved).astype(np.float32)
                scores.append(float(model.predict(image[None])[0].astype(np.float64) @ seed))
            reference[f, k] = (scores[0] - scores[1]) / (2 * step)
    error = np.linalg.norm(gradient - reference) / np.linalg.norm(reference)
    # The library's own finite differences (the black-box path): at the same step, and at its default step.
    center, jacobian = logit_jacobian_fd(model, problem, v, step)
    np.testing.assert_allclose(center, logits, rtol=1e-4, atol=1e-4)
    fd_error = np.linalg.norm(np.tensordot(seed, jacobian, axes=1) - reference) / np.linalg.norm(reference)
    default = CEM().fd_step
    _, jacobian = logit_jacobian_fd(model, problem, v, default)
    default_error = np.linalg.norm(np.tensordot(seed, jacobian, axes=1) - reference) / np.linalg.norm(reference)
    print(f"\n{mode}: relative error of the exact hinge gradient {error:.2e}; of the black-box finite differences "
          f"{fd_error:.2e} (step {step}), {default_error:.2e} (default step {default}); {problem.shape[0]} features x "
          f"{problem.shape[1]}")
    assert error < 1e-2
    assert fd_error < 1e-2
    assert default_error < 0.1  # a larger step crosses ReLU kinks: still a descent direction


@pytest.mark.parametrize("mode", ["pn", "pp"])
def test_fd_step_is_a_fraction_of_the_rms_of_the_perturbed_pixels(shapes, mode) -> None:
    """fd_step (the library's unit): a finite-difference step moves the pixels of one feature by fd_step times the
    rms of their span across the box (255 for a PN, x0 - fill for a PP), and nothing else; where that rms is 0 (a PP
    feature already at the fill) the variable's difference is exactly 0."""
    model, images, _, red = shapes
    x0 = np.clip(images[red[0]], 10.0, 240.0)  # no clipping at 255 within one step
    segments = make_segments(x0, "grid", cells=4)
    fill = fill_image(x0, "zero", model.spec).astype(np.float32)
    if mode == "pp":
        x0[segments == 5] = fill[segments == 5]  # feature 5 cannot move the image: its span's rms is 0
    problem = Problem(mode, x0, fill, segments, RED, None, 0.0)
    step = CEM().fd_step
    v = np.full(problem.shape, 0.5 if mode == "pp" else 0.0)
    base = problem.image(v).astype(np.float64)
    elements = np.arange(problem.shape[0] * problem.shape[1])
    moved = problem.perturbed(v, elements, step).astype(np.float64) - base
    for element, change in zip(elements, moved):
        feature, channel = divmod(int(element), problem.shape[1])
        inside = segments == feature
        span = np.full(int(inside.sum()), 255.0) if mode == "pn" else (x0 - fill)[inside].astype(np.float64)
        if mode == "pn":
            change = change[..., channel]
            assert not np.any(np.delete(moved[element], channel, axis=2))  # the other channels do not move
        assert not np.any(change[~inside])  # nor do the other features
        expected = step * np.sqrt(np.mean(span ** 2))
        assert np.sqrt(np.mean(change[inside] ** 2)) == pytest.approx(expected, rel=1e-3, abs=1e-4)
    if mode == "pp":
        _, jacobian = logit_jacobian_fd(model, problem, v, step)
        assert np.all(np.isfinite(jacobian)) and not np.any(jacobian[:, 5]) and np.any(jacobian[:, 4])


# ---------------------------------------------------------------------------------------------------------------
# 5. The zoo model at 224, black box, within a budget
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_zoo_black_box_pn_within_budget() -> None:
    from blackbox_xai import zoo

    onnx_model = zoo.efficientnet_lite0()
    box = CallableModel(lambda batch: onnx_model.predict(batch), spec=onnx_model.spec, batch_size=32,
                        labels=onnx_model.labels)
    image = zoo.sample_image("chelsea")
    budget = 4000
    began = time.perf_counter()
    exp = CEM(mode="pn", max_passes=budget).explain(box, image)
    seconds = time.perf_counter() - began
    extras = exp.extras
    print(f"\nzoo black-box PN: {exp.params['n_features']} superpixels, {extras['passes']} passes "
          f"(budget {budget}, reached {extras['budget_reached']}), {seconds:.0f} s, PN class {extras['pn_class']} "
          f"({extras['pn_class_name']}) from {extras['original_class']} ({extras['original_class_name']}), "
          f"c = {extras['pn_c']}, {extras['pn_iterations']} iterations")
    assert exp.params["gradient"] == "finite-difference"
    assert extras["passes"] <= budget and exp.timing["forward_passes"] == extras["passes"] + 1
    assert extras["pn_image"].shape == (224, 224, 3)
    assert extras["original_class"] in range(281, 286)  # a cat
    assert extras["pn_found"]
    assert model_class(onnx_model, extras["pn_image"]) == extras["pn_class"] != extras["original_class"]


# ---------------------------------------------------------------------------------------------------------------
# 6. Bad inputs
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [
    {"mode": "pq"}, {"features": "quickshift"}, {"gradient": "numeric"}, {"n_segments": 1}, {"cells": 0},
    {"kappa": -1.0}, {"beta": float("nan")}, {"c_init": 0.0}, {"c_steps": 0}, {"iterations": 0},
    {"learning_rate_init": -0.1}, {"fd_step": 0.0}, {"fd_step": 0.9}, {"max_passes": 0}, {"fill": "white"},
    {"gamma": 1.0}, {"autoencoder": "/no/such/autoencoder.onnx"}, {"autoencoder": 3},
    {"features": "pixels", "gradient": "finite-difference"}, {"n_segments": 2.5}, {"compactness": 0.0},
])
def test_invalid_parameters(params) -> None:
    with pytest.raises(ParameterError):
        CEM(**params)


def test_pixels_and_exact_need_a_gradient(shapes) -> None:
    model, images, _, red = shapes
    box = black_box(model)
    with pytest.raises(ParameterError, match="exact gradients"):
        CEM(features="pixels").explain(box, images[red[0]])
    with pytest.raises(ParameterError, match="exact gradients"):
        CEM(gradient="exact").explain(box, images[red[0]])
    with pytest.raises(TargetError):
        CEM().explain(model, images[red[0]], target=[0, 3])


# ---------------------------------------------------------------------------------------------------------------
# Budget, determinism, saving and rendering
# ---------------------------------------------------------------------------------------------------------------


def test_budget_is_respected_and_reported(shapes) -> None:
    model, images, _, red = shapes
    box = black_box(model)
    exp = CEM(mode="both", n_segments=30, max_passes=700).explain(box, images[red[0]])
    extras = exp.extras
    assert extras["budget_reached"] is True and extras["passes"] <= 700
    assert exp.params["max_passes"] == 700
    for mode in ("pp", "pn"):  # whatever was found, the classes are the model's
        assert model_class(model, extras[f"{mode}_image"]) == extras[f"{mode}_class"]
    # Without a cap, runs are bounded by the schedule, and say the budget was not reached.
    exact = CEM(mode="pn", iterations=20, c_steps=2, max_passes=None).explain(model, images[red[0]])
    assert exact.extras["budget_reached"] is False and exact.extras["pn_iterations"] <= 40


def test_deterministic(shapes) -> None:
    model, images, _, red = shapes
    method = CEM(mode="both", iterations=30, c_steps=2)
    first = method.explain(model, images[red[2]], target=(RED, YELLOW))
    second = method.explain(model, images[red[2]], target=(RED, YELLOW))
    for key in ("pp_image", "pn_image", "segments", "pp_variable", "pn_variable"):
        np.testing.assert_array_equal(first.extras[key], second.extras[key])
    np.testing.assert_array_equal(first.saliency, second.saliency)


def test_save_load_and_render(shapes, tmp_path) -> None:
    model, images, _, _ = shapes
    index = 45
    exp = CEM(mode="both", iterations=100, c_steps=2).explain(model, images[index], target=(RED, YELLOW))
    exp.save(tmp_path / "cem")
    loaded = Explanation.load(tmp_path / "cem")
    for key, value in exp.extras.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(loaded.extras[key], value)
        else:
            assert loaded.extras[key] == value, key
    assert loaded.params["gradient"] == "exact" and loaded.method == "cem"
    assert loaded.extras["pn_class_name"] == "yellow" and loaded.extras["original_class_name"] == "red"

    fresh = contrastive_panel(exp, height=96)
    rebuilt = contrastive_panel(loaded, height=96)  # the original comes back as pn_image - pn_delta
    assert fresh.shape == rebuilt.shape == (96 + 24, 4 * 96 + 3 * 4, 3)
    assert np.abs(fresh.astype(int) - rebuilt.astype(int)).max() <= 1
    # The panels are the images themselves (at 96 px: no resizing), below the title bands.
    body = fresh[24:]
    np.testing.assert_array_equal(body[:, :96], np.clip(np.rint(images[index]), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(body[:, 100:196], np.rint(exp.extras["pp_image"]).astype(np.uint8))
    np.testing.assert_array_equal(body[:, 200:296], np.rint(exp.extras["pn_image"]).astype(np.uint8))
    path = save_contrastive(loaded, tmp_path / "cem_panel.png", height=128)
    decoded = cv2.imread(str(path))
    assert decoded.shape == (128 + 24, 4 * 128 + 3 * 4, 3)


# ---------------------------------------------------------------------------------------------------------------
# Optional autoencoder term
# ---------------------------------------------------------------------------------------------------------------


def blur_autoencoder(path) -> str:
    """An "autoencoder" that blurs (3x3 box, zero padding): NHWC images in, NHWC images out."""
    kernel = np.full((3, 1, 3, 3), 1.0 / 9.0, dtype=np.float32)
    nodes = [
        helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "kernel"], ["blurred"], group=3, pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["blurred"], ["reconstruction"], perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(
        nodes, "blur", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 96, 96, 3])],
        [helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["n", 96, 96, 3])],
        [onnx.numpy_helper.from_array(kernel, "kernel")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return str(path)


def numpy_blur(images: np.ndarray) -> np.ndarray:
    padded = np.pad(np.asarray(images, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    height, width = images.shape[1:3]
    return sum(padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)) / 9.0


def test_autoencoder_gradient_exact_and_callable(shapes, tmp_path) -> None:
    model, images, _, red = shapes
    x0 = images[red[0]]
    segments = make_segments(x0, "grid", cells=6)
    problem = Problem("pn", x0, fill_image(x0, "zero", model.spec), segments, RED, None, 0.0)
    v = np.random.default_rng(1).uniform(0.0, 0.2, problem.shape)

    def loss(variable: np.ndarray) -> float:  # |(AE(x) - x) / 255|^2, in float64
        image = reference_image("pn", x0, None, segments, variable)[None]
        return float(np.sum(((numpy_blur(image) - image) / 255.0) ** 2))

    reference = np.empty(problem.shape)
    for f in range(problem.shape[0]):
        for k in range(3):
            plus, minus = v.copy(), v.copy()
            plus[f, k] += 1e-4
            minus[f, k] -= 1e-4
            reference[f, k] = (loss(plus) - loss(minus)) / 2e-4
    exact = autoencoder_gradient(Autoencoder(blur_autoencoder(tmp_path / "blur.onnx"), model), problem, v, 1e-3)
    callable_fd = autoencoder_gradient(Autoencoder(numpy_blur, model), problem, v, 1e-3)
    scale = np.linalg.norm(reference)
    exact_error = np.linalg.norm(exact - reference) / scale
    callable_error = np.linalg.norm(callable_fd - reference) / scale
    print(f"\nautoencoder gradient: relative error {exact_error:.1e} (ONNX, backward graph), {callable_error:.1e} "
          "(callable, finite differences)")
    assert exact_error < 1e-3
    assert callable_error < 1e-3


def test_autoencoder_term_smooths_the_pn(shapes, tmp_path) -> None:
    model, images, _, _ = shapes
    index = 45
    path = blur_autoencoder(tmp_path / "blur.onnx")

    def roughness(pn: np.ndarray) -> float:  # the autoencoder's residual per unit of addition
        image = pn[None].astype(np.float64)
        return float(np.sum((numpy_blur(image) - image) ** 2) / np.sum((pn - images[index]) ** 2))

    common = {"mode": "pn", "features": "grid", "cells": 16, "iterations": 100, "c_steps": 2}
    plain = CEM(**common).explain(model, images[index], target=(RED, YELLOW))
    smooth = CEM(**common, gamma=1000.0, autoencoder=path).explain(model, images[index], target=(RED, YELLOW))
    assert smooth.params["autoencoder"] == path and smooth.params["gamma"] == 1000.0
    assert plain.extras["pn_found"] and smooth.extras["pn_found"]
    assert model_class(model, smooth.extras["pn_image"]) == smooth.extras["pn_class"] == YELLOW
    r_plain, r_smooth = roughness(plain.extras["pn_image"]), roughness(smooth.extras["pn_image"])
    print(f"\nautoencoder term: residual per unit addition {r_plain:.3f} without, {r_smooth:.3f} with gamma = 1000")
    assert r_smooth < 0.5 * r_plain


def test_an_empty_pertinent_positive_warns_with_its_reason(shapes):
    """The clean shapes model calls the fill image itself (the colour it sees as zero) yellow: for a yellow
    target, the empty PP already keeps the class, so the PP map is constant; explain warns and says why."""
    from blackbox_xai.errors import ConstantMapWarning

    model, images, _, _ = shapes
    fill = fill_image(images[0].astype(np.float32), "zero", model.spec)
    assert model_class(model, fill) == YELLOW  # the premise, checked on the model itself
    predicted = model.predict(images).argmax(axis=1)
    yellow = int(np.flatnonzero(predicted == YELLOW)[0])
    with pytest.warns(ConstantMapWarning, match=r"fill image alone \(fill='zero'\) is already class 3"):
        exp = CEM(mode="pp").explain(model, images[yellow], target=YELLOW)
    assert exp.extras["pp_found"] and exp.extras["pp_class"] == YELLOW
    assert not np.any(exp.extras["pp_map"]) and np.ptp(exp.saliency) == 0
    assert model_class(model, exp.extras["pp_image"]) == YELLOW


def test_autoencoder_runs_in_sessions_the_explained_model_opens(tmp_path) -> None:
    """The ONNX autoencoder and its backward graph are opened by ``model.make_session``: the model's providers,
    threads and graph optimisation (here settings that differ from onnxruntime's defaults), not a CPU session of
    their own; and no module under ``blackbox_xai/methods/`` imports onnxruntime."""
    import re
    from pathlib import Path

    import blackbox_xai.methods

    model = shapes_model("clean", optimize=False, threads=1)
    opened = []
    make_session = model.make_session
    model.make_session = lambda source: opened.append(source) or make_session(source)
    autoencoder = Autoencoder(blur_autoencoder(tmp_path / "blur.onnx"), model)
    assert len(opened) == 2 and autoencoder.grad_session is not None  # the forward graph and its backward graph
    expected = model.session.get_session_options()
    assert expected.graph_optimization_level != type(expected)().graph_optimization_level  # not the default
    for session in (autoencoder.session, autoencoder.grad_session):
        assert session.get_providers() == model.session.get_providers()
        options = session.get_session_options()
        assert options.graph_optimization_level == expected.graph_optimization_level
        assert options.intra_op_num_threads == expected.intra_op_num_threads == 1
    images = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(autoencoder.reconstruct(images), numpy_blur(images), atol=1e-3)

    root = Path(blackbox_xai.methods.__file__).parent
    importers = [str(path.relative_to(root)) for path in sorted(root.rglob("*.py"))
                 if re.search(r"^\s*(?:import|from)\s+onnxruntime\b", path.read_text(), re.MULTILINE)]
    assert importers == []


# ---------------------------------------------------------------------------------------------------------------
# The exact path runs the PP's and the PN's images in the same model calls
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_passes", [None, 300])
def test_exact_searches_share_model_calls_with_the_same_results(shapes, monkeypatch, max_passes) -> None:
    """mode="both" with exact gradients: backward runs of two images (the PP's and the PN's), the same results as
    the searches one after the other, including where the pass budget stops them (the later search waits for
    the earlier one when it would go past what that one may still use)."""
    import blackbox_xai.methods.cem.method as cem_method
    from blackbox_xai.methods.cem.search import run_searches

    model, images, _, red = shapes
    sizes: list[int] = []
    original = type(model).gradient

    def gradient(pixels, *args, **kwargs):
        sizes.append(len(pixels))
        return original(model, pixels, *args, **kwargs)

    method = CEM(mode="both", iterations=40, c_steps=3, max_passes=max_passes)
    monkeypatch.setattr(model, "gradient", gradient)
    together = method.explain(model, images[red[1]], target=(RED, YELLOW))
    calls = list(sizes)
    sizes.clear()
    monkeypatch.setattr(cem_method, "run_searches", lambda searches, m, budget, together: run_searches(
        searches, m, budget, together=False))
    apart = method.explain(model, images[red[1]], target=(RED, YELLOW))
    assert max(calls) == 2 and max(sizes) == 1
    assert calls.count(2) >= 10 and len(calls) < len(sizes)  # the calls, not the passes, go down
    assert sum(calls) == sum(sizes) == together.timing["backward_passes"] == apart.timing["backward_passes"]
    assert together.extras["passes"] == apart.extras["passes"]
    assert together.extras["budget_reached"] is apart.extras["budget_reached"] is (max_passes is not None)
    for key in ("pp_variable", "pn_variable", "pp_image", "pn_image"):
        np.testing.assert_allclose(together.extras[key], apart.extras[key], rtol=0, atol=1e-5)
    for key in ("pp_found", "pn_found", "pp_class", "pn_class", "pp_iterations", "pn_iterations"):
        assert together.extras[key] == apart.extras[key], key
