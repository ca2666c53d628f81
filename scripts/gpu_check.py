"""The CUDA path against the CPU path on a machine with onnxruntime-gpu and a GPU (CI has none: run it by hand).

On EfficientNet-Lite0 (zoo), with photos from scikit-image, it compares the CUDA provider with the CPU provider:
1. logits of a batch of 32 perturbed photos: max |difference| / the logits' spread, and the top-1 classes;
2. the backward graph's pixel gradients (chelsea, coffee): cosine similarity and max |difference| / max |gradient|;
3. RISE (seed 0) and Grad-CAM maps on chelsea: Pearson correlation;
and times RISE on each provider, with the raw onnxruntime time of the same passes on CUDA (the ratio is the
overhead of the method's own work, which the GPU does not speed up).

Usage: python scripts/gpu_check.py [--cache-dir models] [--masks 4000] [--batch-size 64]
Exit status 1 when a comparison is outside its tolerance.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from blackbox_xai import zoo
from blackbox_xai.image import resize_pixels
from blackbox_xai.methods import make_method


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def raw_seconds(model, pixels: np.ndarray, passes: int) -> float:
    batch = model.preprocessor.forward(np.repeat(pixels[None], model.batch_size, axis=0))
    model.run_inputs(batch)  # warm-up
    began = time.perf_counter()
    for start in range(0, passes, model.batch_size):
        model.run_inputs(batch[:min(model.batch_size, passes - start)])
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--masks", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    cpu = zoo.efficientnet_lite0(args.cache_dir, batch_size=args.batch_size)
    gpu = zoo.efficientnet_lite0(args.cache_dir, batch_size=args.batch_size, providers="cuda")
    print(f"providers: cpu {cpu.providers}, cuda {gpu.providers}")
    failures = []

    def check(label: str, ok: bool, text: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {label}: {text}", flush=True)
        if not ok:
            failures.append(label)

    photos = {name: resize_pixels(zoo.sample_image(name), (224, 224)) for name in ("chelsea", "coffee")}
    rng = np.random.default_rng(0)
    batch = np.clip(np.repeat(np.stack(list(photos.values())), 16, axis=0)
                    + rng.normal(0, 20, size=(32, 224, 224, 3)), 0, 255).astype(np.float32)
    cpu_logits, gpu_logits = cpu.predict(batch), gpu.predict(batch)
    spread = float(cpu_logits.std())
    difference = float(np.abs(gpu_logits - cpu_logits).max()) / spread
    same_top1 = float(np.mean(cpu_logits.argmax(1) == gpu_logits.argmax(1)))
    check("logits", difference < 1e-2 and same_top1 == 1.0,
          f"max |cuda - cpu| = {difference:.2e} of the logits' std ({spread:.2f}); top-1 agree on {same_top1:.0%}")

    for name, pixels in photos.items():
        target = int(cpu_logits[0 if name == "chelsea" else 16].argmax())
        seed = np.zeros(cpu.n_classes, np.float32)
        seed[target] = 1.0
        _, g_cpu = cpu.gradient(pixels[None], seed)
        _, g_gpu = gpu.gradient(pixels[None], seed)
        cosine = float((g_cpu * g_gpu).sum() / np.linalg.norm(g_cpu) / np.linalg.norm(g_gpu))
        relative = float(np.abs(g_gpu - g_cpu).max() / np.abs(g_cpu).max())
        check(f"gradient {name}", cosine > 0.999,
              f"cosine {cosine:.6f}, max |cuda - cpu| / max |cpu| = {relative:.2e}")

    image = zoo.sample_image("chelsea")
    for method_name, params in (("gradcam", {}), ("rise", {"n_masks": args.masks, "seed": 0})):
        explanations, seconds = {}, {}
        for label, model in (("cpu", cpu), ("cuda", gpu)):
            method = make_method(method_name, **params)
            explanations[label] = method.explain(model, image)
            seconds[label] = explanations[label].timing["seconds"]
        r = pearson(explanations["cpu"].saliency, explanations["cuda"].saliency)
        text = f"Pearson r {r:.6f}; seconds cpu {seconds['cpu']:.2f}, cuda {seconds['cuda']:.2f}"
        if method_name == "rise":
            passes = explanations["cuda"].timing["forward_passes"]
            raw = raw_seconds(gpu, resize_pixels(image, (224, 224)), passes)
            text += (f"; {passes} passes, raw onnxruntime on cuda {raw:.2f} s, "
                     f"cuda wall / raw {seconds['cuda'] / raw:.2f}")
        check(method_name, r > 0.999, text)
    print("all comparisons within tolerance" if not failures else f"outside tolerance: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
