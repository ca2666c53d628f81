"""The command line does each piece of work once: an image file is decoded once, whatever the number of methods,
and what the methods are then given is exactly what they would have decoded from the file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import onnx_builders as ob
from blackbox_xai import cli, image as image_module
from blackbox_xai.image import load_image
from blackbox_xai.methods import make_method
from blackbox_xai.model import OnnxModel

SIZE = 24


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_once")
    ob.linear_classifier(root / "linear.onnx", SIZE, SIZE, 3, seed=5, scale=3.0)
    rng = np.random.default_rng(2)
    cv2.imwrite(str(root / "a.png"), rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "b.png"), rng.integers(0, 256, (16, 40, 3), dtype=np.uint8))
    # a nearly black 8-bit image: its float pixels are all <= 1, which load_image would scale as a [0, 1] image
    cv2.imwrite(str(root / "dark.png"), rng.integers(0, 2, (20, 20, 3), dtype=np.uint8))
    masks = root / "masks"
    masks.mkdir()
    for name, shape in (("a", (30, 20)), ("b", (16, 40))):
        mask = np.zeros(shape, np.uint8)
        mask[4:12, 5:15] = 255
        cv2.imwrite(str(masks / f"{name}.png"), mask)
    return root


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files decoded while the test runs (every decode goes through image._decode_file)."""
    seen: list[str] = []
    real = image_module._decode_file

    def counting(path: Path, *args, **kwargs):
        seen.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(image_module, "_decode_file", counting)
    return seen


def test_explain_decodes_each_image_once(folder: Path, tmp_path: Path, decodes: list[str],
                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code = cli.main(["explain", str(folder / "linear.onnx"), str(folder / "a.png"), str(folder / "b.png"),
                     str(folder / "dark.png"), "--method", "rise,occlusion,random", "--param", "n_masks=20",
                     "--param", "occlusion.window=8", "--param", "occlusion.stride=4",
                     "--seed", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert sorted(decodes) == ["a.png", "b.png", "dark.png"]  # not once per method (3 methods)
    # and the maps are those the library makes from the files themselves
    model = OnnxModel(folder / "linear.onnx")
    for stem in ("a", "b", "dark"):
        for method, params in (("rise", {"n_masks": 20, "seed": 1}), ("occlusion", {"window": 8, "stride": 4})):
            expected = make_method(method, **params).explain(model, folder / f"{stem}.png")
            with np.load(out / f"{stem}_{method}.npz") as saved:
                np.testing.assert_array_equal(saved["saliency"], expected.saliency)
            record = json.loads((out / f"{stem}_{method}.json").read_text())
            np.testing.assert_array_equal(np.asarray(record["scores"], np.float32), expected.scores)


def test_evaluate_decodes_each_image_and_mask_once(folder: Path, tmp_path: Path, decodes: list[str],
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "eval"
    code = cli.main(["evaluate", str(folder / "linear.onnx"), str(folder / "a.png"), str(folder / "b.png"),
                     "--method", "occlusion,random", "--param", "occlusion.window=8",
                     "--param", "occlusion.stride=4", "--metric", "deletion,pointing_game",
                     "--mask", str(folder / "masks"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert sorted(decodes) == ["a.png", "a.png", "b.png", "b.png"]  # each image once, each mask once
    rows = json.loads((out / "evaluation.json").read_text())
    assert [(Path(r["image"]).name, r["method"]) for r in rows] == [
        ("a.png", "occlusion"), ("a.png", "random"), ("b.png", "occlusion"), ("b.png", "random")]


def test_decoded_images_load_back_to_the_same_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    files = {
        "eight_bit.png": rng.integers(0, 256, (9, 7, 3), dtype=np.uint8),
        "dark_eight_bit.png": rng.integers(0, 2, (9, 7, 3), dtype=np.uint8),
        "sixteen_bit.png": rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16),
        "dark_sixteen_bit.png": rng.integers(0, 258, (9, 7), dtype=np.uint16),
        "black.png": np.zeros((9, 7), np.uint8),
    }
    paths = []
    for name, array in files.items():
        assert cv2.imwrite(str(tmp_path / name), array)
        paths.append(tmp_path / name)
    decoded = cli.decode_images(paths)
    for path, given in zip(paths, decoded):
        np.testing.assert_array_equal(load_image(given), load_image(path), err_msg=path.name)
    kinds = {path.name: (given.dtype.name if isinstance(given, np.ndarray) else "path")
             for path, given in zip(paths, decoded)}
    assert kinds == {"eight_bit.png": "uint8", "dark_eight_bit.png": "uint8", "sixteen_bit.png": "float32",
                     "dark_sixteen_bit.png": "path", "black.png": "uint8"}
