"""RISE convergence: how many passes until two seeds agree, for the paper's estimator and the variance-reduced ones.

For each photo (the 8 photos of ``scripts/bench_quality.py``), each design (estimator, sampling, antithetic pairs),
each number of masks N and two seeds, RISE explains the zoo EfficientNet-Lite0's top-1 class; the table gives the
agreement of the two seeds' maps: Pearson correlation and the IoU of their top 10 % pixels. A converged estimator
agrees with itself; the issue's target is Pearson >= 0.9 within 4000 passes on every photo.

The sanity check (Adebayo et al. 2018): the same RISE (seed 0) on the model whose every parameterised layer was
randomised (``blackbox_xai.evaluation.sanity.randomise``), explaining the same class index; Spearman rank
correlation (of absolute values, as ``model_randomisation`` reports it, and signed) between the original and the
randomised maps. A method that explains the model decorrelates; the paper's estimator returns the masks' coverage
pattern for a model whose scores barely vary, the same for both models (the same seed draws the same masks).

Passes are cached by the bytes of the perturbed image, so that the designs that draw the same masks (the paper's
and the centred estimator on the same sampling) and the prefixes of a longer run (N are powers of two: every chunk
of the model's batch size is whole, and every design draws its masks as a sequence) cost their passes once.

Usage: scripts/_venv.sh python scripts/bench_convergence.py [--photos chelsea,coffee] [--masks 256,512,1024]
       [--designs paper,centred,...] [--seeds 0,1] [--sanity-masks 1024] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import blackbox_xai as bx
from blackbox_xai import zoo
from blackbox_xai.evaluation.sanity import parameterised_layers, randomise, similarity
from blackbox_xai.methods import RISE

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "camera", "china", "flower")
DESIGNS: dict[str, dict[str, Any]] = {
    "paper": {"estimator": "paper", "sampling": "random", "antithetic": False},  # the paper's, as before
    "centred": {"estimator": "centred", "sampling": "random", "antithetic": False},
    "centred+antithetic": {"estimator": "centred", "sampling": "random", "antithetic": True},
    "centred+sobol": {"estimator": "centred", "sampling": "sobol", "antithetic": False},
    "centred+sobol+antithetic": {"estimator": "centred", "sampling": "sobol", "antithetic": True},
    "paper+sobol": {"estimator": "paper", "sampling": "sobol", "antithetic": False},
    "paper+sobol+antithetic": {"estimator": "paper", "sampling": "sobol", "antithetic": True},
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def photo(name: str) -> np.ndarray:
    """The benchmark photos: ``zoo.sample_image`` names, skimage's camera (grey, as RGB), sklearn's samples."""
    if name == "camera":
        from skimage import data

        return np.repeat(data.camera()[..., None], 3, axis=2)
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        samples = load_sample_images()
        return next(image for path, image in zip(samples.filenames, samples.images) if Path(path).stem == name)
    return zoo.sample_image(name)


class CachedModel:
    """An OnnxModel's raw outputs behind a CallableModel, cached by the bytes of each image."""

    def __init__(self, model: bx.OnnxModel) -> None:
        self.model = model
        self.cache: dict[bytes, np.ndarray] = {}
        self.passes = 0
        self.callable = bx.CallableModel(self._scores, spec=model.spec, batch_size=model.batch_size,
                                         output_kind=model.output_kind)

    def _scores(self, pixels: np.ndarray) -> np.ndarray:
        keys = [hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest() for image in pixels]
        missing = [i for i, key in enumerate(keys) if key not in self.cache]
        if missing:
            outputs = self.model.run_inputs(self.model.preprocessor.forward(pixels[missing]))
            outputs = np.asarray(outputs, dtype=np.float32).reshape(len(missing), -1)
            self.passes += len(missing)
            for i, row in zip(missing, outputs):
                self.cache[keys[i]] = row
        return np.stack([self.cache[key] for key in keys])


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pearson correlation and the IoU of the top 10 % pixels of two maps."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    pearson = float(np.corrcoef(a, b)[0, 1])
    top_a, top_b = a >= np.quantile(a, 0.9), b >= np.quantile(b, 0.9)
    return pearson, float((top_a & top_b).sum() / (top_a | top_b).sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=",".join(PHOTOS))
    parser.add_argument("--masks", default="256,512,1024,2048,4096", help="numbers of masks (powers of two)")
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--seeds", default="0,1", help="two seeds")
    parser.add_argument("--sanity-masks", type=int, default=1024, help="masks of the sanity check (0: skip it)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    names = [n for n in args.photos.split(",") if n]
    counts = sorted(int(n) for n in args.masks.split(","))
    designs = [d for d in args.designs.split(",") if d]
    seeds = [int(s) for s in args.seeds.split(",")]
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown or len(seeds) != 2:
        parser.error(f"designs must be among {list(DESIGNS)} and seeds two integers")

    model = zoo.efficientnet_lite0(threads=args.threads)
    cached = CachedModel(model)
    randomised = None
    if args.sanity_masks:
        proto = model.proto()
        randomised = CachedModel(bx.OnnxModel(randomise(proto, parameterised_layers(proto), 0), spec=model.spec,
                                              batch_size=model.batch_size, threads=args.threads))
    began = time.perf_counter()
    results: dict[str, Any] = {"masks": counts, "seeds": seeds, "photos": {}}
    for name in names:
        image = photo(name)
        target = int(RISE(n_masks=2).explain(cached.callable, image, target="top1").target)
        rows: dict[str, Any] = {"target": target, "agreement": {}, "sanity": {}}
        for design in designs:
            curve = []
            for n in counts:
                maps = [RISE(n_masks=n, seed=s, **DESIGNS[design]).explain(cached.callable, image, target=target)
                        .saliency for s in seeds]
                pearson, iou = agreement(*maps)
                curve.append({"n_masks": n, "pearson": pearson, "iou10": iou})
                log(f"{name} {design} N={n}: pearson {pearson:.3f} iou {iou:.3f}  "
                    f"({cached.passes} passes so far, {time.perf_counter() - began:.0f} s)")
            rows["agreement"][design] = curve
            if randomised is not None:
                method = RISE(n_masks=args.sanity_masks, seed=seeds[0], **DESIGNS[design])
                original = method.explain(cached.callable, image, target=target).saliency
                other = method.explain(randomised.callable, image, target=target).saliency
                scores = similarity(original, other)
                rows["sanity"][design] = {"spearman_abs": scores["spearman_abs"], "spearman": scores["spearman"]}
                log(f"{name} {design} sanity N={args.sanity_masks}: spearman_abs {scores['spearman_abs']:.3f} "
                    f"signed {scores['spearman']:.3f}")
        results["photos"][name] = rows
    results["passes"] = cached.passes + (randomised.passes if randomised else 0)
    results["seconds"] = time.perf_counter() - began
    print(report(results, designs))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def report(results: dict[str, Any], designs: list[str]) -> str:
    counts = results["masks"]
    lines = [f"RISE agreement of seeds {results['seeds']} (Pearson / top-10% IoU) by number of masks",
             f"{results['passes']} model passes, {results['seconds']:.0f} s", ""]
    header = f"{'photo':<11} {'design':<26} " + " ".join(f"{n:>11}" for n in counts)
    for name, rows in results["photos"].items():
        lines += [header]
        for design in designs:
            cells = " ".join(f"{c['pearson']:5.2f}/{c['iou10']:4.2f}" for c in rows["agreement"][design])
            lines.append(f"{name:<11} {design:<26} {cells}")
        lines.append("")
    if any(rows["sanity"] for rows in results["photos"].values()):
        lines.append("Sanity: Spearman (abs / signed) of the map with the fully randomised model's map")
        lines.append(f"{'design':<26} " + " ".join(f"{name:>13}" for name in results["photos"]))
        for design in designs:
            cells = " ".join(f"{rows['sanity'][design]['spearman_abs']:6.2f}/{rows['sanity'][design]['spearman']:6.2f}"
                             for rows in results["photos"].values())
            lines.append(f"{design:<26} {cells}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
