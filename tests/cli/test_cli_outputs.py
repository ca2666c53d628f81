"""The command line's pieces, in-process: parameter parsing, argv handling, exit codes of bugs, per-method failures,
an image's files complete or absent (staging, rollback), provenance, and the bounded size of rendered images."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

import onnx_builders as ob
from blackbox_xai import cli
from blackbox_xai.cli import commands
from blackbox_xai.cli.options import method_params, parse_value
from blackbox_xai.cli.parser import join_dash_values, split_debug
from blackbox_xai.errors import ParameterError, ScoreError
from blackbox_xai.fileio import FileSet
from blackbox_xai.explanation import Explanation, array_sha256, record_provenance
from blackbox_xai.methods import Occlusion
from blackbox_xai.model import OnnxModel
from blackbox_xai.render import MAX_RENDER_PIXELS, MAX_RENDER_SIDE, bounded_size, heatmap, overlay, side_by_side

SIZE = 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_outputs")
    ob.linear_classifier(root / "linear.onnx", SIZE, SIZE, 3, seed=5, scale=3.0)
    rng = np.random.default_rng(8)
    for name, shape in (("a.png", (20, 18, 3)), ("b.png", (14, 22, 3))):
        cv2.imwrite(str(root / name), rng.integers(0, 256, shape, dtype=np.uint8))
    return root


# --- parameters and argv -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("3", 3), ("-2", -2), ("1.5", 1.5), ("1e3", 1000.0), ("true", True), ("False", False), ("none", None),
    ("null", None), ("0.1,0.2", (0.1, 0.2)), ("1,2,3", (1, 2, 3)), ("[0.1, 0.2]", (0.1, 0.2)), ("a,b", ("a", "b")),
    ("logit", "logit"), ("black", "black"), ("3,", (3,)),
])
def test_param_values_parse(raw: str, expected: object) -> None:
    value = parse_value(raw)
    assert value == expected and type(value) is type(expected)


def test_params_reach_the_right_methods() -> None:
    params = method_params(["rise", "occlusion"], ["n_masks=4e1", "occlusion.window=8", "rise.p_keep=0.25"],
                           seed=7)
    assert params == {"rise": {"n_masks": 40, "p_keep": 0.25, "seed": 7}, "occlusion": {"window": 8}}
    assert type(params["rise"]["n_masks"]) is int
    assert method_params(["occlusion"], [], seed=3) == {"occlusion": {}}  # --seed ignored, not refused
    with pytest.raises(ParameterError, match="no selected method takes a layer"):
        method_params(["rise"], [], None, layer="conv")
    assert method_params(["rise", "gradcam"], [], 2, layer="conv") == {"rise": {"seed": 2},
                                                                       "gradcam": {"layer": "conv"}}
    assert method_params(["extremal"], ["areas=0.1,0.2"], None)["extremal"]["areas"] == (0.1, 0.2)


@pytest.mark.parametrize("item, message", [
    ("n_masks=1.5", "n_masks must be an integer, got 1.5"), ("seed=1.5", "seed must be an integer"),
    ("seed=-1", "non-negative"), ("n_masks=true", "must be an integer, got True"),
    ("n_masks=inf", "got infinity"), ("nope=1", "no selected method takes 'nope'"), ("=1", "the key is empty"),
    ("occlusion.window=3", "not among --method"), ("cells=[1,", "cannot read list"),
])
def test_bad_params_are_refused(item: str, message: str) -> None:
    with pytest.raises(ParameterError, match=None) as caught:
        method_params(["rise"], [item], None)
    assert message in str(caught.value)
    with pytest.raises(ParameterError, match="non-negative"):
        method_params(["rise"], [], -1)


def test_argv_handling() -> None:
    assert split_debug(["explain", "m.onnx", "--debug", "x.png"]) == (["explain", "m.onnx", "x.png"], True)
    assert split_debug(["--debug", "info", "m"]) == (["info", "m"], True)
    assert split_debug(["info", "m", "--", "--debug"]) == (["info", "m", "--", "--debug"], False)
    assert join_dash_values(["--std", "-1,1,1", "--seed", "-1", "--target", "top1", "--mean", "-.5"]) == [
        "--std=-1,1,1", "--seed=-1", "--target", "top1", "--mean=-.5"]


# --- exit codes ----------------------------------------------------------------------------------------------------

def test_a_bug_exits_3_with_one_line_and_the_traceback_only_with_debug(folder: Path, monkeypatch, capsys) -> None:
    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setitem(commands.HANDLERS, "info", broken)
    assert cli.main(["info", str(folder / "linear.onnx")]) == 3
    err = capsys.readouterr().err
    assert err.splitlines() == ["blackbox-xai: internal error: RuntimeError: boom second line (a bug in "
                                "blackbox-xai: please report it; rerun with --debug for the traceback)"]
    assert cli.main(["info", str(folder / "linear.onnx"), "--debug"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err and "please report" in err.splitlines()[-1]


def test_usage_errors_exit_1_in_one_line(capsys) -> None:
    assert cli.main(["explain"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["blackbox-xai: error: the following arguments are required: model, images "
                                "(see blackbox-xai explain --help)"]


def test_a_failing_method_does_not_lose_the_others(folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def failing(self, model, image, target="top1", progress=None):
        raise ScoreError("model returned NaN (test)")

    monkeypatch.setattr(Occlusion, "explain", failing)
    out = tmp_path / "out"
    code = cli.main(["explain", str(folder / "linear.onnx"), str(folder / "a.png"), str(folder / "b.png"),
                     "--method", "rise,occlusion", "--param", "n_masks=20", "--out", str(out)])
    assert code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "normalisation assumed" not in line]
    assert err == ["blackbox-xai: error: 2 of 4 explanations failed (a occlusion, b occlusion); the others were "
                   "written; a occlusion: model returned NaN (test)"]
    assert sorted(os.listdir(out)) == sorted(f"{s}_{f}" for s in "ab"
                                             for f in ("rise.png", "rise.npz", "rise.json", "methods.png"))


# --- complete or absent ------------------------------------------------------------------------------------------

def test_image_outputs_roll_back_and_restore(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "x_rise.png").write_bytes(b"earlier run")
    files = FileSet(out, "x")
    files.add({"x_rise.png": b"new", "x_rise.json": b"{}"})
    assert (out / "x_rise.png").read_bytes() == b"new"  # visible as soon as the method finishes
    files.discard()
    assert sorted(os.listdir(out)) == ["x_rise.png"] and (out / "x_rise.png").read_bytes() == b"earlier run"

    files = FileSet(out, "x")
    files.add({"x_rise.png": b"new"})
    files.add({"x_methods.png": b"panel"})
    files.finish()
    assert sorted(os.listdir(out)) == ["x_methods.png", "x_rise.png"]  # no staging folder left
    old = os.umask(0o022)
    try:
        files = FileSet(out, "y")
        files.add({"y_rise.json": b"{}"})
        files.finish()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out / "y_rise.json").st_mode) == 0o644


def test_explanation_json_records_provenance(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert cli.main(["explain", str(folder / "linear.onnx"), str(folder / "a.png"), "--method", "occlusion",
                     "--param", "window=8", "--param", "stride=4", "--out", str(out)]) == 0
    record = json.loads((out / "a_occlusion.json").read_text())
    assert record["source"] == str(folder / "a.png")
    assert record["image_sha256"] == hashlib.sha256((folder / "a.png").read_bytes()).hexdigest()
    assert record["model_sha256"] == hashlib.sha256((folder / "linear.onnx").read_bytes()).hexdigest()
    assert record["spec"]["size"] == [SIZE, SIZE] and record["spec"]["layout"] == "NCHW"
    loaded = Explanation.load(out / "a_occlusion")
    assert (loaded.source, loaded.image_sha256, loaded.model_sha256) == (
        record["source"], record["image_sha256"], record["model_sha256"])

    model = OnnxModel(folder / "linear.onnx")
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    explanation = record_provenance(Explanation(np.zeros((2, 3), np.float32), 0, "x"), image=pixels, model=model)
    assert explanation.source == "array 2x3x3 uint8"
    assert explanation.image_sha256 == hashlib.sha256(bytes(range(18))).hexdigest() == array_sha256(pixels)
    assert explanation.model_sha256 == record["model_sha256"]


# --- bounded rendering -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3000), (3000, 2), (1, 5000), (1, 100_000), (100_000, 1), (5000, 4500),
                                   (40, 56)])
def test_rendered_images_are_bounded(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3)).astype(np.float32)
    saliency = rng.random(shape, dtype=np.float32)
    for rendered in (overlay(image, saliency), heatmap(saliency)):
        height, width = rendered.shape[:2]
        assert max(height, width) <= MAX_RENDER_SIDE and height * width <= MAX_RENDER_PIXELS
        assert (height, width) == bounded_size(*shape)
        if shape[0] >= 100 and shape[1] >= 100:  # aspect ratio kept (to a pixel) where both sides allow it
            assert abs(width / height - shape[1] / shape[0]) < 2 / min(height, width)
    panel = side_by_side(image, [saliency] * 3, ["a", "b", "c"])
    assert panel.shape[0] == 256 + 24 and panel.shape[1] <= MAX_RENDER_SIDE
    if shape == (40, 56):  # within the limits the tile keeps the image's aspect ratio exactly
        assert panel.shape[1] == 4 * round(56 * 256 / 40) + 3 * 4


def test_bounded_overlay_is_the_overlay_of_the_shrunk_image() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (8, 5000, 3)).astype(np.float32)
    saliency = rng.random((8, 5000), dtype=np.float32)
    height, width = bounded_size(8, 5000)
    assert (height, width) == (6, 4096)
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    small_map = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(overlay(image, saliency), overlay(small, small_map))
