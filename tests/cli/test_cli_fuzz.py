"""Fuzz suite of the command line: bad and odd models, images, spec files, parameters, targets, output folders, a
full disk and Ctrl-C, each asserted for: the exit code (1 for bad input, never 3), no traceback, at most two lines
on stderr, no partial output set (an image's files are complete or absent, no hidden staging file is left), and for
odd inputs that are accepted, the scores recorded in the JSON against a numpy reference.

All the in-process cases run in ONE subprocess (this file run as a script: ``python test_cli_fuzz.py CASES OUT``),
each with its own stdout/stderr capture and output folder, so the import cost is paid once; faults (a full disk,
SIGINT while a method runs or while files are written) are injected there by monkeypatching the writer's
``open`` or the model's ``predict``. A real tmpfs (full disk) and a real SIGINT from outside are separate tests.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

SIZE = 24
N_CLASSES = 4
LABELS = ["alpha", "bravo", "charlie", "delta"]
RISE = ["--method", "rise", "--param", "n_masks=50", "--seed", "0"]

# ---------------------------------------------------------------------------------------------------------------
# The cases: id -> (arguments after "explain" unless they start with a subcommand, expected exit code, fault)
# {o} is the case's output folder. Paths are relative to the fixture's folder.
# ---------------------------------------------------------------------------------------------------------------

BAD_MODELS = {
    "model-missing": "missing.onnx", "model-random-bytes": "random.onnx", "model-text": "text.onnx",
    "model-truncated": "truncated.onnx", "model-empty-file": "empty.onnx", "model-folder": "somefolder",
    "model-vector-input": "vector.onnx", "model-seven-channels": "seven.onnx", "model-nan-scores": "nan.onnx",
    "model-huge-declared-input": "huge_input.onnx", "model-is-an-image": "img.png",
}
BAD_IMAGES = {
    "image-missing": ["missing.png"], "image-text-as-png": ["fake.png"], "image-empty-file": ["empty.png"],
    "image-truncated-png": ["truncated.png"], "image-huge-declared-png": ["bomb.png"],
    "image-npy-object": ["object.npy"], "image-npy-4d": ["four_d.npy"], "image-npy-empty": ["zero.npy"],
    "image-url": ["https://example.com/cat.jpg"], "image-folder-without-images": ["nothing_here"],
    "image-folder-needs-recursive": ["nested"], "image-glob-no-match": ["*.nomatch"],
    "image-double-star-without-recursive": ["nested/**/*.png"], "image-good-then-missing": ["img.png", "gone.png"],
}
BAD_PARAMS = {
    "param-fraction-n-masks": ["--param", "n_masks=1.5"], "param-fraction-seed": ["--param", "seed=1.5"],
    "param-negative-seed": ["--param", "seed=-1"], "param-zero-n-masks": ["--param", "n_masks=0"],
    "param-text-n-masks": ["--param", "n_masks=abc"], "param-infinite": ["--param", "n_masks=1e999"],
    "param-nan": ["--param", "n_masks=nan"], "param-p-keep-2": ["--param", "p_keep=2"],
    "param-unknown-key": ["--param", "n_mask=10"], "param-no-value": ["--param", "n_masks"],
    "param-empty-key": ["--param", "=3"], "param-areas-for-rise": ["--param", "areas=0.1,0.2"],
    "param-bad-score": ["--param", "score=bogus"], "param-bad-fill": ["--param", "fill=purple"],
    "param-other-method": ["--param", "occlusion.window=8"], "param-bad-json-list": ["--param", "cells=[1,"],
    "param-bool-for-int": ["--param", "n_masks=true"], "param-list-for-int": ["--param", "n_masks=1,2"],
    "seed-negative": ["--seed", "-1"], "method-empty": ["--method", ""], "method-commas": ["--method", ",,"],
    "method-unknown": ["--method", "rise,nope"], "method-cam-without-layer": ["--method", "gradcam"],
    "occlusion-window-zero": ["--method", "occlusion", "--param", "window=0"],
    "occlusion-window-fraction": ["--method", "occlusion", "--param", "window=1.5"],
    "occlusion-stride-negative": ["--method", "occlusion", "--param", "stride=-1"],
    "extremal-areas-text": ["--method", "extremal", "--param", "areas=a,b"],
    "lime-n-samples-fraction": ["--method", "lime", "--param", "n_samples=2.5"],
}
BAD_TARGETS = {
    "target-empty": "", "target-name-without-labels": "cat", "target-out-of-range": "5000",
    "target-negative": "-1", "target-same-contrast": "1:1", "target-contrast-out-of-range": "1:9",
    "target-top0": "top0", "target-top99": "top99", "target-names-list": "a,b", "target-only-commas": ",,",
    "target-three-way-contrast": "1:2:3", "target-topk-in-list": "top2,1",
}
BAD_FLAGS = {
    "size-zero": ["--size", "0,0"], "size-fraction": ["--size", "1.5,2"], "size-one-number": ["--size", "5"],
    "size-contradicts": ["--size", "32,32"], "mean-text": ["--mean", "a,b,c"], "mean-nan": ["--mean", "nan,1,1"],
    "mean-two-values": ["--mean", "1,2"], "std-zero": ["--std", "0,1,1"], "std-negative": ["--std", "-1,1,1"],
    "std-infinite": ["--std", "inf"], "batch-size-zero": ["--batch-size", "0"],
    "batch-size-negative": ["--batch-size", "-2"], "provider-unknown": ["--provider", "bogus"],
    "output-index-out-of-range": ["--output", "99"], "output-unknown-name": ["--output", "nope"],
    "input-unknown-name": ["--input", "nope"], "labels-missing": ["--labels", "missing.txt"],
    "labels-binary": ["--labels", "binary.txt"], "labels-wrong-count": ["--labels", "three_labels.txt"],
    "labels-folder": ["--labels", "somefolder"], "labels-empty-text": ["--labels", ""],
    "spec-empty-text": ["--spec", ""], "input-empty-text": ["--input", ""],
}
BAD_SPECS = {
    "spec-missing": "missing.json", "spec-bad-json": "bad.json", "spec-list": "list.json",
    "spec-binary": "binary.txt", "spec-folder": "somefolder", "spec-unknown-key": "unknown_key.json",
    "spec-size-contradicts": "size_contradicts.json", "spec-zero-std": "zero_std.json",
    "spec-mean-text": "mean_text.json",
}
USAGE = {
    "usage-nothing": [], "usage-unknown-command": ["explode"], "usage-unknown-option": ["explain", "--frobnicate"],
    "usage-no-images": ["explain", "linear.onnx"], "usage-seed-text": ["explain", "linear.onnx", "img.png",
                                                                       "--seed", "three"],
    "usage-batch-size-text": ["explain", "linear.onnx", "img.png", "--batch-size", "x"],
    "usage-value-range": ["explain", "linear.onnx", "img.png", "--value-range", "2"],
    "usage-layout": ["info", "linear.onnx", "--layout", "NWHC"],
    "usage-debug-after-command": ["explain", "missing.onnx", "img.png", "--debug"],
    "usage-info-bad-model": ["info", "truncated.onnx"], "usage-layers-bad-model": ["layers", "random.onnx"],
    "usage-evaluate-bad-metric": ["evaluate", "linear.onnx", "img.png", "--metric", "nope"],
    "usage-evaluate-mask-count": ["evaluate", "linear.onnx", "img.png", "--mask", "a.png", "--mask", "b.png"],
    "usage-evaluate-mask-folder-missing": ["evaluate", "linear.onnx", "img.png", "--mask", "nothing_here"],
    "usage-abbreviated-option": ["info", "linear.onnx", "--out", "x"],
    "usage-unknown-option-after-images": ["explain", "linear.onnx", "img.png", "--frobnicate"],
    "usage-out-empty-text": ["explain", "linear.onnx", "img.png", "--out", ""],
}
OUTPUTS = {
    "out-file-in-place": "a_file", "out-under-a-file": "a_file/sub", "out-under-dev-null": "/dev/null/out",
}
FAULTS = {  # id -> (fault, expected exit code, complete image sets expected before the fault)
    "full-disk-first-write": ("enospc:0", 1, 0), "full-disk-after-100-bytes": ("enospc:100", 1, 0),
    "full-disk-after-20-kB": ("enospc:20000", 1, 0), "full-disk-after-600-kB": ("enospc:600000", 1, 1),
    "full-disk-after-900-kB": ("enospc:900000", 1, 2),
    "sigint-first-forward-pass": ("sigint-predict:1", 130, 0), "sigint-later-forward-pass": ("sigint-predict:4", 130, 0),
    "sigint-first-write": ("sigint-write:1", 130, 0), "sigint-fifth-write": ("sigint-write:5", 130, 0),
    "sigint-write-of-second-image": ("sigint-write:9", 130, 1), "sigint-last-write": ("sigint-write:21", 130, 2),
}
# Odd inputs that are accepted: id -> (image arguments, extra arguments, {output name: reference image key})
ACCEPTED = {
    "ok-plain": (["img.png"], [], {"img": "img"}),
    "ok-strip-1x5000": (["strip.png"], [], {"strip": "strip"}),
    "ok-16-bit": (["deep.png"], [], {"deep": "deep"}),
    "ok-gray": (["gray.png"], [], {"gray": "gray"}),
    "ok-npy-uint8": (["arr.npy"], [], {"arr": "arr"}),
    "ok-npy-float01": (["arr01.npy"], [], {"arr01": "arr01"}),
    "ok-animated-gif-first-frame": (["anim.gif"], [], {"anim": "anim"}),
    "ok-exif-rotated-jpeg": (["exif.jpg"], [], {"exif": "exif"}),
    "ok-same-stem-two-folders": (["a/x.png", "b/x.png"], [], {"a_x": "ax", "b_x": "bx"}),
    "ok-same-stem-two-formats": (["img.png", "img.npy"], [], {"img_png": "img", "img_npy": "arr_img"}),
    "ok-folder": (["pics"], [], {"p1": "p1", "p2": "p2"}),
    "ok-folder-recursive": (["nested", "--recursive"], [], {"deep1": "deep1"}),
    "ok-quoted-glob": (["pics/*.png"], [], {"p1": "p1", "p2": "p2"}),
    "ok-target-name": (["img.png"], ["--labels", "labels.txt", "--target", "BRAVO"], {"img": "img"}),
    "ok-target-top2": (["img.png"], ["--target", "top2"], {"img": "img"}),
    "ok-target-contrast": (["img.png"], ["--target", "0:3"], {"img": "img"}),
    "ok-seed-to-takers-only": (["img.png"], ["--method", "rise,occlusion", "--seed", "3", "--param",
                                             "rise.n_masks=30"], {"img": "img"}),
    "ok-integral-float-param": (["img.png"], ["--param", "n_masks=4e1"], {"img": "img"}),
    "ok-areas-list": (["img.png"], ["--method", "extremal", "--param", "areas=0.1,0.2",
                                    "--param", "iterations=3"], {"img": "img"}),
    "ok-debug-anywhere": (["img.png", "--debug"], [], {"img": "img"}),
}


def _cases() -> dict[str, dict]:
    cases: dict[str, dict] = {}
    for case, model in BAD_MODELS.items():
        cases[case] = {"argv": ["explain", model, "img.png", *RISE, "--out", "{o}"], "code": 1}
    for case, images in BAD_IMAGES.items():
        cases[case] = {"argv": ["explain", "linear.onnx", *images, *RISE, "--out", "{o}"], "code": 1}
    for case, extra in BAD_PARAMS.items():
        base = [] if "--method" in extra else ["--method", "rise"]
        cases[case] = {"argv": ["explain", "linear.onnx", "img.png", *base, *extra, "--out", "{o}"], "code": 1}
    for case, target in BAD_TARGETS.items():
        cases[case] = {"argv": ["explain", "linear.onnx", "img.png", *RISE, "--target", target, "--out", "{o}"],
                       "code": 1}
    for case, extra in BAD_FLAGS.items():
        cases[case] = {"argv": ["explain", "linear.onnx", "img.png", *RISE, *extra, "--out", "{o}"], "code": 1}
    for case, spec in BAD_SPECS.items():
        cases[case] = {"argv": ["explain", "linear.onnx", "img.png", *RISE, "--spec", spec, "--out", "{o}"],
                       "code": 1}
    for case, argv in USAGE.items():
        out = ["--out", "{o}"] if argv[:1] in (["explain"], ["evaluate"]) and "--out" not in argv else []
        cases[case] = {"argv": [*argv, *out], "code": 1}
    for case, out in OUTPUTS.items():
        cases[case] = {"argv": ["explain", "linear.onnx", "img.png", *RISE, "--out", out], "code": 1,
                       "out": out}
    for case, (fault, code, complete) in FAULTS.items():
        cases[case] = {"argv": ["explain", "linear.onnx", "img.png", "gray.png", "deep.png", "--method",
                                "rise,occlusion", "--param", "n_masks=40", "--param", "occlusion.window=8", "--param", "occlusion.stride=4",
                                "--out", "{o}"], "code": code, "fault": fault, "complete": complete}
    for case, (images, extra, _) in ACCEPTED.items():
        method = [] if "--method" in extra else RISE
        cases[case] = {"argv": ["explain", "linear.onnx", *images, *method, *extra, "--out", "{o}"], "code": 0}
    return cases


CASES = _cases()


# ---------------------------------------------------------------------------------------------------------------
# The driver (this file run as a script): every case in-process, one after the other
# ---------------------------------------------------------------------------------------------------------------

def _run_cases(case_file: str, result_file: str) -> None:
    from blackbox_xai import cli, fileio
    from blackbox_xai.model import OnnxModel

    request = json.loads(Path(case_file).read_text())
    root = Path(request["root"])
    results = {}
    for case, spec in request["cases"].items():
        os.chdir(root)
        out = root / "outputs" / case
        argv = [a.replace("{o}", str(out)) for a in spec["argv"]]
        stdout, stderr = io.StringIO(), io.StringIO()
        undo = _inject(spec.get("fault"), fileio, OnnxModel)
        logging.root.handlers.clear()  # so that logging writes to this case's stderr
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    code: object = cli.main(argv)
                except SystemExit as exit_:
                    code = f"SystemExit({exit_.code})"
                except BaseException as error:  # noqa: BLE001 - anything escaping main is a finding
                    code = f"escaped {type(error).__name__}: {error}"
        finally:
            undo()
        results[case] = {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "out": str(out)}
    Path(result_file).write_text(json.dumps(results))


def _inject(fault: str | None, fileio, model_class):
    """Install the fault ``kind:N``; returns the function that removes it."""
    if not fault:
        return lambda: None
    kind, count = fault.split(":")
    limit = int(count)
    if kind == "enospc":  # the file system is full after `limit` bytes have been written
        written = [0]
        real_open = open

        class Full:
            def __init__(self, stream):
                self.stream = stream

            def write(self, data):
                written[0] += len(data)
                if written[0] > limit:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return self.stream.write(data)

            def __getattr__(self, name):
                return getattr(self.stream, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self.stream.__exit__(*exc)

        fileio.open = lambda *args, **kwargs: Full(real_open(*args, **kwargs))
        return lambda: delattr(fileio, "open")
    calls = [0]

    def interrupt_on_call() -> None:
        calls[0] += 1
        if calls[0] == limit:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the KeyboardInterrupt is raised here

    if kind == "sigint-write":  # Ctrl-C as the N-th file of the run is written
        real_write = fileio.write_atomic

        def write(*args, **kwargs):
            interrupt_on_call()
            return real_write(*args, **kwargs)

        fileio.write_atomic = write
        return lambda: setattr(fileio, "write_atomic", real_write)
    real_predict = model_class.predict

    def predict(self, *args, **kwargs):
        interrupt_on_call()
        return real_predict(self, *args, **kwargs)

    model_class.predict = predict
    return lambda: setattr(model_class, "predict", real_predict)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: the files every case uses, built once
# ---------------------------------------------------------------------------------------------------------------

def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width x height 8-bit RGB pixels, with one tiny (wrong) data chunk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _huge_input_model(path: Path) -> None:
    """A valid model that declares a 50000x50000 input (global average pooling, then a 3 -> 4 Gemm)."""
    import onnx_builders as ob
    from onnx import TensorProto, helper, numpy_helper

    weights = np.ones((N_CLASSES, 3), np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1)],
        "huge", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 50000, 50000])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", N_CLASSES])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.zeros(N_CLASSES, np.float32),
                                                                                   "b")])
    ob._save(ob._make_model(graph), path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import onnx_builders as ob
    from PIL import Image

    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(21)
    refs: dict[str, np.ndarray] = {}
    weights = ob.linear_classifier(root / "linear.onnx", SIZE, SIZE, N_CLASSES, seed=4, scale=3.0)
    # its normalisation stated beside it (what the model was built with), so that no "assumed" warning line is added
    (root / "linear.spec.json").write_text('{"value_range": [0, 1], "mean": 0, "std": 1}')
    ob.truncated_copy(root / "linear.onnx", root / "truncated.onnx")
    ob.non_image_classifier(root / "vector.onnx", shape=(10,))
    ob.non_image_classifier(root / "seven.onnx", shape=(7, 5, 5))
    ob.nan_classifier(root / "nan.onnx", SIZE, SIZE)
    _huge_input_model(root / "huge_input.onnx")
    (root / "random.onnx").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (root / "text.onnx").write_text("ir_version: 8\n")
    (root / "empty.onnx").write_bytes(b"")
    (root / "empty.png").write_bytes(b"")
    (root / "somefolder").mkdir()
    (root / "nothing_here").mkdir()
    (root / "a_file").write_text("not a folder")

    def image(name: str, array: np.ndarray, key: str | None = None) -> None:
        assert cv2.imwrite(str(root / name), array)
        refs[key or Path(name).stem] = _rgb(array)

    image("img.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    image("strip.png", rng.integers(0, 256, (1, 5000, 3), dtype=np.uint8))
    image("gray.png", rng.integers(0, 256, (26, 22), dtype=np.uint8))
    deep = (rng.integers(0, 256, (18, 28, 3)) * 257).astype(np.uint16)
    assert cv2.imwrite(str(root / "deep.png"), deep)
    refs["deep"] = deep[..., ::-1].astype(np.float32) / 257.0
    (root / "truncated.png").write_bytes((root / "img.png").read_bytes()[:60])
    (root / "fake.png").write_text("not a PNG\n")
    _png_header_only(root / "bomb.png", 100_000, 100_000)
    array = rng.integers(0, 256, (22, 26, 3), dtype=np.uint8)
    np.save(root / "arr.npy", array)
    refs["arr"] = array.astype(np.float32)
    unit = rng.random((25, 21, 3)).astype(np.float32)
    np.save(root / "arr01.npy", unit)
    refs["arr01"] = unit * 255.0
    np.save(root / "img.npy", refs["img"].astype(np.uint8))
    refs["arr_img"] = refs["img"]
    np.save(root / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(root / "four_d.npy", np.zeros((2, 5, 5, 3), np.uint8))
    np.save(root / "zero.npy", np.zeros((0, 5, 3), np.uint8))
    frames = [Image.fromarray(np.full((20, 24, 3), c, np.uint8)) for c in ((200, 40, 40), (40, 200, 40))]
    frames[0].paste(Image.fromarray(rng.integers(0, 2, (10, 12, 3), dtype=np.uint8) * 255), (4, 4))
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(root / "anim.gif") as gif:
        refs["anim"] = np.asarray(gif.convert("RGB"), np.float32)
    photo = np.kron(rng.integers(0, 256, (4, 6, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 32x48 blocks
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(photo).save(root / "exif.jpg", quality=100, subsampling=0, exif=exif)
    with Image.open(root / "exif.jpg") as jpeg:
        from PIL import ImageOps
        refs["exif"] = np.asarray(ImageOps.exif_transpose(jpeg).convert("RGB"), np.float32)
    for folder in ("a", "b", "pics", "nested/inner"):
        (root / folder).mkdir(parents=True)
    image("a/x.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8), "ax")
    image("b/x.png", rng.integers(0, 256, (21, 19, 3), dtype=np.uint8), "bx")
    image("pics/p1.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), "p1")
    image("pics/p2.png", rng.integers(0, 256, (30, 18, 3), dtype=np.uint8), "p2")
    image("nested/inner/deep1.png", rng.integers(0, 256, (17, 25, 3), dtype=np.uint8), "deep1")
    (root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (root / "three_labels.txt").write_text("x\ny\nz\n")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (root / "bad.json").write_text("{not json")
    (root / "list.json").write_text("[1, 2]")
    (root / "unknown_key.json").write_text(json.dumps({"sise": [24, 24]}))
    (root / "size_contradicts.json").write_text(json.dumps({"size": [32, 32]}))
    (root / "zero_std.json").write_text(json.dumps({"std": [0, 1, 1]}))
    (root / "mean_text.json").write_text(json.dumps({"mean": "grey"}))
    cv2.imwrite(str(root / "a.png"), np.zeros((20, 30), np.uint8))
    cv2.imwrite(str(root / "b.png"), np.zeros((20, 30), np.uint8))
    return {"root": root, "weights": weights, "refs": refs}


def _rgb(array: np.ndarray) -> np.ndarray:
    """RGB float pixels of an array written with cv2.imwrite (BGR, or grey)."""
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2).astype(np.float32)
    return array[..., ::-1].astype(np.float32)


def reference_logits(weights, pixels: np.ndarray) -> np.ndarray:
    """The linear model's logits for RGB pixels in [0, 255] (resized as the library resizes: area when shrinking
    both sides, else bilinear), value range [0, 1], NCHW."""
    pixels = np.asarray(pixels, np.float32)
    if pixels.shape[:2] != (SIZE, SIZE):
        shrink = pixels.shape[0] > SIZE and pixels.shape[1] > SIZE
        pixels = cv2.resize(pixels, (SIZE, SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return weights.logits((pixels.astype(np.float64) / 255.0).transpose(2, 0, 1)[None])[0]


@pytest.fixture(scope="module")
def results(world: dict) -> dict:
    """Every case run by one driver subprocess; the wall time is printed (pytest -s shows it)."""
    root = world["root"]
    (root / "cases.json").write_text(json.dumps({"root": str(root), "cases": CASES}))
    began = time.perf_counter()
    env = dict(os.environ, PYTHONWARNINGS="default", PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1]),
         os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, __file__, str(root / "cases.json"), str(root / "results.json")],
                          capture_output=True, text=True, timeout=900, env=env, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\nfuzz driver: {len(CASES)} cases in {time.perf_counter() - began:.1f} s")
    return json.loads((root / "results.json").read_text())


def test_at_least_100_cases() -> None:
    assert len(CASES) >= 100, len(CASES)


def _incomplete_sets(out: Path) -> list[str]:
    """What makes the output folder not a union of complete image sets: hidden (staging or temporary) entries,
    a method whose png/npz/json are not all there, a panel without methods or methods without a panel."""
    if not out.is_dir():
        return []
    problems = [p.name for p in out.iterdir() if p.name.startswith(".")]
    names = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith("."))
    methods: dict[str, set[str]] = {}
    panels = {n[: -len("_methods.png")] for n in names if n.endswith("_methods.png")}
    for name in names:
        if name.endswith("_methods.png"):
            continue
        stem, suffix = os.path.splitext(name)
        methods.setdefault(stem, set()).add(suffix)
    for stem, suffixes in methods.items():
        if suffixes != {".png", ".npz", ".json"}:
            problems.append(f"{stem}: {sorted(suffixes)}")
        if not any(stem.startswith(panel + "_") for panel in panels):
            problems.append(f"{stem}: no panel")
    for panel in panels:
        if not any(stem.startswith(panel + "_") for stem in methods):
            problems.append(f"{panel}_methods.png without method files")
    return problems


@pytest.mark.parametrize("case", list(CASES))
def test_case(case: str, results: dict, world: dict) -> None:
    spec, result = CASES[case], results[case]
    expected = spec["code"]
    text = result["stdout"] + result["stderr"]
    assert result["code"] == expected, (result["code"], result["stderr"])
    assert "Traceback" not in text, text
    lines = result["stderr"].splitlines()
    assert len(lines) <= 2, result["stderr"]
    out = Path(spec["out"]) if "out" in spec else Path(result["out"])
    if not out.is_absolute():
        out = world["root"] / out
    assert _incomplete_sets(out) == [], text
    if "complete" in spec:  # the images finished before the fault keep their whole set
        panels = sorted(p.name for p in out.glob("*_methods.png")) if out.is_dir() else []
        assert panels == sorted(f"{n}_methods.png" for n in ("img", "gray", "deep")[: spec["complete"]]), panels
    if expected == 1:
        assert lines and lines[-1].startswith("blackbox-xai: error: "), result["stderr"]
        if spec.get("fault", "").startswith("enospc"):
            assert "No space left on device" in lines[-1], lines
        elif "out" not in spec and not spec.get("fault"):
            assert not out.exists() or not any(out.iterdir()), sorted(os.listdir(out))
    elif expected == 130:
        assert lines[-1].startswith("blackbox-xai: interrupted"), lines
    hints = {"usage-nothing": "(see blackbox-xai --help)", "usage-unknown-option": "(see blackbox-xai explain --help)",
             "usage-abbreviated-option": "unrecognized arguments: --out x (see blackbox-xai info --help)",
             "usage-unknown-option-after-images": "--frobnicate (see blackbox-xai explain --help)",
             "usage-seed-text": "(see blackbox-xai explain --help)"}
    if case in hints:
        assert lines[-1].endswith(hints[case]), lines
    if case in ACCEPTED:
        _check_accepted(case, result, world, out)


def _check_accepted(case: str, result: dict, world: dict, out: Path) -> None:
    images, extra, expected = ACCEPTED[case]
    assert result["stderr"].count("error") == 0, result["stderr"]
    methods = ["rise", "occlusion"] if "rise,occlusion" in extra else ["extremal"] if "extremal" in extra else ["rise"]
    wanted = sorted([f"{n}_{m}.{e}" for n in expected for m in methods for e in ("png", "npz", "json")]
                    + [f"{n}_methods.png" for n in expected])
    assert sorted(p.name for p in out.iterdir()) == wanted
    model_sha = hashlib.sha256((world["root"] / "linear.onnx").read_bytes()).hexdigest()
    for name, key in expected.items():
        pixels = world["refs"][key]
        logits = reference_logits(world["weights"], pixels)
        for method in methods:
            record = json.loads((out / f"{name}_{method}.json").read_text())
            atol = 0.05 * float(np.abs(logits).max()) if key == "exif" else 1e-3  # two JPEG decoders
            np.testing.assert_allclose(record["scores"], logits, rtol=1e-4, atol=atol, err_msg=f"{name} {method}")
            assert record["saliency_shape"] == list(pixels.shape[:2])
            assert record["model_sha256"] == model_sha
            assert record["spec"]["size"] == [SIZE, SIZE]
            source = Path(record["source"])
            source = source if source.is_absolute() else world["root"] / source
            assert record["image_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
            if "--target" in extra:
                wanted_target = {"BRAVO": 1, "top2": sorted(np.argsort(-logits)[:2].tolist()),
                                 "0:3": {"contrast": [0, 3]}}[extra[extra.index("--target") + 1]]
                got = sorted(record["target"]) if isinstance(record["target"], list) else record["target"]
                assert got == wanted_target
            else:
                assert record["target"] == int(np.argmax(logits))
            if method == "rise":
                assert record["params"]["seed"] == (3 if "3" in extra else 0)
                n_masks = 40 if "n_masks=4e1" in extra else 30 if "rise.n_masks=30" in extra else 50
                assert record["params"]["n_masks"] == n_masks
            if method == "extremal":
                assert record["params"]["areas"] == [0.1, 0.2]
    if case == "ok-animated-gif-first-frame":
        assert "frame" in result["stderr"] and len(result["stderr"].splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------------
# Separate processes: a real full disk (tmpfs) and a real SIGINT from outside
# ---------------------------------------------------------------------------------------------------------------

def _cli(*args: str | Path, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "blackbox_xai.cli", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"), **kwargs)


def test_real_full_disk_on_a_small_tmpfs(world: dict, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + mounted.stderr.decode(errors="replace").strip())
    try:
        (disk / "filler").write_bytes(b"\0" * 120_000)  # leaves room for a few files, not for every set
        process = _cli("explain", "linear.onnx", "img.png", "strip.png", "gray.png", "deep.png", "--method",
                       "rise,occlusion", "--param", "n_masks=30", "--out", disk / "out", cwd=world["root"])
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 1, stderr
        lines = stderr.splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], stderr
        assert "Traceback" not in stdout + stderr
        assert _incomplete_sets(disk / "out") == []
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_real_sigint_during_a_run(world: dict, tmp_path: Path) -> None:
    """SIGINT sent from outside once the first image's files exist, while the second image's methods run."""
    out = tmp_path / "out"
    process = _cli("explain", "linear.onnx", "img.png", "gray.png", "--method", "occlusion,rise",
                   "--param", "rise.n_masks=300000", "--out", out, cwd=world["root"])
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None and not (out / "img_occlusion.json").exists():
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    lines = stderr.splitlines()
    assert lines[-1] == "blackbox-xai: interrupted (the files of the image being explained were removed)", stderr
    # before it, only the long run's announcement of its passes (the 300,000 masks of each image's RISE)
    assert all(line.startswith("blackbox-xai: rise: 300,000 passes planned, up to about ") for line in lines[:-1])
    assert _incomplete_sets(out) == []
    assert not any(out.glob("img_*")), sorted(os.listdir(out))  # img's set was not complete: removed


# ---------------------------------------------------------------------------------------------------------------
# Peak memory (the CLI in a subprocess reports its own peak RSS, VmHWM, as it exits)
# ---------------------------------------------------------------------------------------------------------------

_PEAK = """
import atexit, sys
def _peak():  # VmHWM: this process's own peak (ru_maxrss would also count the peak of the pytest process above)
    status = open("/proc/self/status").read()
    open(sys.argv[1], "w").write(str(int(status.split("VmHWM:")[1].split()[0]) * 1024))
atexit.register(_peak)
from blackbox_xai.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _write_big_png(path: Path, width: int, height: int) -> None:
    """A valid 8-bit grey PNG of zeros, width x height, written a few rows at a time (small on disk)."""
    raw = zlib.compressobj(1)
    row = b"\0" * (width + 1)
    data = b"".join(raw.compress(row * 64) for _ in range(height // 64)) + raw.compress(row * (height % 64)) + raw.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.mark.parametrize("image", ["strip.png", "big.png", "huge_model"])
def test_peak_rss_is_bounded(world: dict, tmp_path: Path, image: str) -> None:
    root = world["root"]
    model = "linear.onnx"
    if image == "big.png":
        _write_big_png(tmp_path / "big.png", 10000, 10000)
        image = str(tmp_path / "big.png")
    elif image == "huge_model":
        model, image = "huge_input.onnx", "img.png"
    peak_file = tmp_path / "peak"
    done = subprocess.run([sys.executable, "-c", _PEAK, peak_file, "explain", model, image, "--method",
                           "rise,occlusion", "--param", "n_masks=50", "--out", tmp_path / "out"], capture_output=True,
                          text=True, cwd=root, timeout=300)
    code, peak = done.returncode, int(peak_file.read_text())
    print(f"\n{Path(image).name} on {model}: exit {code}, peak RSS {peak / 1e6:.0f} MB")
    assert peak < 1.5e9, (peak, done.stderr)
    lines = done.stderr.strip().splitlines()
    if code == 0:
        assert (tmp_path / "out" / f"{Path(image).stem}_methods.png").exists()
    else:
        assert code == 1 and len(lines) == 1 and lines[0].startswith("blackbox-xai: error: "), done.stderr
    if image == "strip.png":
        assert code == 0, done.stderr
        panel = cv2.imread(str(tmp_path / "out" / "strip_methods.png"))
        assert panel.shape[0] * panel.shape[1] <= 4096 * 4096 and max(panel.shape[:2]) <= 4096


if __name__ == "__main__":
    _run_cases(sys.argv[1], sys.argv[2])
