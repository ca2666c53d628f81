"""What the mask-optimising methods share: blur perturbations, mask resampling, and the score's mask gradient.

Meaningful perturbation (:mod:`.meaningful`) and extremal perturbation (:mod:`.extremal`) both optimise a mask
``m`` in [0, 1] over the image: ``m = 1`` keeps a pixel, ``m = 0`` replaces it with a blurred copy. Their
objectives are a score of the perturbed image plus regularisers of the mask. The regularisers have closed-form
gradients; the score's gradient with respect to the mask parameters comes from one of two sources
(``gradient=``):

- ``"exact"``: the backward graph of the model (:meth:`blackbox_xai.model.OnnxModel.gradient`) gives the score's
  gradient in pixel space; the chain rule through the blur blend and the mask's parametrisation is applied here.
  Cost: one forward-backward pass per perturbed image and iteration (two passes when the score is a probability:
  the softmax needs the logits first).
- ``"spsa"``: a black box. Simultaneous perturbation (Spall 1992) with ``K`` antithetic Rademacher directions
  ``d_k`` on the mask *parameters* (low resolution, so the estimate is affordable):
  ``g = 1/K sum_k (s(theta + c d_k) - s(theta - c d_k)) / (2c) d_k``. Cost: ``2 K`` forward passes per perturbed
  image and iteration, whatever the number of parameters; the estimate is unbiased up to O(c^2) and its noise
  falls as 1/sqrt(K). The directions are constant on blocks of ``block`` x ``block`` mask parameters (at a random
  offset each time), so the estimate is that of the gradient's projection on smooth directions, with a noise
  ``block`` times smaller than independent directions give.

An exact gradient that is identically zero on the first step while the score moves under a small perturbation
(:mod:`.zero_gradient`) makes ``"auto"`` switch to ``"spsa"`` (``gradient_fallback`` in the extras) and an explicit
``"exact"`` fail. ``"auto"`` (the methods' default) takes ``"exact"`` when the model has a backward graph (an
:class:`~blackbox_xai.OnnxModel` whose ops all have backward rules and a float input) and ``"spsa"`` otherwise
(a :class:`~blackbox_xai.CallableModel`, or an op without a rule: the reason is kept as
``gradient_unavailable``).
"""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

from ..errors import ParameterError
from ..model.base import Model
from ..model.capabilities import INPUT_GRADIENTS, check_requirements
from ..targets import Target
from . import params as P
from .base import chunks
from .zero_gradient import ZERO_GRADIENT, input_score_moves, is_zero, zero_gradient_error

GRADIENT_SOURCES = ("auto", "exact", "spsa")

SCORE_GRADIENT_CONSTRAINTS: dict[str, P.Constraint] = {
    "score": P.score(),
    "gradient": P.Options(*GRADIENT_SOURCES),
    "spsa_directions": P.Int(1),
    "spsa_step": P.Interval(0.0, None, closed="neither"),
    "spsa_block": P.Int(1),
    "seed": P.Seed(),
}
"""The constraints of the parameters every mask optimiser shares: its explained score and :class:`ScoreGradient`'s
(merged into each optimiser's ``parameter_constraints``)."""


def interpolation_matrix(size_out: int, size_in: int) -> np.ndarray:
    """The (size_out, size_in) matrix of 1-D linear resampling with half-pixel centres (cv2.INTER_LINEAR's rule):
    ``cv2.resize(grid, (w_out, h_out)) == R_h @ grid @ R_w.T``, so the adjoint of resizing is ``R_h.T @ G @ R_w``."""
    matrix = np.zeros((size_out, size_in), dtype=np.float64)
    position = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    position = np.clip(position, 0.0, size_in - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = position - low
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, low), 1.0 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix


class Resampler:
    """Bilinear resampling of (n, h_in, w_in) grids to (n, h_out, w_out), with its exact adjoint."""

    def __init__(self, size_in: tuple[int, int], size_out: tuple[int, int]) -> None:
        self.rows = interpolation_matrix(size_out[0], size_in[0])
        self.cols = interpolation_matrix(size_out[1], size_in[1])
        self.rows32, self.cols32 = self.rows.astype(np.float32), self.cols.astype(np.float32)

    def _matrices(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float64 matrices for float64 input (exact checks), float32 otherwise (speed)."""
        return (self.rows, self.cols) if array.dtype == np.float64 else (self.rows32, self.cols32)

    def forward(self, grids: np.ndarray) -> np.ndarray:
        rows, cols = self._matrices(grids)
        return np.einsum("ij,njk,lk->nil", rows, grids.astype(rows.dtype, copy=False), cols, optimize=True)

    def adjoint(self, gradients: np.ndarray) -> np.ndarray:
        rows, cols = self._matrices(gradients)
        return np.einsum("ij,nil,lk->njk", rows, gradients.astype(rows.dtype, copy=False), cols, optimize=True)


def blur_sigma(fraction: float, size: tuple[int, int]) -> float:
    """A blur's standard deviation in pixels, given as a fraction of the shorter side (so 10 px at 224 is
    10 / 224 whatever the model's resolution)."""
    return float(fraction) * min(size)


class BlurPyramid:
    """The blur perturbation: a mask value ``m`` in [0, 1] picks a blur level, 0 the strongest, 1 the image.

    ``levels`` images are blurred with sigma ``max_sigma * (1 - l / (levels - 1))`` (l = 0 .. levels - 1: the last
    is the image itself); a mask value between two levels interpolates linearly between them (Fong, Patrick and
    Vedaldi 2019 use such a pyramid; ``levels = 2`` is Fong and Vedaldi 2017's blend
    ``m * image + (1 - m) * blur(image)``). The blend is piecewise linear in ``m``, so its derivative is exact.
    """

    def __init__(self, pixels: np.ndarray, max_sigma: float, levels: int = 8) -> None:
        if levels < 2:
            raise ParameterError(f"a blur pyramid needs at least 2 levels, got {levels}")
        self.levels = int(levels)
        pixels = np.asarray(pixels, dtype=np.float32)
        pyramid = []
        for level in range(self.levels):
            sigma = max_sigma * (1.0 - level / (self.levels - 1))
            if sigma <= 0.0:
                pyramid.append(pixels)
            else:
                pyramid.append(cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT))
        self.pyramid = np.stack(pyramid)  # (levels, h, w, 3)
        self.steps = np.diff(self.pyramid, axis=0)  # (levels - 1, h, w, 3): level l+1 minus level l
        # One table row per (lower level, pixel): the level's colour, then the step to the next level. A single
        # gather of one row index is about twice as fast as indexing the pyramid with (level, row, column).
        channels = self.pyramid.shape[-1]
        self._table = np.concatenate([self.pyramid[:-1].reshape(-1, channels), self.steps.reshape(-1, channels)],
                                     axis=1)
        self._pixel = np.arange(pixels.shape[0] * pixels.shape[1]).reshape(pixels.shape[:2])

    def _split(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The table row of each mask pixel's lower level and the fraction of the way to the next level."""
        position = np.clip(masks, 0.0, 1.0) * (self.levels - 1)
        low = np.minimum(np.floor(position).astype(np.int64), self.levels - 2)
        frac = (position - low).astype(np.float32)
        return low * self._pixel.size + self._pixel, frac

    def apply(self, masks: np.ndarray) -> np.ndarray:
        """The perturbed images (n, h, w, 3) for masks (n, h, w)."""
        rows, frac = self._split(masks)
        gathered = np.take(self._table, rows, axis=0)  # (n, h, w, 2 * channels)
        channels = gathered.shape[-1] // 2
        return gathered[..., :channels] + frac[..., None] * gathered[..., channels:]

    def adjoint(self, masks: np.ndarray, pixel_gradients: np.ndarray) -> np.ndarray:
        """d score / d mask (n, h, w) from d score / d pixels (n, h, w, 3) (zero where the mask is clipped)."""
        rows, _ = self._split(masks)
        channels = self._table.shape[1] // 2
        derivative = np.take(self._table[:, channels:], rows, axis=0) * (self.levels - 1)
        inside = (masks >= 0.0) & (masks <= 1.0)
        return np.einsum("nhwc,nhwc->nhw", pixel_gradients, derivative) * inside


class Adam:
    """Adam (Kingma and Ba 2015) on one array, minimising: ``step(gradient)`` returns the update to subtract."""

    def __init__(self, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self.first: np.ndarray | float = 0.0
        self.second: np.ndarray | float = 0.0
        self.count = 0

    def step(self, gradient: np.ndarray) -> np.ndarray:
        self.count += 1
        self.first = self.beta1 * self.first + (1 - self.beta1) * gradient
        self.second = self.beta2 * self.second + (1 - self.beta2) * gradient * gradient
        first = self.first / (1 - self.beta1 ** self.count)
        second = self.second / (1 - self.beta2 ** self.count)
        return self.learning_rate * first / (np.sqrt(second) + self.eps)


class Momentum:
    """Stochastic gradient descent with momentum and dampening (PyTorch's SGD rule, as TorchRay's extremal
    perturbation uses it), minimising: ``step(gradient)`` returns the update to subtract."""

    def __init__(self, learning_rate: float, momentum: float = 0.9, dampening: float = 0.9) -> None:
        self.learning_rate, self.momentum, self.dampening = learning_rate, momentum, dampening
        self.velocity: np.ndarray | None = None

    def step(self, gradient: np.ndarray) -> np.ndarray:
        if self.velocity is None:
            self.velocity = np.array(gradient, dtype=np.float64)
        else:
            self.velocity = self.momentum * self.velocity + (1 - self.dampening) * gradient
        return self.learning_rate * self.velocity


# Masks from parameters: params (n, ...) -> masks (n, h, w), and the adjoint d/d params from d/d masks.
Render = Callable[[np.ndarray], np.ndarray]
RenderAdjoint = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ScoreGradient:
    """The explained score of perturbed images and its gradient with respect to mask parameters.

    ``render(params)`` gives the masks (n, h, w) of a batch of parameter arrays and ``render_adjoint(params,
    mask_gradients)`` the chain rule back to the parameters; ``perturb(masks)`` gives the images and
    ``perturb_adjoint(masks, pixel_gradients)`` the chain rule back to the masks. See the module documentation
    for the sources and their costs.
    """

    def __init__(self, model: Model, target: Target, score: str, source: str, directions: int,
                 step: float, seed: int, block: int = 1) -> None:
        self.model, self.target, self.score = model, target, score
        self.block = int(block)
        self.directions, self.step = int(directions), float(step)
        self.rng = np.random.default_rng(seed)
        self.report: dict[str, Any] = {}
        if source not in GRADIENT_SOURCES:
            raise P.parameter_error("ScoreGradient", "source", source, P.Options(*GRADIENT_SOURCES).describe())
        self.requested = source
        self.source = self._resolve(source)
        self.report["gradient_source"] = self.source
        self._checked = False  # the first exact gradient is checked against the score (zero_gradient.py)

    def _resolve(self, source: str) -> str:
        if source == "spsa":
            return source
        gap = self.model.capability_gap(INPUT_GRADIENTS)
        if gap is None:
            return "exact"
        if source == "exact":
            check_requirements(self.model, (INPUT_GRADIENTS,), "gradient='exact' (use gradient='spsa' or 'auto')")
        self.report["gradient_unavailable"] = gap
        return "spsa"

    def pixel_gradients(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n,) and d score / d pixels (n, h, w, 3) by the backward graph."""
        weights = self.target.weights.astype(np.float32)
        as_probability = self.score == "probability" or (self.score == "raw"
                                                         and self.model.output_kind == "probabilities")
        if not as_probability:
            logits, gradients = self.model.gradient(pixels, weights)
            return logits @ weights, gradients
        # d (w . softmax(z)) / dz = p * w - p (w . p): the seed over the logits, from one forward pass first.
        probabilities = self.model.convert(self.model.predict(pixels), "probability").astype(np.float32)
        scores = probabilities @ weights
        seeds = probabilities * weights - probabilities * scores[:, None]
        _, gradients = self.model.gradient(pixels, seeds)
        return scores, gradients

    def scores(self, images: np.ndarray) -> np.ndarray:
        return self.target.score(self.model.convert(self.model.predict(images), self.score)).astype(np.float64)

    def __call__(self, params: np.ndarray, render: Render, render_adjoint: RenderAdjoint,
                 perturb: Callable[[np.ndarray], np.ndarray],
                 perturb_adjoint: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n,), d score / d params (n, ...)); scores are those of ``params`` themselves for the exact
        source and the mean of each antithetic pair for SPSA (no extra pass)."""
        if self.source == "exact":
            masks = render(params)
            images = perturb(masks)
            scores, pixel_gradients = self.pixel_gradients(images)
            if self._checked or not self._falls_back(images[0], pixel_gradients):
                return scores, render_adjoint(params, perturb_adjoint(masks, pixel_gradients))
        return self._spsa(params, render, perturb)

    def _falls_back(self, image: np.ndarray, pixel_gradients: np.ndarray) -> bool:
        """Once: whether an identically zero exact gradient hides a score that moves; then "auto" switches to
        SPSA (``report["gradient_fallback"]``) and an explicit "exact" fails with one line."""
        self._checked = True
        if not is_zero(pixel_gradients) or not input_score_moves(self.model, image, self.target.weights):
            return False
        if self.requested != "auto":
            raise zero_gradient_error(self.requested, "spsa")
        self.source = self.report["gradient_source"] = "spsa"
        self.report["gradient_fallback"] = ZERO_GRADIENT
        return True

    def _spsa(self, params: np.ndarray, render: Render,
              perturb: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        count, k = len(params), self.directions
        signs = self._directions(count, params.shape[1:])
        # Row r of the evaluation list: image r // (2k), direction (r // 2) % k, sign + for even r, - for odd r.
        total = count * 2 * k
        values = np.empty(total, dtype=np.float64)
        batch = max(1, self.model.batch_size)
        for start, stop in chunks(total, batch):
            rows = np.arange(start, stop)
            image, direction = rows // (2 * k), (rows // 2) % k
            sign = np.where(rows % 2 == 0, 1.0, -1.0).astype(np.float32)
            shape = (-1,) + (1,) * (params.ndim - 1)
            shifted = params[image] + self.step * sign.reshape(shape) * signs[image, direction]
            values[start:stop] = self.scores(perturb(render(shifted)))
        pairs = values.reshape(count, k, 2)
        slopes = (pairs[..., 0] - pairs[..., 1]) / (2.0 * self.step)  # (count, k)
        gradient = np.einsum("nk,nk...->n...", slopes, signs) / k
        return pairs.mean(axis=(1, 2)), gradient.astype(np.float32)

    def _directions(self, count: int, shape: tuple[int, ...]) -> np.ndarray:
        """(count, K, *shape) random +-1 directions, constant on blocks of ``block`` x ``block`` parameters placed
        at a random offset: the estimate then lives in a space ``block**2`` times smaller than the parameters (the
        masks are smooth anyway), which cuts its noise by as much for the same passes."""
        block = self.block
        if block <= 1 or len(shape) != 2:
            return self.rng.choice(np.array([-1.0, 1.0], np.float32), size=(count, self.directions, *shape))
        coarse = (shape[0] // block + 2, shape[1] // block + 2)
        signs = self.rng.choice(np.array([-1.0, 1.0], np.float32), size=(count, self.directions, *coarse))
        full = np.repeat(np.repeat(signs, block, axis=2), block, axis=3)
        dy, dx = self.rng.integers(0, block, size=2)
        return np.ascontiguousarray(full[:, :, dy:dy + shape[0], dx:dx + shape[1]])

    def passes_per_image(self) -> int:
        """Forward passes per perturbed image and iteration (backward-graph runs count as one)."""
        if self.source == "spsa":
            return 2 * self.directions
        return 2 if self.score == "probability" else 1
