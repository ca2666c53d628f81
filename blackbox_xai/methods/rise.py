"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko, BMVC 2018)."""

from __future__ import annotations

import cv2
import numpy as np

from ..model.base import Model
from ..targets import Target
from . import params as P
from .base import Attribution, Method, Progress, chunks, target_scores
from .fill import fill_image
from .rise_masks import SAMPLINGS, MaskSampler, generate_masks


ESTIMATORS = ("centred", "paper")
MIN_MASKS_BEFORE_STOPPING = 128  # the standard error is estimated from pairs: at least 64 of them


class RISE(Method):
    """Saliency as the score-weighted average of random masks (Petsiuk, Das and Saenko, BMVC 2018).

    Each mask is a ``cells`` x ``cells`` grid of cells kept with probability ``p_keep``, bilinearly upsampled and
    cropped at a random shift so that mask edges fall anywhere (:mod:`blackbox_xai.methods.rise_masks`). With
    ``f_i`` the explained score of the image under mask ``M_i`` and ``N`` masks:

    - ``estimator="paper"``: ``S_p = sum_i f_i M_i(p) / (N p_keep)``, the paper's, whose expectation is
      ``E[f M_p] / p_keep`` (for binary masks, the mean score when pixel p is kept);
    - ``estimator="centred"``: ``S_p = sum_i (f_i - fbar) M_i(p) / (N p_keep)`` with ``fbar`` the mean score of
      the N masks: the mean score is a control variate. Its expectation is the covariance of the score with the
      mask, ``(E[f M_p] - E[f] p_keep) / p_keep``: the paper's expectation minus the constant ``E[f]`` (every
      pixel of a mask has expectation exactly ``p_keep``); for binary masks, how much keeping pixel p raises the
      expected score. With independent masks the expectation is that times ``1 - 1/N``; with antithetic pairs
      at ``p_keep = 0.5`` it is exact, and the two estimators differ by exactly ``fbar`` on every pixel.

    Why centre: ``paper = centred + fbar * C_p`` with ``C_p = sum_i M_i(p) / (N p_keep)`` the mask coverage,
    1 on average but uneven across pixels for a finite N. When the score is large and varies little (a
    confident model, or a model whose weights were randomised), that term dominates: the paper's map is mostly
    the coverage pattern of the seed, the same for any model (it fails the model-randomisation sanity check),
    and most of its variance is the mean score times the coverage noise. Centring removes the term, and
    scrambled Sobol points (``sampling="sobol"``: every cell and pair of cells kept in very nearly the expected
    share of masks) shrink what is left. Antithetic masks (``antithetic=True``: pairs drawn from ``u`` and
    ``1 - u``; at ``p_keep = 0.5`` the pair is M and 1 - M) make the coverage exactly even, which alone fixes the
    paper's estimator. On a score linear in the mask they do not help the centred estimator (the pair's
    contribution ``(f - E[f]) (2 M - 1)`` is as variable as two independent masks', ``tests/
    test_rise_estimator.py``), but on photos they do: the default is the best design on the measurements of
    ``scripts/bench_convergence.py`` (EfficientNet-Lite0, probability of the top-1 class, Pearson correlation
    of two seeds' maps at 256 / 512 / 1024 / 2048 masks):

    ================================  =========================  =========================
    design                            chelsea                    coffee
    ================================  =========================  =========================
    paper (before)                    0.34 / 0.39 / 0.42 / 0.47  0.78 / 0.87 / 0.91 / 0.94
    centred                           0.81 / 0.88 / 0.91 / 0.94  0.82 / 0.94 / 0.96 / 0.98
    centred, Sobol                    0.89 / 0.91 / 0.97 / 0.98  0.91 / 0.96 / 0.97 / 0.99
    centred, Sobol, antithetic        0.87 / 0.95 / 0.97 / 0.99  0.94 / 0.96 / 0.99 / 0.99
    ================================  =========================  =========================

    (top-10 % IoU at 2048 masks, same order: 0.34, 0.76, 0.81, 0.87 on chelsea; 0.74, 0.78, 0.90, 0.89 on
    coffee). Spearman correlation (of absolute values) with the map of the fully randomised model (1024 masks,
    seed 0): the paper's 0.80 (chelsea) and 0.46 (coffee); the default -0.00 and -0.02 (signed: 0.09, -0.07);
    every centred design under 0.25.

    Early stopping (``tolerance``): the masks are grouped in consecutive pairs (independent of each other), and
    the per-pixel standard error of the map is estimated from the spread of the pairs' contributions (for
    Sobol points it is an overestimate: the pairs are more even than independent ones). After each chunk of
    masks (from 128 masks on), RISE stops once the standard error's root mean square over the pixels is at most
    ``tolerance`` times the map's standard deviation over the pixels. Two runs then correlate at about
    ``1 - tolerance**2`` (Pearson): the map's spread is the signal's plus the noise's. ``extras`` records
    ``masks_used`` (also the forward passes), ``mean_score`` (``fbar``, the constant the centred estimator
    removes), and with a tolerance ``relative_error`` (the ratio above) and ``standard_error`` (the per-pixel
    map at the model's resolution).

    Masks are generated and evaluated in chunks of the model's batch size: never N masks at once.

    Parameters
    ----------
    n_masks : N, number of masks (default 4000; the paper uses 4000-8000); with a tolerance, the most used.
    cells : grid size s (default 7, as the paper's 7x7; at most 256, a grid finer than that is pixel noise).
    p_keep : probability that a cell is kept (default 0.5).
    fill : what masked pixels become: "zero" (default: the pixel the model sees as zero, i.e. the data set's mean
        colour, as when the reference implementation masks the normalised tensor), "black" (I * M in pixel
        space), "grey", "mean" or "blur".
    score : "probability" (default, softmax as in the paper), "logit" or "raw".
    estimator : "centred" (default) or "paper" (see above).
    sampling : "sobol" (default: scrambled Sobol points) or "random" (independent draws, as the paper).
    antithetic : masks in antithetic pairs (default True).
    tolerance : stop once the estimated standard error is at most this fraction of the map's spread (a number
        >= 0), or None (default: always N masks).
    seed : random seed (default 0; None draws fresh entropy); the same seed gives the same map.

    ``estimator="paper", sampling="random", antithetic=False`` is the paper's method, and gives the same maps
    byte for byte as this class did before those parameters existed.
    """

    name = "rise"
    family = "perturbation"
    stochastic = True
    parameter_constraints = {
        "n_masks": P.Budget(),
        "cells": P.Int(1, 256),
        "p_keep": P.Interval(0.0, 1.0, closed="right"),
        "fill": P.fill(),
        "score": P.score(),
        "estimator": P.Options(*ESTIMATORS),
        "sampling": P.Options(*SAMPLINGS),
        "antithetic": P.Boolean(),
        "tolerance": P.Optional(P.Interval(0.0, None)),
        "seed": P.Seed(),
    }

    def __init__(
        self,
        n_masks: int = 4000,
        cells: int = 7,
        p_keep: float = 0.5,
        fill: str = "zero",
        score: str = "probability",
        estimator: str = "centred",
        sampling: str = "sobol",
        antithetic: bool = True,
        tolerance: float | None = None,
        seed: int = 0,
    ) -> None:
        self._set_params(locals())

    def planned_passes(self, size: tuple[int, int]) -> int:
        return self.n_masks

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        height, width = pixels.shape[:2]
        baseline = fill_image(pixels, self.fill, model.spec)
        difference = pixels - baseline
        sampler = MaskSampler(self.cells, self.p_keep, (height, width), self.sampling, self.antithetic, self.seed)
        centred = self.estimator == "centred"
        sums = _Sums(height * width, coverage=centred, pairs=self.tolerance is not None)
        # Chunks of an even size keep the pairs whole (the paper's generator keeps its own chunking).
        size = model.batch_size if sampler.legacy else max(2, model.batch_size - model.batch_size % 2)
        relative_error = None
        for start, stop in chunks(self.n_masks, size):
            masks = sampler.draw(stop - start)
            batch = perturb(masks, baseline, difference)
            scores = target_scores(model, batch, target, self.score)
            sums.add(scores, masks.reshape(len(masks), -1))
            progress(stop, self.n_masks)
            if self.tolerance is not None and stop >= MIN_MASKS_BEFORE_STOPPING and stop < self.n_masks:
                relative_error = sums.relative_error(self.p_keep, centred)
                if relative_error <= self.tolerance:
                    break
        saliency = sums.saliency(self.p_keep, centred)
        extras: dict[str, object] = {"masks_used": sums.count, "mean_score": sums.mean_score}
        if self.tolerance is not None:
            error = sums.standard_error(self.p_keep, centred)
            extras["relative_error"] = _relative(error, saliency)
            extras["standard_error"] = error.reshape(height, width).astype(np.float32)
        return Attribution(saliency.reshape(height, width).astype(np.float32), extras)


class _Sums:
    """Running sums over the masks: ``sum f_i M_i`` (``total``), the coverage ``sum M_i`` (for the centred
    estimator) and the scores; and for the standard error, over consecutive pairs j of masks, with
    ``A_j = sum_pair f M``, ``B_j = sum_pair M`` (per pixel) and ``F_j = sum_pair f``: the per-pixel sums of
    ``A^2, A B, B^2, A, B, A F, B F`` and the sums of ``F^2`` and ``F`` (float64).

    The standard error: the paper's map is the mean of the pairs' ``A_j / (2 p)``. The centred map is
    ``sum_i (f_i - fbar) M_i / (N p) = sum_i (f_i - fbar) (M_i - p) / (N p)`` (the scores minus their mean sum
    to zero), the mean of the pairs' ``U_j / (2 p)`` with ``U_j = sum_pair (f - fbar) (M - p) = A_j - fbar B_j -
    p (F_j - 2 fbar)``: that form, not ``A_j - fbar B_j``, is the one whose spread is the map's (the mean score
    is estimated from the same scores, which takes the ``p (f - mean)`` part of the spread away).
    """

    def __init__(self, pixels: int, coverage: bool, pairs: bool) -> None:
        self.total = np.zeros(pixels, dtype=np.float64)
        self.coverage = np.zeros(pixels, dtype=np.float64) if coverage else None
        self.score_sum = 0.0
        self.count = 0
        self.pairs = 0
        self.moments = np.zeros((7, pixels), dtype=np.float64) if pairs else None
        self.pair_scores = np.zeros(2)  # sum F^2, sum F

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.count if self.count else 0.0

    def add(self, scores: np.ndarray, masks: np.ndarray) -> None:
        scores = scores.astype(np.float64)
        if self.coverage is None:
            self.total += scores @ masks
        else:
            both = np.stack([scores, np.ones_like(scores)]) @ masks
            self.total += both[0]
            self.coverage += both[1]
        self.score_sum += float(scores.sum())
        self.count += len(scores)
        if self.moments is not None:
            whole = len(scores) - len(scores) % 2
            f = scores[:whole].reshape(-1, 2)
            m = masks[:whole].reshape(-1, 2, masks.shape[1]).astype(np.float64)
            a = np.einsum("jk,jkp->jp", f, m)
            b = m.sum(axis=1)
            pair = f.sum(axis=1)
            for row, values in enumerate((a * a, a * b, b * b, a, b)):
                self.moments[row] += values.sum(axis=0)
            self.moments[5] += pair @ a
            self.moments[6] += pair @ b
            self.pair_scores += (pair @ pair, pair.sum())
            self.pairs += len(pair)

    def saliency(self, p_keep: float, centred: bool) -> np.ndarray:
        total = self.total
        if centred:
            total = total - self.mean_score * self.coverage
        return total / (self.count * p_keep)

    def standard_error(self, p_keep: float, centred: bool) -> np.ndarray:
        """Per-pixel standard error of :meth:`saliency`, from the spread of the pairs' contributions."""
        n = self.pairs
        if self.moments is None or n < 2:
            return np.full(self.total.shape, np.inf)
        aa, ab, bb, a, b, af, bf = self.moments
        if centred:
            c, p = self.mean_score, p_keep
            ff, f = self.pair_scores
            gg, g = ff - 4 * c * f + 4 * c * c * n, f - 2 * c * n  # sums of G = F - 2c and G^2
            ag, bg = af - 2 * c * a, bf - 2 * c * b
            square = aa + c * c * bb + p * p * gg - 2 * c * ab - 2 * p * ag + 2 * c * p * bg
            mean = (a - c * b - p * g) / n
        else:
            square, mean = aa, a / n
        variance = np.maximum(square / n - mean * mean, 0.0) * n / (n - 1)
        return np.sqrt(variance / n) / (2 * p_keep)

    def relative_error(self, p_keep: float, centred: bool) -> float:
        return _relative(self.standard_error(p_keep, centred), self.saliency(p_keep, centred))


def _relative(error: np.ndarray, saliency: np.ndarray) -> float:
    """The root mean square of the standard error over the map's standard deviation (0 when both are 0)."""
    rms = float(np.sqrt(np.mean(np.square(error))))
    spread = float(np.std(saliency))
    if rms == 0.0:
        return 0.0
    return rms / spread if spread > 0 else float("inf")


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


__all__ = ["ESTIMATORS", "RISE", "SAMPLINGS", "generate_masks", "perturb"]
