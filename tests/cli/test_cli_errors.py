"""The command line, run as a user runs it (a subprocess): bad input gives one error line and no output files;
good input gives the documented files with values that match a numpy reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import onnx_builders as ob

SIZE = 48  # model resolution: occlusion's default 32-pixel window at stride 16 gives 2 x 2 = 4 windows
N_CLASSES = 4


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "blackbox_xai.cli", *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
    )


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (hidden temporary files included); [] when it does not exist."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def reference_logits(weights: ob.Linear, pixels: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Logits of the linear NCHW model for RGB pixels (H, W, 3) in [0, 255], value range [0, 1]."""
    pixels = np.asarray(pixels, np.float32)
    if pixels.shape[:2] != (size, size):
        shrink = pixels.shape[0] > size and pixels.shape[1] > size
        pixels = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    x = (pixels.astype(np.float64) / 255.0).transpose(2, 0, 1)[None]
    return weights.logits(x)[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Models and images shared by the tests of this module (never modified by them)."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(7)
    made: dict = {"root": root}
    made["weights"] = ob.linear_classifier(root / "linear.onnx", SIZE, SIZE, N_CLASSES, seed=11, scale=3.0)
    ob.truncated_copy(root / "linear.onnx", root / "truncated.onnx")
    ob.non_image_classifier(root / "vector.onnx", shape=(10,))
    ob.non_image_classifier(root / "seven_channels.onnx", shape=(7, 5, 5))
    ob.nan_classifier(root / "nan.onnx", SIZE, SIZE)
    ob.nan_when_dark_classifier(root / "nan_when_dark.onnx", SIZE, SIZE, threshold=0.25)
    (root / "random.onnx").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (root / "text.onnx").write_text("ir_version: 8\ngraph { node { op_type: 'Relu' } }\n")
    # a bright RGB image (every value >= 100, so nan_when_dark.onnx is finite on it), not at the model size
    rgb = rng.integers(100, 256, (40, 56, 3), dtype=np.uint8)
    assert cv2.imwrite(str(root / "img.png"), rgb[..., ::-1])
    made["rgb"] = rgb
    (root / "fake.png").write_text("this is a text file, not a PNG\n")
    return made


# ---------------------------------------------------------------------------------------------------------------
# Bad input: exit code 1, one line on stderr, no traceback, no output
# ---------------------------------------------------------------------------------------------------------------

BAD_INPUTS = {
    "missing-model": (["missing.onnx", "img.png"], "model file not found"),
    "random-bytes-model": (["random.onnx", "img.png"], "not a valid ONNX model"),
    "text-file-model": (["text.onnx", "img.png"], "not a valid ONNX model"),
    "truncated-model": (["truncated.onnx", "img.png"], "not a valid ONNX model"),
    "folder-as-model": ([".", "img.png"], "folder"),
    "vector-input-model": (["vector.onnx", "img.png"], "not an image input"),
    "seven-channel-model": (["seven_channels.onnx", "img.png"], "not an image input"),
    "undecodable-image": (["linear.onnx", "fake.png"], "cannot decode image"),
    "missing-image": (["linear.onnx", "missing.png"], "image file not found"),
    "good-and-missing-image": (["linear.onnx", "img.png", "missing.png"], "image file not found"),
    "target-out-of-range": (["linear.onnx", "img.png", "--target", "5000"], "out of range"),
    "contrast-target-out-of-range": (["linear.onnx", "img.png", "--target", "1:9"], "out of range"),
    "unreadable-target": (["linear.onnx", "img.png", "--target", "cat"], "cannot read target"),
    "nan-scores": (["nan.onnx", "img.png"], "NaN"),
    "nan-scores-on-perturbed-images": (["nan_when_dark.onnx", "img.png", "--param", "fill=black"], "NaN"),
    "unknown-method": (["linear.onnx", "img.png", "--method", "rise,saliencyxyz"], "unknown method 'saliencyxyz'"),
    "cam-without-spatial-layer": (["linear.onnx", "img.png", "--method", "gradcam"], "no layer for a CAM method"),
    "param-without-value": (["linear.onnx", "img.png", "--param", "n_masks"], "KEY=VALUE"),
    "param-unknown-key": (["linear.onnx", "img.png", "--param", "n_mask=100"], "no selected method takes"),
    "param-not-a-number": (["linear.onnx", "img.png", "--param", "n_masks=abc"], "n_masks"),
    "param-infinite": (["linear.onnx", "img.png", "--param", "n_masks=1e999"], "infinity"),
    "param-out-of-range": (["linear.onnx", "img.png", "--param", "p_keep=1.5"], "p_keep"),
    "param-bad-choice": (["linear.onnx", "img.png", "--param", "fill=purple"], "fill must be one of"),
    "param-for-other-method": (["linear.onnx", "img.png", "--param", "occlusion.window=8"], "not among --method"),
    "param-bad-pair": (["linear.onnx", "img.png", "--method", "occlusion", "--param", "window=ab"], "occlusion"),
    "size-contradicts-model": (["linear.onnx", "img.png", "--size", "32,32"], "contradicts"),
    "bad-mean": (["linear.onnx", "img.png", "--mean", "a,b,c"], "--mean"),
    "missing-spec": (["linear.onnx", "img.png", "--spec", "missing.json"], "spec file not found"),
    "missing-labels": (["linear.onnx", "img.png", "--labels", "missing.txt"], "cannot read labels file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_error_line(files: dict, tmp_path: Path, case: str) -> None:
    args, expected = BAD_INPUTS[case]
    out = tmp_path / "out"
    result = run_cli("explain", *args, "--out", out, cwd=files["root"])
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("blackbox-xai: error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert files_under(out) == []


def test_info_on_a_bad_model_gives_one_error_line(files: dict) -> None:
    for model in ("truncated.onnx", "missing.onnx"):
        result = run_cli("info", model, "--json", cwd=files["root"])
        assert result.returncode == 1
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("blackbox-xai: error: "), result.stderr


def test_info_describes_an_onnx_file_it_cannot_explain(files: dict) -> None:
    """A valid ONNX file that is not an explainable image classifier is described, with one line saying why not
    (issue 13: info describes any ONNX file); only a missing or corrupt file is an error."""
    for model, why in (("vector.onnx", "not an image"), ("nan.onnx", "NaN")):
        result = run_cli("info", model, "--json", cwd=files["root"])
        assert result.returncode == 0, result.stderr
        described = json.loads(result.stdout)
        assert described["explainable"] is False and why in described["reason"], described["reason"]
        text = run_cli("info", model, cwd=files["root"])
        assert text.returncode == 0 and any(line.startswith("explain   no: ") for line in text.stdout.splitlines())


def test_info_says_which_methods_apply(files: dict) -> None:
    result = run_cli("info", files["root"] / "linear.onnx", "--json")
    info = json.loads(result.stdout)
    assert info["capabilities"]["scores"] is None and info["capabilities"]["input-gradients"] is None
    assert info["methods"]["rise"] is None and info["methods"]["gradcam"] is None and info["methods"]["saliency"] is None
    text = run_cli("info", files["root"] / "linear.onnx").stdout
    methods_line = next(line for line in text.splitlines() if line.startswith("methods "))
    assert {"rise", "occlusion", "gradcam", "saliency"} <= set(methods_line[len("methods"):].replace(",", " ").split())


def test_bad_command_line_is_one_line_with_a_hint(files: dict, tmp_path: Path) -> None:
    result = run_cli("explain", "linear.onnx", "img.png", "--seed", "three", "--out", tmp_path / "o",
                     cwd=files["root"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "invalid int value" in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line, no usage dump
    assert "see blackbox-xai explain --help" in result.stderr
    assert files_under(tmp_path / "o") == []


def test_unwritable_output_folder(files: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_cli("explain", "linear.onnx", "img.png", "--method", "occlusion", "--out", blocker / "out",
                     cwd=files["root"])
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("blackbox-xai: error: cannot write"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert blocker.read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------------------------
# Good input
# ---------------------------------------------------------------------------------------------------------------

def test_explain_rise_and_occlusion(files: dict, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = run_cli("explain", files["root"] / "linear.onnx", files["root"] / "img.png", "--method", "rise,occlusion",
                     "--param", "n_masks=200", "--out", out, "--seed", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    expected_files = sorted(f"img_{m}.{e}" for m in ("rise", "occlusion") for e in ("png", "npz", "json"))
    assert files_under(out) == sorted(expected_files + ["img_methods.png"])

    logits = reference_logits(files["weights"], files["rgb"].astype(np.float32))
    top1 = int(np.argmax(logits))
    rise = json.loads((out / "img_rise.json").read_text())
    occlusion = json.loads((out / "img_occlusion.json").read_text())
    for record in (rise, occlusion):
        assert record["target"] == top1
        np.testing.assert_allclose(record["scores"], logits, rtol=1e-4, atol=1e-3)
        assert record["saliency_shape"] == [40, 56]
        assert record["timing"]["batch_size"] == 32
    assert rise["method"] == "rise"
    assert rise["params"]["seed"] == 3 and rise["params"]["n_masks"] == 200
    assert rise["timing"]["forward_passes"] == 200 + 1  # the masks and the clean image
    assert occlusion["method"] == "occlusion"
    assert occlusion["extras"]["windows"] == 4
    assert occlusion["timing"]["forward_passes"] == 4 + 1
    # occlusion's clean score is the softmax probability of the top class
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert occlusion["extras"]["clean_score"] == pytest.approx(probabilities[top1], rel=1e-4)

    for method in ("rise", "occlusion"):
        with np.load(out / f"img_{method}.npz") as data:
            saliency = data["saliency"]
        assert saliency.shape == (40, 56) and saliency.dtype == np.float32 and np.isfinite(saliency).all()
        overlay = cv2.imread(str(out / f"img_{method}.png"), cv2.IMREAD_UNCHANGED)
        assert overlay is not None and overlay.shape[:2] == (40, 56)
    panel = cv2.imread(str(out / "img_methods.png"))
    assert panel is not None and panel.shape[1] > 56
    assert "img: rise" in result.stdout and "201 passes" in result.stdout


def test_a_constant_map_gives_one_warning_line(files: dict, tmp_path: Path) -> None:
    """A model whose scores ignore the image (zero weights) gives occlusion a constant map: the files are still
    written, exit code 0, and stderr holds one warning line saying so (not Python's two-line warning format)."""
    ob.linear_classifier(tmp_path / "flat.onnx", SIZE, SIZE, N_CLASSES, seed=11, scale=0.0)
    # the normalisation is stated beside the model, so that the only warning is the constant map's
    (tmp_path / "flat.spec.json").write_text('{"value_range": [0, 1], "mean": 0, "std": 1}')
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, "-m", "blackbox_xai.cli", "explain", str(tmp_path / "flat.onnx"),
                             str(files["root"] / "img.png"), "--method", "occlusion",
                             "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == ["blackbox-xai: warning: occlusion: the map is constant (0 everywhere), so it shows no evidence: "
                     "nothing the method tried changed the explained score. If the model is saturated (a probability "
                     "that rounds to 1), explain its logits: score='logit' (--param score=logit)."], result.stderr
    assert files_under(out) == sorted(["img_occlusion.png", "img_occlusion.npz", "img_occlusion.json",
                                       "img_methods.png"])


def test_explain_accepts_grayscale_rgba_and_16bit_png(files: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    rgba = rng.integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)  # written as BGRA by cv2
    deep = (rng.integers(0, 256, (SIZE, SIZE, 3)) * 257).astype(np.uint16)  # exact 8-bit values in 16 bits
    deep[0, 0] = (65535, 0, 257)
    for name, array in (("gray", gray), ("rgba", rgba), ("deep", deep)):
        assert cv2.imwrite(str(tmp_path / f"{name}.png"), array)
    expected_pixels = {
        "gray": np.repeat(gray[..., None], 3, axis=2).astype(np.float32),
        "rgba": rgba[..., 2::-1].astype(np.float32),  # BGRA on disk -> RGB
        "deep": deep[..., ::-1].astype(np.float32) / 257.0,  # BGR on disk -> RGB, 65535 -> 255
    }
    out = tmp_path / "out"
    result = run_cli("explain", files["root"] / "linear.onnx", "gray.png", "rgba.png", "deep.png",
                     "--method", "occlusion", "--target", "2", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name, pixels in expected_pixels.items():
        record = json.loads((out / f"{name}_occlusion.json").read_text())
        assert record["target"] == 2 and record["saliency_shape"] == [SIZE, SIZE]
        np.testing.assert_allclose(record["scores"], reference_logits(files["weights"], pixels), rtol=1e-4, atol=1e-3)
        assert (out / f"{name}_methods.png").exists()


def test_info_text_and_json(files: dict) -> None:
    model = files["root"] / "linear.onnx"
    text = run_cli("info", model)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert any(line.split() == ["input", "image", "float32", f"[Nx3x{SIZE}x{SIZE}]"] for line in lines), text.stdout
    assert any(line.split() == ["output", "logits", "float32", f"[Nx{N_CLASSES}]"] for line in lines), text.stdout
    assert "opset ai.onnx 13" in text.stdout
    assert any(line.split()[:2] == ["classes", str(N_CLASSES)] and "(logits)" in line for line in lines)
    assert any(line.startswith("nodes") and "Flatten 1" in line and "Gemm 1" in line for line in lines)

    result = run_cli("info", model, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["inputs"] == [{"name": "image", "shape": ["N", 3, SIZE, SIZE], "dtype": "float32"}]
    assert info["outputs"] == [{"name": "logits", "shape": ["N", N_CLASSES], "dtype": "float32"}]
    assert info["opset"] == {"ai.onnx": ob.OPSET}
    assert info["ops"] == {"Flatten": 1, "Gemm": 1}
    assert info["nodes"] == 2
    assert info["ir_version"] == 8
    assert info["producer"] == "onnx_builders"
    assert info["classes"] == N_CLASSES and info["output_kind"] == "logits"
    assert info["fixed_batch"] is None
    assert info["spec"]["size"] == [SIZE, SIZE] and info["spec"]["layout"] == "NCHW"
    assert info["spec"]["input"] == "image" and info["spec"]["dtype"] == "float32"


def test_info_applies_the_spec_file(files: dict, tmp_path: Path) -> None:
    ob.two_output_classifier(tmp_path / "two.onnx", n_first=6, n_second=3)
    (tmp_path / "names.txt").write_text("red\ngreen\nblue\n")
    (tmp_path / "spec.json").write_text(json.dumps({"output": "logits", "channel_order": "BGR", "labels": "names.txt",
                                                    "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}))
    result = run_cli("info", tmp_path / "two.onnx", "--spec", tmp_path / "spec.json", "--json", cwd=files["root"])
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["classes"] == 3 and info["spec"]["output"] == "logits" and info["spec"]["channel_order"] == "BGR"
    assert Path(info["spec"]["labels"]) == tmp_path / "names.txt"
    assert info["spec"]["mean"] == [0.5] * 3 and info["spec"]["std"] == [0.25] * 3
    # a flag overrides the file
    result = run_cli("info", tmp_path / "two.onnx", "--spec", tmp_path / "spec.json", "--output", "0",
                     "--labels", tmp_path / "names.txt", cwd=files["root"])
    assert result.returncode == 1
    assert result.stderr.startswith("blackbox-xai: error: labels file has 3 names but the model has 6 outputs")


def test_evaluate_writes_what_succeeded_and_lists_the_failures(files: dict, tmp_path: Path) -> None:
    """One method failing (RISE's black fill makes the model's scores NaN) does not lose the other method's rows:
    they are written, the failure is one line at the end, exit 1."""
    out = tmp_path / "report"
    result = run_cli("evaluate", "nan_when_dark.onnx", "img.png", "--method", "rise,random", "--seed", "0",
                     "--param", "rise.fill=black", "--param", "rise.n_masks=20", "--metric", "sparseness",
                     "--out", out, cwd=files["root"])
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "1 of 2 explanations failed (img rise)" in lines[0] and "NaN" in lines[0], lines
    rows = json.loads((out / "evaluation.json").read_text())
    assert [row["method"] for row in rows] == ["random"] and 0.0 <= rows[0]["sparseness"] <= 1.0
