"""Extremal perturbation's cost on EfficientNet-Lite0 (chelsea, 224x224): 300 iterations with the exact backward
graph and with the gradient-free SPSA estimator. Reports forward passes (a forward-backward run counts as one),
wall seconds, and for SPSA the ratio to the raw onnxruntime time of the same number of passes.

Usage: scripts/bench --optimisers [--iterations N] [--directions K]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from blackbox_xai import zoo
from blackbox_xai.image import resize_pixels
from blackbox_xai.methods.extremal import ExtremalPerturbation


def raw_seconds(model, pixels: np.ndarray, passes: int) -> float:
    """onnxruntime alone on the same number of images, in batches of the model's size."""
    batch = model.preprocessor.forward(np.repeat(pixels[None], model.batch_size, axis=0))
    began = time.perf_counter()
    for start in range(0, passes, model.batch_size):
        model.run_inputs(batch[:min(model.batch_size, passes - start)])
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--directions", type=int, default=8)
    args = parser.parse_args()
    model = zoo.efficientnet_lite0(batch_size=32)
    image = zoo.sample_image("chelsea")
    pixels = resize_pixels(image, (224, 224))
    for source in ("exact", "spsa"):
        method = ExtremalPerturbation(iterations=args.iterations, gradient=source, spsa_directions=args.directions)
        explanation = method.explain(model, image)
        timing = explanation.timing
        line = (f"extremal {source:5s} iterations={args.iterations} areas={method.areas}: "
                f"{timing['forward_passes']} passes, {timing['seconds']:.1f} s wall, "
                f"scores {np.round(explanation.extras['scores'], 2).tolist()} (clean "
                f"{explanation.extras['clean_score']:.2f}), areas {np.round(explanation.extras['areas'], 4).tolist()}")
        if source == "spsa":
            raw = raw_seconds(model, pixels, timing["forward_passes"])
            line += f", raw onnxruntime {raw:.1f} s, ratio {timing['seconds'] / raw:.3f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
