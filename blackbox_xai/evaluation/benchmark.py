"""Benchmarks over sets of images: method x metric tables, the Clever-Hans watermark test, and their summaries.

These are the building blocks of ``scripts/bench`` and of audit scripts that score several methods on a folder of
images (with ground-truth masks where there are some).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..methods.base import Method
from ..model.base import Model
from . import evaluate
from .localisation import relevance_mass_accuracy

LOCALISATION = ("pointing_game", "relevance_mass", "relevance_rank", "iou")
FAITHFULNESS = ("deletion", "insertion")


def score_methods(
    model: Model,
    images: Sequence[np.ndarray],
    methods: Sequence[Method],
    metrics: Sequence[str],
    masks: Sequence[np.ndarray] | None = None,
    targets: Sequence[Any] | None = None,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Explain every image with every method and score each explanation.

    Returns one row per (image, method): ``{"image": index, "method": name, "seconds": ..., metric: value...}``.
    ``targets`` default to "top1"; ``masks`` are needed by the localisation metrics; ``options`` go to
    :func:`~blackbox_xai.evaluation.evaluate`.
    """
    rows = []
    for index, image in enumerate(images):
        mask = None if masks is None else masks[index]
        target = "top1" if targets is None else targets[index]
        for method in methods:
            explanation = method.explain(model, image, target=target)
            scores = evaluate(model, image, explanation, metrics=list(metrics), mask=mask, **options)
            rows.append({"image": index, "method": method.name, "seconds": explanation.timing["seconds"],
                         "passes": explanation.timing["forward_passes"],
                         **{name: scores[name] for name in metrics}})
            if progress is not None:
                progress(f"image {index} {method.name}")
    return rows


def summarise(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean of each metric (and of seconds and passes) per method, in the order methods first appear."""
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(row["method"] for row in rows):
        mine = [row for row in rows if row["method"] == name]
        summary[name] = {key: float(np.mean([row[key] for row in mine])) for key in (*metrics, "seconds", "passes")}
    return summary


def watermark_mass(
    model: Model, images: Sequence[np.ndarray], watermark_masks: Sequence[np.ndarray], method: Method,
    target: Any = "top1",
) -> float:
    """Mean relevance mass (Arras et al. 2022) that ``method`` puts on the watermark, explaining ``target``."""
    masses = [
        relevance_mass_accuracy(method.explain(model, image, target=target).saliency, mask)
        for image, mask in zip(images, watermark_masks)
    ]
    return float(np.mean(masses))


def clever_hans_ratios(
    clean: Model, clever_hans: Model, images: Sequence[np.ndarray], watermark_masks: Sequence[np.ndarray],
    methods: Sequence[Method],
) -> dict[str, dict[str, float]]:
    """For each method: relevance mass on the watermark explaining the Clever-Hans model's top-1 class, the same
    for the clean model, and their ratio (a faithful method shows that the Clever-Hans model uses the watermark:
    ratio >> 1). Use images whose watermark and target disagree (see ``scripts/bench_quality.py``)."""
    result = {}
    for method in methods:
        shortcut = watermark_mass(clever_hans, images, watermark_masks, method)
        honest = watermark_mass(clean, images, watermark_masks, method)
        result[method.name] = {"clever_hans": shortcut, "clean": honest,
                               "ratio": shortcut / honest if honest > 0 else float("inf")}
    return result


def format_table(summary: dict[str, dict[str, float]], columns: Sequence[str]) -> str:
    """An aligned text table of a summary (rows = methods)."""
    header = ["method", *columns]
    cells = [[name, *(f"{values[c]:.3f}" if abs(values[c]) < 1000 else f"{values[c]:.0f}" for c in columns)]
             for name, values in summary.items()]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
