"""Extremal perturbation (Fong, Patrick and Vedaldi, "Understanding Deep Networks via Extremal Perturbations and
Smooth Masks", ICCV 2019)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..model.base import Model
from ..targets import Target
from . import params as P
from .base import Attribution, Method, Progress
from .mask_optimisation import (SCORE_GRADIENT_CONSTRAINTS, BlurPyramid, Momentum, Resampler, ScoreGradient,
                                blur_sigma)

VARIANTS = ("preserve", "delete", "dual")


class SmoothMaskGenerator:
    """Smooth masks from a grid of bump weights: ``m(u) = smax_k p_k g(|u - u_k|)``.

    Bump centres ``u_k`` lie every ``step`` pixels; ``g`` is a Gaussian with a flat top,
    ``g(d) = exp(-2 max(d / sigma - 1/2, 0)^2)``, cut at ``d = 2 sigma`` (where it is 0.011), so a grid of ones
    gives a mask of ones and a single bump a disc of radius about ``sigma``. ``smax`` is the maximum
    (``smoothness = 0``, the paper's default) or the smooth maximum ``sum_k v_k softmax(v / smoothness)_k``. With
    weights in [0, 1] the mask is in [0, 1]. The mask is evaluated on a grid ``resolution`` times coarser than the
    image (one sample per bump step) and upsampled bilinearly, which keeps the cost per iteration low; every step
    has an exact adjoint.
    """

    def __init__(self, size: tuple[int, int], step: float, sigma: float, smoothness: float = 0.0) -> None:
        height, width = size
        self.size, self.step, self.sigma, self.smoothness = size, float(step), float(sigma), float(smoothness)
        self.grid_shape = (int(np.ceil((height - 1) / step)) + 1, int(np.ceil((width - 1) / step)) + 1)
        factor = max(1, int(step))
        self.coarse = (-(-height // factor), -(-width // factor))
        self.upsample = Resampler(self.coarse, size)
        # Coarse pixel centres in image coordinates.
        ys = (np.arange(self.coarse[0]) + 0.5) * (height / self.coarse[0]) - 0.5
        xs = (np.arange(self.coarse[1]) + 0.5) * (width / self.coarse[1]) - 0.5
        radius = int(np.ceil(2.0 * sigma / step))
        home_y, home_x = np.rint(ys / step).astype(int), np.rint(xs / step).astype(int)
        n_cells = self.grid_shape[0] * self.grid_shape[1]
        indices, weights = [], []
        for oy in range(-radius, radius + 1):
            for ox in range(-radius, radius + 1):
                cy, cx = home_y + oy, home_x + ox
                valid = ((cy >= 0) & (cy < self.grid_shape[0]))[:, None] & ((cx >= 0) & (cx < self.grid_shape[1]))
                distance = np.hypot((ys - cy * step)[:, None], (xs - cx * step)[None, :])
                kernel = np.exp(-2.0 * np.maximum(distance / sigma - 0.5, 0.0) ** 2) * (distance <= 2.0 * sigma)
                cell = np.clip(cy, 0, self.grid_shape[0] - 1)[:, None] * self.grid_shape[1] + np.clip(
                    cx, 0, self.grid_shape[1] - 1)[None, :]
                indices.append(np.where(valid, cell, n_cells))  # n_cells: a dummy weight that is always 0
                weights.append(kernel * valid)
        self.indices = np.stack(indices)  # (offsets, hc, wc)
        self.weights = np.stack(weights).astype(np.float32)
        self.weights64 = np.stack(weights)
        self.n_cells = n_cells
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _pooled(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled coarse masks (n, hc, wc) for ``params`` and what the adjoint needs: the winning offset of each
        coarse pixel for the maximum, d pooled / d values (n, offsets, hc, wc) for the smooth maximum. Remembered
        for the last params seen (the forward pass and its adjoint are called on the same weights)."""
        if self._cache is not None and self._cache[0].shape == params.shape and np.array_equal(self._cache[0], params):
            return self._cache[1], self._cache[2]
        padded = np.concatenate([params.reshape(len(params), -1), np.zeros((len(params), 1), params.dtype)], axis=1)
        kernel = self._kernel(params)
        if self.smoothness <= 0.0:
            pooled, derivative = self._running_max(padded, kernel)
        else:
            pooled, derivative = self._smooth_max(padded[:, self.indices] * kernel)
        self._cache = (params.copy(), pooled, derivative)
        return pooled, derivative

    def _kernel(self, params: np.ndarray) -> np.ndarray:
        return self.weights64 if params.dtype == np.float64 else self.weights

    def _running_max(self, padded: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The maximum over offsets, one offset at a time (the (n, offsets, hc, wc) array of every bump's value is
        never built), and the first offset that attains it (argmax's tie rule)."""
        pooled = padded[:, self.indices[0]] * kernel[0]
        best = np.zeros(pooled.shape, dtype=np.int32)
        for offset in range(1, len(self.indices)):
            values = padded[:, self.indices[offset]] * kernel[offset]
            better = values > pooled
            np.copyto(pooled, values, where=better)
            best[better] = offset
        return pooled, best

    def _smooth_max(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scaled = values / self.smoothness
        weights = np.exp(scaled - scaled.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        pooled = (weights * values).sum(axis=1)
        return pooled, weights * (1.0 + (values - pooled[:, None]) / self.smoothness)

    def forward(self, params: np.ndarray) -> np.ndarray:
        """Masks (n, h, w) for bump weights (n, gh, gw)."""
        pooled, _ = self._pooled(params)
        return self.upsample.forward(pooled)

    def adjoint(self, params: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        """d / d params (n, gh, gw) from d / d masks (n, h, w)."""
        _, derivative = self._pooled(params)
        kernel = self._kernel(params)
        coarse = self.upsample.adjoint(gradients)  # (n, hc, wc)
        if self.smoothness <= 0.0:  # only the winning bump of each coarse pixel receives its gradient
            pixel = np.arange(coarse[0].size).reshape(coarse.shape[1:])
            cells = self.indices.reshape(len(self.indices), -1)[derivative, pixel]  # (n, hc, wc)
            per_value = kernel.reshape(len(kernel), -1)[derivative, pixel] * coarse
        else:
            cells = np.broadcast_to(self.indices, derivative.shape)
            per_value = derivative * kernel * coarse[:, None]  # (n, offsets, hc, wc)
        result = np.empty((len(params), self.n_cells), dtype=per_value.dtype)
        for i in range(len(params)):
            result[i] = np.bincount(cells[i].ravel(), per_value[i].ravel(), minlength=self.n_cells + 1)[:-1]
        return result.reshape(len(params), *self.grid_shape)


class ExtremalPerturbation(Method):
    """The region of a fixed area that keeps (or, deleted, destroys) the target score the most.

    For each area ``a`` in ``areas`` a smooth mask (:class:`SmoothMaskGenerator`: bumps every ``step`` x the
    shorter side, radius ``sigma`` x the shorter side) is optimised to maximise the reward minus the area
    penalty ``lambda * mean((sort(m) - r_a)^2)``, where ``r_a`` is the sorted mask with exactly a fraction ``a`` of
    ones (the paper's ranking constraint) and ``lambda`` starts at ``area_weight`` and grows by ``area_growth`` per
    iteration, so the constraint tightens as the reward converges. The perturbation is a blur pyramid
    (``blur_levels`` levels up to sigma ``max_blur`` x the shorter side; 20 px at 224 as in TorchRay). Rewards:
    "preserve" keeps the mask and blurs the rest, reward = score(kept); "delete" blurs the mask, reward =
    -score(deleted); "dual" adds the two. The areas are optimised together in one batch.

    The mask weights start at 0.5 and are kept in [0, 1]. The optimiser is SGD with momentum 0.9 and dampening
    0.9 (learning rate ``learning_rate``), as TorchRay's implementation of the paper, on the logits by default.
    Its step scales with the score, so a score of another range (probabilities) may need another learning rate.
    The first step follows the reward alone: from the uniform start every mask value ties, and the ranking
    penalty's gradient would break the ties by pixel order.

    The score's gradient comes from the model's backward graph or, for a black box, from SPSA on the bump weights
    (``gradient``; see :mod:`blackbox_xai.methods.mask_optimisation`): cost ``iterations x len(areas) x (1 or 2 for
    "dual")`` forward-backward passes with exact gradients, ``2 x spsa_directions`` times that many forward passes
    with SPSA.

    The ranking penalty drives the sorted mask towards a fraction ``a`` of ones, but a mask made of smooth bumps
    keeps soft edges, so its mean exceeds ``a`` by a few per cent of the image (measured on the ground-truth
    shapes: 1-4%). The final mask of each area is therefore the ``round(a h w)`` highest pixels of the optimised
    smooth mask: it covers exactly the area, and its score is the one reported.

    ``saliency`` is the sum of the smooth masks of all areas (pixels kept even in the smallest region score
    highest). ``extras``: ``masks`` (n_areas, h, w), the exact-area binary masks; ``smooth_masks``, the optimised
    masks; ``areas`` and ``smooth_areas``, their means; ``target_areas``; ``scores``, the score of each area's
    perturbed image (the kept region for preserve and dual, the image with the region blurred for delete);
    ``clean_score``; ``history`` (iterations, n_areas, 2): reward and area penalty per step.

    Parameters
    ----------
    areas : fractions of the image the masks cover (default (0.05, 0.1, 0.2), as the paper's benchmarks).
    variant : "preserve" (default), "delete" or "dual".
    iterations : optimisation steps (default 300; TorchRay's default is 800).
    learning_rate : SGD's step on the bump weights (default 0.01, TorchRay's).
    step : bump spacing as a fraction of the shorter side (default 7/224, TorchRay's 7 px).
    sigma : bump radius as a fraction of the shorter side (default 21/224, TorchRay's 21 px).
    smoothness : temperature of the smooth maximum (default 0: the maximum, as TorchRay); keep it small (about
        0.05): the smooth maximum averages over every bump within reach, most of them near 0.
    max_blur : strongest blur as a fraction of the shorter side (default 20/224).
    blur_levels : levels of the blur pyramid (default 8).
    area_weight : lambda at the start (default 300, the paper's).
    area_growth : lambda's factor per iteration (default 1.0035, the paper's).
    score : "logit" (default, TorchRay explains the network's output before softmax), "probability" or "raw".
    gradient : "auto" (default), "exact" or "spsa".
    spsa_directions : K, antithetic directions per SPSA estimate (default 8).
    spsa_block : SPSA directions are constant on blocks of this many x this many mask parameters (default 4).
    spsa_step : c, the size of the SPSA perturbation of the weights (default 0.1).
    seed : seeds the SPSA directions (default 0; None draws fresh entropy); the exact path is
        deterministic.
    """

    name = "extremal"
    aliases = ("extremalperturbation", "ep")
    family = "optimisation"
    stochastic = True
    parameter_constraints = {
        "areas": P.SequenceOf(P.Interval(0.0, 1.0, closed="neither"), scalar=True),
        "variant": P.Options(*VARIANTS),
        "iterations": P.Budget(),
        "learning_rate": P.Interval(0.0, None, closed="neither"),
        "step": P.Interval(0.0, None, closed="neither"),
        "sigma": P.Interval(0.0, None, closed="neither"),
        "smoothness": P.Interval(0.0, None),
        "max_blur": P.Interval(0.0, None, closed="neither"),
        "blur_levels": P.Int(2),
        "area_weight": P.Interval(0.0, None),
        "area_growth": P.Interval(0.0, None, closed="neither"),
        **SCORE_GRADIENT_CONSTRAINTS,
    }

    def __init__(
        self,
        areas: Sequence[float] = (0.05, 0.1, 0.2),
        variant: str = "preserve",
        iterations: int = 300,
        learning_rate: float = 0.01,
        step: float = 7 / 224,
        sigma: float = 21 / 224,
        smoothness: float = 0.0,
        max_blur: float = 20 / 224,
        blur_levels: int = 8,
        area_weight: float = 300.0,
        area_growth: float = 1.0035,
        score: str = "logit",
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
        side = min(size)
        generator = SmoothMaskGenerator(size, max(1.0, self.step * side), max(1.0, self.sigma * side),
                                        self.smoothness)
        pyramid = BlurPyramid(pixels, blur_sigma(self.max_blur, size), self.blur_levels)
        oracle = ScoreGradient(model, target, self.score, self.gradient, self.spsa_directions, self.spsa_step,
                               self.seed, block=self.spsa_block)
        n_areas, n_pixels = len(self.areas), size[0] * size[1]
        # The reference sorted masks: a fraction a of ones at the top.
        references = np.zeros((n_areas, n_pixels), dtype=np.float32)
        for i, area in enumerate(self.areas):
            references[i, n_pixels - int(round(area * n_pixels)):] = 1.0
        signs = {"preserve": (1.0,), "delete": (-1.0,), "dual": (1.0, -1.0)}[self.variant]

        def render_for(sign: float):
            if sign > 0:
                return generator.forward, generator.adjoint
            return (lambda p: 1.0 - generator.forward(p)), (lambda p, g: -generator.adjoint(p, g))

        params = np.full((n_areas, *generator.grid_shape), 0.5, dtype=np.float32)
        optimiser = Momentum(self.learning_rate)
        weight = self.area_weight
        history = np.zeros((self.iterations, n_areas, 2), dtype=np.float32)  # reward, area penalty
        for iteration in range(self.iterations):
            reward = np.zeros(n_areas)
            gradient = np.zeros_like(params)
            for sign in signs:
                render, adjoint = render_for(sign)
                scores, score_gradient = oracle(params, render, adjoint, pyramid.apply, pyramid.adjoint)
                reward += sign * scores
                gradient += sign * score_gradient
            masks = generator.forward(params).reshape(n_areas, -1)
            order = np.argsort(masks, axis=1)
            residual = np.take_along_axis(masks, order, axis=1) - references
            penalty = (residual ** 2).mean(axis=1)
            penalty_gradient = np.zeros_like(masks)
            np.put_along_axis(penalty_gradient, order, 2.0 * residual / n_pixels, axis=1)
            if iteration:  # the first step follows the reward alone: it breaks the uniform start's ties
                gradient -= weight * generator.adjoint(params, penalty_gradient.reshape(n_areas, *size))
            # Maximise reward - weight * penalty: step along its gradient.
            params = np.clip(params + optimiser.step(gradient), 0.0, 1.0)
            history[iteration, :, 0], history[iteration, :, 1] = reward, penalty
            weight *= self.area_growth
            progress(iteration + 1, self.iterations)

        smooth = generator.forward(params)
        masks = _top_fraction(smooth, self.areas)
        kept = masks if self.variant != "delete" else 1.0 - masks
        final_scores = oracle.scores(pyramid.apply(kept))
        extras: dict[str, Any] = {
            "masks": masks,
            "smooth_masks": smooth.astype(np.float32),
            "areas": masks.reshape(n_areas, -1).mean(axis=1).astype(np.float32),
            "smooth_areas": smooth.reshape(n_areas, -1).mean(axis=1).astype(np.float32),
            "target_areas": np.asarray(self.areas, dtype=np.float32),
            "scores": final_scores.astype(np.float32),
            "clean_score": float(oracle.scores(pixels[None])[0]),
            "history": history,
            **oracle.report,
        }
        return Attribution(smooth.sum(axis=0).astype(np.float32), extras, {"gradient": oracle.source})


def _top_fraction(masks: np.ndarray, areas: Sequence[float]) -> np.ndarray:
    """Binary masks (n, h, w) float32 holding the round(a * h * w) highest pixels of each smooth mask (ties broken
    by position), so each covers its area exactly."""
    result = np.zeros_like(masks, dtype=np.float32)
    for mask, out, area in zip(masks, result, areas):
        count = int(round(area * mask.size))
        order = np.argsort(-mask.ravel(), kind="stable")[:count]
        out.ravel()[order] = 1.0
    return result
