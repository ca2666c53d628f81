"""The ground-truth benchmark at a small size: methods find the known evidence, the Clever-Hans model's shortcut
shows up, randomising the weights decorrelates the maps, and the evaluate CLI reports the library's numbers."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import blackbox_xai as bx
from blackbox_xai import groundtruth
from blackbox_xai.evaluation.benchmark import clever_hans_ratios, score_methods, summarise
from blackbox_xai.evaluation.sanity import model_randomisation, parameterised_layers, similarity
from blackbox_xai.methods import make_method

EVIDENCE_METHODS = ("rise", "occlusion", "gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "scorecam",
                    "ablationcam", "eigencam")


def evidence_methods() -> list:
    # The shapes models are confident (top-1 probability ~0.9999 on most images): half-masked images keep a
    # saturated probability and RISE's weights carry little signal, so RISE scores logits here. So does
    # occlusion: on 2 of these 6 images no window moves the probability off 1.0 and its map is constant
    # (which the pointing game scores as a miss).
    params = {"rise": {"n_masks": 1000, "score": "logit"}, "occlusion": {"window": 12, "stride": 6, "score": "logit"}}
    return [make_method(name, **params.get(name, {})) for name in EVIDENCE_METHODS]


@pytest.fixture(scope="module")
def clean_model():
    return groundtruth.shapes_model("clean")


def test_every_method_beats_random_and_centre_maps_on_the_ground_truth_set(clean_model):
    images, labels, masks, _ = groundtruth.make_images(6, seed=31)
    metrics = ["pointing_game", "relevance_mass"]
    methods = [*evidence_methods(), make_method("random"), make_method("centre")]
    rows = score_methods(clean_model, list(images), methods, metrics, masks=list(masks),
                         targets=[int(c) for c in labels])
    summary = summarise(rows, metrics)
    for name in EVIDENCE_METHODS:
        for metric in metrics:
            assert summary[name][metric] > summary["random"][metric], (name, metric, summary[name], summary["random"])
            assert summary[name][metric] > summary["centre"][metric], (name, metric, summary[name], summary["centre"])
        assert summary[name]["pointing_game"] >= 5 / 6, (name, summary[name])


def test_clever_hans_model_reveals_its_watermark_shortcut(clean_model):
    shortcut = groundtruth.shapes_model("cleverhans")
    images, _, _, watermarks = groundtruth.make_images(4, seed=77, watermark="class0", watermark_fraction=1.0,
                                                       hue_classes=(1, 2, 3))
    # The premise: on these images the Clever-Hans model follows the watermark, the clean model the hue.
    sizes = shortcut.input_size
    assert (shortcut.predict(images.astype(np.float32)).argmax(axis=1) == 0).all()
    assert (clean_model.predict(images.astype(np.float32)).argmax(axis=1) != 0).all()
    assert sizes == clean_model.input_size
    ratios = clever_hans_ratios(clean_model, shortcut, list(images), list(watermarks),
                                [*evidence_methods(), make_method("random")])
    for name in EVIDENCE_METHODS:
        assert ratios[name]["ratio"] > 3.0, (name, ratios[name])
    np.testing.assert_allclose(ratios["random"]["ratio"], 1.0)  # a map that ignores the model cannot tell them apart


def test_cascading_randomisation_decorrelates_gradcam_but_not_a_model_independent_map(clean_model):
    image = groundtruth.make_images(1, seed=5)[0][0]
    layers = parameterised_layers(clean_model.proto())
    assert [layer.op_type for layer in layers] == ["Conv", "Conv", "Conv", "Conv", "Gemm"]
    gradcam = model_randomisation(clean_model, image, make_method("gradcam"), stages=[1, 3, 5])
    assert [stage["randomised"] for stage in gradcam.stages] == [1, 3, 5]
    assert gradcam.final["spearman_abs"] < 0.3 and gradcam.passes
    centre = model_randomisation(clean_model, image, make_method("centre"), stages=2)
    assert centre.final["spearman_abs"] == pytest.approx(1.0) and not centre.passes
    independent = model_randomisation(clean_model, image, make_method("gradcam"), mode="independent")
    assert [stage["randomised"] for stage in independent.stages][-1] == "all"
    assert len(independent.stages) == len(layers) + 1


def test_similarity_measures_against_hand_values():
    rng = np.random.default_rng(0)
    base = rng.random((32, 32))
    same = similarity(base, base)
    assert same["spearman_abs"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0)
    assert same["hog"] == pytest.approx(1.0)
    flipped = similarity(base, -base)
    assert flipped["spearman"] == pytest.approx(-1.0) and flipped["spearman_abs"] == pytest.approx(1.0)
    unrelated = similarity(base, rng.random((32, 32)))
    assert abs(unrelated["spearman"]) < 0.1


@pytest.mark.slow
def test_zoo_gradcam_decorrelates_under_cascading_randomisation():
    from blackbox_xai import zoo

    result = model_randomisation(zoo.efficientnet_lite0(), zoo.sample_image("chelsea"), make_method("gradcam"),
                                 stages=3)
    assert result.final["randomised"] == 50
    assert result.final["spearman_abs"] < 0.3, result.stages


def test_evaluate_cli_reports_the_library_scores(tmp_path: Path, clean_model):
    images, labels, masks, _ = groundtruth.make_images(2, seed=9)
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    paths = []
    for index, (image, mask) in enumerate(zip(images, masks)):
        path = tmp_path / f"shape{index}.png"
        cv2.imwrite(str(path), image[:, :, ::-1])
        cv2.imwrite(str(mask_dir / f"shape{index}.png"), mask.astype(np.uint8) * 255)
        paths.append(path)
    model_path = groundtruth.models_dir() / "shapes_clean.onnx"
    spec_path = groundtruth.models_dir() / "shapes_clean.spec.json"
    out = tmp_path / "out"
    command = [sys.executable, "-m", "blackbox_xai.cli", "evaluate", str(model_path), *map(str, paths),
               "--spec", str(spec_path), "--method", "gradcam,random", "--metric", "pointing_game,relevance_mass,deletion",
               "--mask", str(mask_dir), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "pointing_game" in result.stdout and "gradcam" in result.stdout
    rows = list(csv.DictReader((out / "evaluation.csv").open()))
    records = json.loads((out / "evaluation.json").read_text())
    assert len(rows) == len(records) == 4
    model = bx.load_model(model_path, spec=spec_path)
    for record in records:
        index = int(Path(record["image"]).stem[-1])
        explanation = bx.explain(model, paths[index], method=record["method"])
        expected = bx.evaluate(model, paths[index], explanation, metrics=["pointing_game", "relevance_mass", "deletion"],
                               mask=masks[index])
        for metric in ("pointing_game", "relevance_mass", "deletion"):
            assert record[metric] == pytest.approx(expected[metric], rel=1e-5)
