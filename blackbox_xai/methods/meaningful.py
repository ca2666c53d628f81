"""Meaningful perturbation (Fong and Vedaldi, "Interpretable Explanations of Black Boxes by Meaningful
Perturbation", ICCV 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model.base import Model
from ..targets import Target
from . import params as P
from .base import Attribution, Method, Progress
from .mask_optimisation import SCORE_GRADIENT_CONSTRAINTS, Adam, BlurPyramid, Resampler, ScoreGradient, blur_sigma


class MeaningfulPerturbation(Method):
    """The smallest blurred region that destroys the target score: a learned deletion mask.

    A low-resolution mask ``m`` (``mask_size`` x ``mask_size``, 1 = keep, 0 = blur) is upsampled bilinearly to
    the image and blends the image with a blurred copy (sigma ``blur`` x the shorter side; 10 px at 224 as in the
    paper). Adam minimises

        score(perturbed image) + l1 * mean|1 - m| + tv * (mean|d_x m|^beta + mean|d_y m|^beta)

    from ``m = 1``, with the mask kept in [0, 1] and shifted by a random jitter of up to ``jitter`` x the shorter
    side at each iteration (the paper's defence against adversarial masks). The saliency is ``1 - m`` upsampled:
    what had to be deleted. The regularisers are means over the mask, so their weights do not depend on its
    resolution.

    The score's gradient comes from the model's backward graph when it has one and otherwise from SPSA on the
    mask (``gradient``; see :mod:`blackbox_xai.methods.mask_optimisation`): the black-box cost is
    ``iterations x 2 x spsa_directions`` forward passes (16,000 at the defaults); the exact cost is
    ``iterations`` forward-backward passes (twice that for the probability score).

    Parameters
    ----------
    iterations : Adam steps (default 300; the paper uses 500).
    learning_rate : Adam's step (default 0.1, the paper's).
    mask_size : side of the optimised mask (default 28, the paper's 28 x 28).
    l1 : weight of the deletion area mean|1 - m|; None (default) = 0.05 for the probability score (in [0, 1]) and
        1.0 for logits and raw scores, whose range is about ten times wider (on the ground-truth shapes, logits with
        0.05 delete half the image; with 1.0 the deletion covers the evidence, IoU about 0.7).
    tv : weight of the total variation (default 0.2).
    beta : exponent of the total variation (default 3, the paper's).
    blur : sigma of the blurred copy as a fraction of the shorter side (default 10/224, the paper's 10 px).
    jitter : largest random shift of the mask per iteration, as a fraction of the shorter side (default 4/224).
    score : "probability" (default, the paper's softmax), "logit" or "raw". A saturated model (probability near 1)
        has almost no probability gradient; "logit" helps there.
    gradient : "auto" (default), "exact" or "spsa".
    spsa_directions : K, antithetic directions per SPSA estimate (default 8).
    spsa_block : SPSA directions are constant on blocks of this many x this many mask parameters (default 4).
    spsa_step : c, the size of the SPSA perturbation of the mask (default 0.1).
    seed : seeds the jitter and the SPSA directions (default 0; None draws fresh entropy).
    """

    name = "meaningful"
    aliases = ("meaningfulperturbation", "mp")
    family = "optimisation"
    stochastic = True
    parameter_constraints = {
        "iterations": P.Budget(),
        "learning_rate": P.Interval(0.0, None, closed="neither"),
        "mask_size": P.Int(1),
        "l1": P.Optional(P.Interval(0.0, None)),
        "tv": P.Interval(0.0, None),
        "beta": P.Interval(1.0, None),
        "blur": P.Interval(0.0, None, closed="neither"),
        "jitter": P.Interval(0.0, None),
        **SCORE_GRADIENT_CONSTRAINTS,
    }

    def __init__(
        self,
        iterations: int = 300,
        learning_rate: float = 0.1,
        mask_size: int = 28,
        l1: float | None = None,
        tv: float = 0.2,
        beta: float = 3.0,
        blur: float = 10 / 224,
        jitter: float = 4 / 224,
        score: str = "probability",
        gradient: str = "auto",
        spsa_directions: int = 8,
        spsa_step: float = 0.1,
        spsa_block: int = 4,
        seed: int = 0,
    ) -> None:
        self._set_params(locals())

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        size = pixels.shape[:2]
        l1 = self.l1 if self.l1 is not None else (0.05 if self.score == "probability" else 1.0)
        rng = np.random.default_rng(self.seed)
        oracle = ScoreGradient(model, target, self.score, self.gradient, self.spsa_directions, self.spsa_step,
                               seed=int(rng.integers(2**31)), block=self.spsa_block)
        pyramid = BlurPyramid(pixels, blur_sigma(self.blur, size), levels=2)
        upsample = Resampler((self.mask_size, self.mask_size), size)
        max_shift = int(round(self.jitter * min(size)))
        shift = [0, 0]

        def render(params: np.ndarray) -> np.ndarray:
            return _shifted(upsample.forward(params), shift)

        def render_adjoint(params: np.ndarray, gradients: np.ndarray) -> np.ndarray:
            return upsample.adjoint(_shifted_adjoint(gradients, shift))

        mask = np.ones((1, self.mask_size, self.mask_size), dtype=np.float32)
        optimiser = Adam(self.learning_rate)
        history = np.zeros((self.iterations, 3), dtype=np.float32)  # score, area term, tv term
        for iteration in range(self.iterations):
            shift[:] = rng.integers(-max_shift, max_shift + 1, size=2) if max_shift else (0, 0)
            scores, score_gradient = oracle(mask, render, render_adjoint, pyramid.apply, pyramid.adjoint)
            area, area_gradient = _deletion_area(mask[0])
            variation, variation_gradient = _total_variation(mask[0], self.beta)
            gradient = score_gradient[0] + l1 * area_gradient + self.tv * variation_gradient
            mask[0] = np.clip(mask[0] - optimiser.step(gradient), 0.0, 1.0)
            history[iteration] = (scores[0], area, variation)
            progress(iteration + 1, self.iterations)

        shift[:] = (0, 0)
        final_mask = upsample.forward(mask)[0]
        perturbed = pyramid.apply(final_mask[None])
        final_score = float(oracle.scores(perturbed)[0])
        extras: dict[str, Any] = {
            "mask": final_mask.astype(np.float32),
            "perturbed_image": perturbed[0].astype(np.float32),
            "history": history,
            "final_score": final_score,
            "clean_score": float(oracle.scores(pixels[None])[0]),
            "deleted_fraction": float(1.0 - final_mask.mean()),
            **oracle.report,
        }
        return Attribution((1.0 - final_mask).astype(np.float32), extras, {"l1": l1, "gradient": oracle.source})


def _deletion_area(mask: np.ndarray) -> tuple[float, np.ndarray]:
    """mean|1 - m| and its gradient (m in [0, 1], so |1 - m| = 1 - m)."""
    return float(np.mean(1.0 - mask)), np.full_like(mask, -1.0 / mask.size)


def _total_variation(mask: np.ndarray, beta: float) -> tuple[float, np.ndarray]:
    """mean|d_y m|^beta + mean|d_x m|^beta over neighbouring cells, and its gradient."""
    value = 0.0
    gradient = np.zeros_like(mask, dtype=np.float64)
    for axis in (0, 1):
        difference = np.diff(mask.astype(np.float64), axis=axis)
        if difference.size == 0:
            continue
        value += float(np.mean(np.abs(difference) ** beta))
        slope = beta * np.abs(difference) ** (beta - 1) * np.sign(difference) / difference.size
        # d/dm of diff along the axis: +slope on the later cell, -slope on the earlier one.
        if axis == 0:
            gradient[1:] += slope
            gradient[:-1] -= slope
        else:
            gradient[:, 1:] += slope
            gradient[:, :-1] -= slope
    return value, gradient.astype(np.float32)


def _shifted(masks: np.ndarray, shift: list[int]) -> np.ndarray:
    """Masks (n, h, w) moved by (dy, dx) pixels, edges repeated."""
    dy, dx = shift
    if not dy and not dx:
        return masks
    height, width = masks.shape[1:]
    rows = np.clip(np.arange(height) - dy, 0, height - 1)
    cols = np.clip(np.arange(width) - dx, 0, width - 1)
    return masks[:, rows][:, :, cols]


def _shifted_adjoint(gradients: np.ndarray, shift: list[int]) -> np.ndarray:
    """The adjoint of :func:`_shifted`: each output pixel's gradient goes back to the pixel it was copied from."""
    dy, dx = shift
    if not dy and not dx:
        return gradients
    count, height, width = gradients.shape
    rows = np.clip(np.arange(height) - dy, 0, height - 1)
    cols = np.clip(np.arange(width) - dx, 0, width - 1)
    by_rows = np.zeros((count, height, width), dtype=np.float32)
    np.add.at(by_rows, (slice(None), rows), gradients)
    result = np.zeros_like(by_rows)
    np.add.at(result, (slice(None), slice(None), cols), by_rows)
    return result
