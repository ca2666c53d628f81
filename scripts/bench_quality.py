"""Quality benchmark: how good are the explanations? One run writes every table to bench-output/.

1. Ground-truth set (synthetic hue-shape images, exact evidence masks; clean model): pointing game, relevance
   mass and rank, IoU, deletion and insertion for every method, against a random and a centre baseline.
2. Clever-Hans test: images with the watermark and a target whose hue is NOT class 0 (the Clever-Hans model says
   class 0 because of the watermark, the clean model says the hue's class). Relevance mass each method puts on the
   watermark, explaining each model's top-1, and the ratio Clever-Hans / clean.
3. Real photos with the zoo EfficientNet-Lite0: deletion and insertion on 8 photos.
4. Sanity check (Adebayo et al. 2018): cascading randomisation of the zoo model's weights; Spearman correlation of
   the randomised maps with the original, per method; which methods stay correlated.
5. Vision transformers: sections 1 and 2 again with the ground-truth ViTs (``groundtruth.shapes_vit_model``) for
   the attention family, the CAM family on the token grid, LRP and the baselines.

Usage: scripts/bench --quality [--quick] [--out bench-output] [--skip SECTIONS]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from blackbox_xai import groundtruth, zoo
from blackbox_xai.evaluation.benchmark import clever_hans_ratios, format_table, score_methods, summarise
from blackbox_xai.evaluation.sanity import model_randomisation
from blackbox_xai.fileio import write_atomic
from blackbox_xai.methods import make_method, registered

GROUND_TRUTH_METRICS = ("pointing_game", "relevance_mass", "relevance_rank", "iou", "deletion", "insertion")
PHOTO_METRICS = ("deletion", "insertion")
EVIDENCE_FAMILIES = ("perturbation", "optimisation", "cam", "gradient")  # scored against the "baseline" family
VIT_METHODS = ("gradcam", "hirescam", "scorecam", "ablationcam", "eigencam", "tokenmasking", "lrp")  # + attention
SELECTED: set[str] | None = None  # --methods: run only these (baselines always run)


def methods_for(size: int, n_masks: int, score_kind: str = "probability") -> list:
    """Every registered method (family by family, the baselines last), with window sizes scaled to the model's
    input size (occlusion: 1/7 of the side); the others at their defaults."""
    window = max(4, size // 7)
    # Occlusion and LIME measure score changes and meaningful perturbation minimises the score: like RISE, they
    # need logits on saturated models (hiding a part rarely moves a probability of 0.9999).
    params = {"rise": {"n_masks": n_masks, "score": score_kind},
              "occlusion": {"window": window, "stride": window // 2, "score": score_kind},
              "lime": {"score": score_kind},
              "meaningful": {"score": score_kind},
              "cem": {"mode": "pp"}}
    names = [name for family in EVIDENCE_FAMILIES for name in registered(family)]
    if SELECTED is not None:
        names = [name for name in names if name in SELECTED]
    methods = [make_method(name, **params.get(name, {})) for name in names]
    return [*methods, *(make_method(name) for name in registered("baseline"))]


def photos() -> dict[str, np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_images

    images = {name: zoo.sample_image(name) for name in ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")}
    images["camera"] = data.camera()
    samples = load_sample_images()
    for name, image in zip(samples.filenames, samples.images):
        images[Path(name).stem] = image
    return images


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", default="bench-output")
    parser.add_argument("--skip", default="",
                        help="comma-separated sections to skip: groundtruth,cleverhans,photos,sanity,vit")
    parser.add_argument("--methods", default="", help="comma-separated methods to score (default: all)")
    args = parser.parse_args()
    global SELECTED
    SELECTED = set(filter(None, args.methods.split(","))) or None
    skip = set(filter(None, args.skip.split(",")))
    quick = args.quick
    report: dict = {"quick": quick}
    lines: list[str] = []

    def section(title: str, text: str) -> None:
        block = f"## {title}\n\n```\n{text}\n```\n"
        lines.append(block)
        print(block, flush=True)

    if "groundtruth" not in skip:
        began = time.time()
        model = groundtruth.shapes_model("clean")
        n = 8 if quick else 32
        images, labels, masks, _ = groundtruth.make_images(n, seed=2024)
        # The shapes models are confident (top-1 probability ~0.9999): perturbed images keep a saturated
        # probability, so RISE, occlusion, LIME and meaningful perturbation score logits here.
        methods = methods_for(model.input_size[0], 1000 if quick else 4000, score_kind="logit")
        rows = score_methods(model, list(images), methods, GROUND_TRUTH_METRICS, masks=list(masks),
                             targets=[int(c) for c in labels], progress=log)
        summary = summarise(rows, GROUND_TRUTH_METRICS)
        report["groundtruth"] = {"images": n, "summary": summary, "seconds": time.time() - began}
        section(f"Ground-truth set: {n} images, clean shapes model, target = true class",
                format_table(summary, [*GROUND_TRUTH_METRICS, "seconds", "passes"]))

    if "cleverhans" not in skip:
        clean, shortcut = groundtruth.shapes_model("clean"), groundtruth.shapes_model("cleverhans")
        n = 6 if quick else 16
        images, _, _, watermarks = groundtruth.make_images(n, seed=77, watermark="class0", watermark_fraction=1.0,
                                                           hue_classes=(1, 2, 3))
        methods = methods_for(clean.input_size[0], 1000 if quick else 4000, score_kind="logit")
        ratios = clever_hans_ratios(clean, shortcut, list(images), list(watermarks), methods)
        report["cleverhans"] = ratios
        section(f"Clever-Hans: relevance mass on the watermark ({n} images, top-1 of each model)",
                format_table(ratios, ["clever_hans", "clean", "ratio"]))

    if "photos" not in skip:
        model = zoo.efficientnet_lite0()
        selected = photos()
        if quick:
            selected = dict(list(selected.items())[:2])
        methods = methods_for(224, 1000 if quick else 4000)
        rows = score_methods(model, list(selected.values()), methods, PHOTO_METRICS, progress=log)
        summary = summarise(rows, PHOTO_METRICS)
        report["photos"] = {"images": list(selected), "summary": summary, "rows": rows}
        section(f"Real photos ({', '.join(selected)}), EfficientNet-Lite0, top-1 class",
                format_table(summary, [*PHOTO_METRICS, "seconds", "passes"]))

    if "sanity" not in skip:
        model = zoo.efficientnet_lite0()
        image = zoo.sample_image("chelsea")
        names = ["gradcam", "gradcampp", "layercam", "eigencam", "ablationcam", "occlusion", "rise", "saliency",
                 "integratedgradients", "guidedbackprop", "lrp"]
        if SELECTED is not None:
            names = [name for name in names if name in SELECTED]
        sanity = {}
        for name in names:
            params = {"n_masks": 500 if quick else 1000} if name == "rise" else {}
            result = model_randomisation(model, image, make_method(name, **params), stages=3 if quick else 5)
            sanity[name] = {"passes": result.passes, "stages": result.stages}
            log(f"sanity {name}: " + ", ".join(f"{s['randomised']}: {s['spearman_abs']:.2f}" for s in result.stages))
        report["sanity"] = sanity
        table = {name: {"spearman_abs_final": v["stages"][-1]["spearman_abs"], "spearman_final": v["stages"][-1]["spearman"],
                        "ssim_final": v["stages"][-1]["ssim"], "hog_final": v["stages"][-1]["hog"],
                        "passes": float(v["passes"])} for name, v in sanity.items()}
        section("Sanity check: cascading randomisation of EfficientNet-Lite0 (chelsea); final = all 50 layers",
                format_table(table, ["spearman_abs_final", "spearman_final", "ssim_final", "hog_final", "passes"]))
        stuck = [name for name, v in sanity.items() if not v["passes"]]
        lines.append(f"Methods that stay correlated (|Spearman| >= 0.3 at full randomisation): "
                     f"{', '.join(stuck) or 'none'}\n")

    if "vit" not in skip:
        began = time.time()
        vit, vit_shortcut = groundtruth.shapes_vit_model("clean"), groundtruth.shapes_vit_model("cleverhans")
        names = [*registered("attention"), *VIT_METHODS]
        if SELECTED is not None:
            names = [name for name in names if name in SELECTED]
        methods = [*(make_method(name) for name in names), *(make_method(name) for name in registered("baseline"))]
        n = 8 if quick else 32
        images, labels, masks, _ = groundtruth.make_images(n, seed=2024)
        rows = score_methods(vit, list(images), methods, GROUND_TRUTH_METRICS, masks=list(masks),
                             targets=[int(c) for c in labels], progress=log)
        summary = summarise(rows, GROUND_TRUTH_METRICS)
        n_ch = 6 if quick else 16
        ch_images, _, _, watermarks = groundtruth.make_images(n_ch, seed=77, watermark="class0",
                                                              watermark_fraction=1.0, hue_classes=(1, 2, 3))
        ratios = clever_hans_ratios(vit, vit_shortcut, list(ch_images), list(watermarks), methods)
        report["vit"] = {"images": n, "summary": summary, "cleverhans": ratios, "seconds": time.time() - began}
        section(f"Ground-truth set: {n} images, clean shapes ViT, target = true class",
                format_table(summary, [*GROUND_TRUTH_METRICS, "seconds", "passes"]))
        section(f"Clever-Hans ViTs: relevance mass on the watermark ({n_ch} images, top-1 of each model)",
                format_table(ratios, ["clever_hans", "clean", "ratio"]))

    out = Path(args.out)
    write_atomic(out / "quality.json", json.dumps(report, indent=2, default=float).encode())
    write_atomic(out / "quality.md", "\n".join(lines).encode())
    print(f"wrote {out / 'quality.json'} and {out / 'quality.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
