"""CAM benchmark on the EfficientNet-Lite0 zoo model (224x224, chelsea), in one run:

- Score-CAM: wall time against the raw onnxruntime time of the same forward passes (same session, same chunks:
  the clean image, the body pass for the activations, the baseline image, then the masked images by batch size);
- Ablation-CAM at the last convolutional layer: ablations through the head only (after the graph split) against
  the same ablations each paying a full forward pass (head_only=False);
- Grad-CAM (exact weights of the affine head) for reference.

Usage: scripts/bench --cam [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from blackbox_xai import zoo
from blackbox_xai.methods import AblationCAM, GradCAM, ScoreCAM


def raw_seconds(model, chunk_sizes: list[int]) -> float:
    """session.run on pre-made preprocessed batches of the given sizes."""
    pixels = np.random.default_rng(0).uniform(0, 255, (max(chunk_sizes), 224, 224, 3)).astype(np.float32)
    inputs = model.preprocessor.forward(pixels)
    began = time.perf_counter()
    for size in chunk_sizes:
        model.run_inputs(inputs[:size])
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = zoo.efficientnet_lite0(batch_size=args.batch_size)
    image = zoo.sample_image("chelsea")
    model.layer_model()  # split once (cached), outside the timings
    GradCAM().explain(model, image)  # warm-up

    walls, raws, passes = [], [], 0
    for _ in range(args.repeats):
        explanation = ScoreCAM().explain(model, image)
        walls.append(explanation.timing["seconds"])
        masked = explanation.extras["masked_passes"]
        chunks = [1, 1, 1] + [min(args.batch_size, masked - s) for s in range(0, masked, args.batch_size)]
        raws.append(raw_seconds(model, chunks))
        passes = explanation.timing["forward_passes"]
    wall, raw = statistics.median(walls), statistics.median(raws)
    print(f"Score-CAM (default layer, batch {args.batch_size}): {passes} forward passes, wall {wall:.2f} s, "
          f"raw onnxruntime {raw:.2f} s, ratio {wall / raw:.3f}x (target <= 1.10x)")

    head, full = [], []
    for _ in range(args.repeats):
        head.append(AblationCAM().explain(model, image).timing["seconds"])
        full.append(AblationCAM(head_only=False).explain(model, image).timing["seconds"])
    head_s, full_s = statistics.median(head), statistics.median(full)
    print(f"Ablation-CAM, 1280 ablations of {model.layer_model().layer.tensor}: head-only {head_s:.2f} s, "
          f"full forward passes {full_s:.2f} s, speed-up {full_s / head_s:.1f}x (target >= 5x)")

    grad = statistics.median(GradCAM().explain(model, image).timing["seconds"] for _ in range(args.repeats))
    print(f"Grad-CAM (exact affine-head weights): {grad * 1000:.0f} ms end to end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
