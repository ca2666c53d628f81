"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko, BMVC 2018)."""

from __future__ import annotations

import cv2
import numpy as np

from ..model.base import Model
from ..targets import Target
from . import params as P
from .base import Attribution, Method, Progress, chunks, target_scores
from .fill import fill_image


class RISE(Method):
    """Saliency as the score-weighted average of random masks.

    Each mask is a ``cells`` x ``cells`` grid of Bernoulli(``p_keep``) cells, bilinearly upsampled to
    (cells + 1) x cell size and cropped at a random shift, so that mask edges fall anywhere. The saliency is
    ``sum_i score(I * M_i) * M_i / (N * p_keep)``. Masks are generated and evaluated in chunks of the model's
    batch size: never N masks at once.

    Parameters
    ----------
    n_masks : N, number of masks (default 4000; the paper uses 4000-8000).
    cells : grid size s (default 7, as the paper's 7x7).
    p_keep : probability that a cell is kept (default 0.5).
    fill : what masked pixels become: "zero" (default: the pixel the model sees as zero, i.e. the data set's mean
        colour, as when the reference implementation masks the normalised tensor), "black" (I * M in pixel
        space), "grey", "mean" or "blur".
    score : "probability" (default, softmax as in the paper), "logit" or "raw".
    seed : random seed (default 0; None draws fresh entropy); the same seed gives the same map.
    """

    name = "rise"
    family = "perturbation"
    stochastic = True
    parameter_constraints = {
        "n_masks": P.Int(1),
        "cells": P.Int(1),
        "p_keep": P.Interval(0.0, 1.0, closed="right"),
        "fill": P.fill(),
        "score": P.score(),
        "seed": P.Seed(),
    }

    def __init__(
        self,
        n_masks: int = 4000,
        cells: int = 7,
        p_keep: float = 0.5,
        fill: str = "zero",
        score: str = "probability",
        seed: int = 0,
    ) -> None:
        self._set_params(locals())

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        height, width = pixels.shape[:2]
        baseline = fill_image(pixels, self.fill, model.spec)
        difference = pixels - baseline
        rng = np.random.default_rng(self.seed)
        total = np.zeros(height * width, dtype=np.float64)
        for start, stop in chunks(self.n_masks, model.batch_size):
            masks = generate_masks(rng, stop - start, self.cells, self.p_keep, (height, width))
            batch = perturb(masks, baseline, difference)
            scores = target_scores(model, batch, target, self.score)
            total += scores.astype(np.float64) @ masks.reshape(len(masks), -1)
            progress(stop, self.n_masks)
        saliency = (total / (self.n_masks * self.p_keep)).reshape(height, width)
        return Attribution(saliency.astype(np.float32))


def perturb(masks: np.ndarray, baseline: np.ndarray, difference: np.ndarray) -> np.ndarray:
    """``baseline + masks[..., None] * difference``: the masked images (n, h, w, 3).

    For float32 images this runs per image with OpenCV, which multiplies and adds element by element in float32
    exactly as numpy does (so the values are the same) but several times faster than numpy's broadcast over the
    3-wide channel axis; the addition is skipped when the baseline is all zeros (the "black" fill).
    """
    if difference.dtype != np.float32 or baseline.dtype != np.float32 or masks.dtype != np.float32:
        return baseline + masks[..., None] * difference
    difference, baseline = np.ascontiguousarray(difference), np.ascontiguousarray(baseline)
    add = bool(baseline.any())
    batch = np.empty(masks.shape + difference.shape[2:], dtype=np.float32)
    for mask, image in zip(masks, batch):
        cv2.multiply(difference, cv2.merge((mask, mask, mask)), dst=image)
        if add:
            cv2.add(image, baseline, dst=image)
    return batch


def generate_masks(
    rng: np.random.Generator, count: int, cells: int, p_keep: float, size: tuple[int, int]
) -> np.ndarray:
    """``count`` RISE masks (count, h, w) float32 in [0, 1], drawn from ``rng``."""
    height, width = size
    cell_h, cell_w = -(-height // cells), -(-width // cells)
    up_h, up_w = (cells + 1) * cell_h, (cells + 1) * cell_w
    grids = (rng.random((count, cells, cells)) < p_keep).astype(np.float32)
    shift_y = rng.integers(0, cell_h, count)
    shift_x = rng.integers(0, cell_w, count)
    masks = np.empty((count, height, width), dtype=np.float32)
    for i in range(count):
        upsampled = cv2.resize(grids[i], (up_w, up_h), interpolation=cv2.INTER_LINEAR)
        masks[i] = upsampled[shift_y[i]:shift_y[i] + height, shift_x[i]:shift_x[i] + width]
    return masks
