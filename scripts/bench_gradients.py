"""Benchmark exact gradients (dev-only: the torch comparison needs the optional dev dependency torch).

On the EfficientNet-Lite0 zoo model at 224x224 (skimage's "chelsea"), on this machine:

1. one forward-backward pass (``OnnxModel.gradient``: the forward pass and the backward graph in one onnxruntime
   session, pixels in, pixel gradients out) against one forward pass (``OnnxModel.predict``), both from pixels, at
   batch 1 and 16; the ratio's target is <= 3. The same
   input gradients by torch autograd on the plain-torch reference network (scripts/torch_efficientnet.py) are
   timed beside them.
2. Grad-CAM end to end through the public ``GradCAM.explain`` (image in, map out: the clean forward pass, the body
   pass, the gradients, the upsampling), at a layer whose head is not affine (``_blocks.15._project_conv.out``, exact
   gradients by the head's backward graph) and at the default layer (``_conv_head.relu6.out``: the affine head's
   weights, and the backward graph for comparison); against torch autograd Grad-CAM on the same network (a forward
   hook keeps the layer's activations and their gradient, then one backward pass; the same ReLU, mean-of-gradient
   weights and bilinear upsampling to 224).

Times are the median of ``--repeats`` runs after a warm-up (the first call builds the split and the gradient
model; its time is reported apart).

Usage: .venv/bin/python scripts/bench_gradients.py [--repeats 7] [--threads N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


NON_AFFINE_LAYER = "_blocks.15._project_conv.out"
CLASS = 281  # tabby


def median_time(function: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``repeats`` calls after ``warmup`` calls (torch's first calls on CPU create its
    convolution primitives, seconds each; onnxruntime's first call allocates)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def torch_reference(threads: int | None):
    """The plain-torch EfficientNet-Lite0 (scripts/torch_efficientnet.py) as a function with a capture point:
    ``forward(x, capture)`` returns logits and calls ``capture(name, tensor)`` at the two Grad-CAM layers (the
    equivalent of forward hooks on a module)."""
    import torch
    import torch.nn.functional as F

    import torch_efficientnet

    if threads:
        torch.set_num_threads(threads)
    state = {k: v.float() for k, v in torch_efficientnet.load_state_dict().items()}

    def forward(x, capture=lambda name, tensor: tensor):
        return torch_efficientnet.forward(state, x, capture)

    return torch, F, forward


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import cv2

    from blackbox_xai import zoo
    from blackbox_xai.methods.cam import GradCAM
    from blackbox_xai.model.capabilities import INPUT_GRADIENTS

    model = zoo.efficientnet_lite0(batch_size=16, threads=args.threads)
    image = cv2.resize(zoo.sample_image("chelsea"), (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                               "threads": args.threads, "repeats": args.repeats}
    print(f"EfficientNet-Lite0, 224x224, onnxruntime CPU, {results['machine']}, median of {args.repeats}")

    # 1. one backward (forward + backward graph) vs one forward pass -----------------------------------------------
    began = time.perf_counter()
    if model.capability_gap(INPUT_GRADIENTS) is not None:  # builds the backward graph and its session once
        raise SystemExit(f"no exact gradients: {model.capability_gap(INPUT_GRADIENTS)}")
    results["build_gradient_model_s"] = time.perf_counter() - began
    print(f"\nbuilding the gradient model and its session: {results['build_gradient_model_s']:.2f} s")
    torch, F, forward = torch_reference(args.threads)
    print(f"{'batch':>5} {'forward ms':>11} {'fwd+bwd ms':>11} {'ratio':>6} {'torch fwd ms':>13} "
          f"{'torch fwd+bwd ms':>17} {'torch ratio':>11}")
    for batch in (1, 16):
        pixels = np.repeat(image[None], batch, axis=0)
        inputs = model.preprocessor.forward(pixels)
        weights = np.zeros((batch, model.n_classes), np.float32)
        weights[:, CLASS] = 1.0
        fwd = median_time(lambda: model.predict(pixels), args.repeats)
        bwd = median_time(lambda: model.gradient(pixels, weights), args.repeats)
        x = torch.from_numpy(inputs)

        def torch_forward():
            with torch.no_grad():
                forward(x)

        def torch_backward():
            leaf = x.clone().requires_grad_(True)
            forward(leaf)[:, CLASS].sum().backward()
            return leaf.grad

        t_fwd = median_time(torch_forward, args.repeats)
        t_bwd = median_time(torch_backward, args.repeats)
        results[f"batch{batch}"] = {"forward_s": fwd, "forward_backward_s": bwd, "ratio": bwd / fwd,
                                    "torch_forward_s": t_fwd, "torch_forward_backward_s": t_bwd,
                                    "torch_ratio": t_bwd / t_fwd}
        print(f"{batch:>5} {fwd * 1e3:>11.1f} {bwd * 1e3:>11.1f} {bwd / fwd:>6.2f} {t_fwd * 1e3:>13.1f} "
              f"{t_bwd * 1e3:>17.1f} {t_bwd / t_fwd:>11.2f}")

    # 2. Grad-CAM end to end ----------------------------------------------------------------------------------------
    print("\nGrad-CAM end to end (image -> map), class 281:")
    model.backward_passes = 0
    cases = {
        f"ours, {NON_AFFINE_LAYER} (backward)": GradCAM(layer=NON_AFFINE_LAYER),
        "ours, default layer (affine, auto)": GradCAM(),
        "ours, default layer (backward)": GradCAM(gradient="backward"),
    }
    ours_maps = {}
    for name, method in cases.items():
        began = time.perf_counter()
        exp = method.explain(model, image, CLASS)
        first = time.perf_counter() - began
        seconds = median_time(lambda: method.explain(model, image, CLASS), args.repeats)
        ours_maps[name] = exp.saliency
        results[name] = {"first_call_s": first, "seconds": seconds, "gradient": exp.params["gradient"],
                         "head_passes": exp.extras["head_passes"]}
        print(f"  {name:70s} {seconds * 1e3:8.1f} ms (first call {first:.2f} s, gradient {exp.params['gradient']})")

    pixels = torch.from_numpy(image[None])

    def torch_gradcam(layer: str, full: bool = True) -> np.ndarray:
        """Grad-CAM with torch autograd. ``full``: as with a torch module whose weights require gradients
        (pytorch-grad-cam's setting: the backward pass runs through the whole network); else the activations are
        detached at the layer and the backward pass runs through the head only."""
        store: dict[str, Any] = {}

        def capture(name, tensor):
            if name == layer:
                if not full:
                    tensor = tensor.detach().requires_grad_(True)
                tensor.retain_grad()
                store["A"] = tensor
            return tensor

        x = (pixels.permute(0, 3, 1, 2) - 127.0) / 128.0
        if full:
            x.requires_grad_(True)
        forward(x, capture)[0, CLASS].backward()
        a, g = store["A"], store["A"].grad
        with torch.no_grad():
            cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=(224, 224), mode="bilinear", align_corners=False)[0, 0]
            return (cam / cam.max()).numpy()

    for layer, ours in ((NON_AFFINE_LAYER, f"ours, {NON_AFFINE_LAYER} (backward)"),
                        ("_conv_head.relu6.out", "ours, default layer (affine, auto)")):
        for full in (True, False):
            seconds = median_time(lambda: torch_gradcam(layer, full), args.repeats)
            theirs = torch_gradcam(layer, full)
            mine = ours_maps[ours]
            similarity = float(mine.ravel() @ theirs.ravel() / (np.linalg.norm(mine) * np.linalg.norm(theirs)))
            name = f"torch autograd, {layer}, " + ("backward to the input" if full else "head-only backward")
            results[name] = {"seconds": seconds, "cosine_with_ours": similarity}
            print(f"  {name:70s} {seconds * 1e3:8.1f} ms (map cosine with ours {similarity:.6f})")

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
