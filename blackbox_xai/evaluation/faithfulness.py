"""Faithfulness metrics: does removing what the map calls important change the model's score?

* :func:`deletion` and :func:`insertion` (Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for
  Explanation of Black-box Models", BMVC 2018).
* :func:`aopc`, the MoRF region-perturbation curve and its area over the perturbation curve (Samek, Binder,
  Montavon, Lapuschkin and Müller, "Evaluating the visualization of what a deep neural network has learned",
  IEEE TNNLS 2017).
* :func:`road`, RemOve And Debias with noisy linear imputation (Rong, Leemann, Borisov, Kasneci and Kasneci,
  "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022), and the imputation
  itself, :func:`noisy_linear_imputation`.

Every function works in pixel space at the model's input resolution (an image and map of another size are resized
first: the image with :func:`~blackbox_xai.image.resize_pixels`, the map with :func:`~blackbox_xai.image.resize_map`)
and evaluates the perturbed images in chunks of ``model.batch_size``: never all steps at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from ..errors import ParameterError
from ..methods.fill import FILLS, fill_image
from ..model.base import Model
from ..targets import Target, TargetLike
from ._checks import (
    as_target,
    check_float,
    check_int,
    check_map,
    check_model,
    check_pixels,
    check_same_size,
    check_score,
    check_seed,
    model_resolution,
    trapezoid,
)

ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ROAD_ORDERS = ("morf", "lerf")
AOPC_FILLS = ("uniform",) + FILLS

# Neighbour offsets (dy, dx) and weights of the ROAD imputation: direct neighbours 1/6, diagonal ones 1/12.
_NEIGHBOURS = (
    ((0, 1), 1 / 6), ((0, -1), 1 / 6), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
    ((1, 1), 1 / 12), ((1, -1), 1 / 12), ((-1, 1), 1 / 12), ((-1, -1), 1 / 12),
)


class CurveResult(NamedTuple):
    """A curve metric: the summary ``score``, the ``curve`` (one value per step) and its ``x`` positions."""

    score: float
    curve: np.ndarray
    x: np.ndarray


def deletion(
    model: Model,
    pixels: np.ndarray,
    saliency: np.ndarray,
    target: TargetLike | Target = "top1",
    n_steps: int | None = 100,
    baseline: np.ndarray | float | None = None,
    score: str = "probability",
) -> CurveResult:
    """Deletion curve and its AUC (Petsiuk et al. 2018); lower is better.

    Pixels are replaced by ``baseline`` in order of decreasing saliency, ``n_steps`` equal shares at a time, and the
    target's score is recorded after each step (``n_steps + 1`` points, the clean image first). The AUC is the
    trapezoid rule over x = fraction of pixels removed, so it lies in [0, 1] for probabilities.

    Parameters
    ----------
    model : the model explained.
    pixels : the image (H, W, 3), pixels in [0, 255]; resized to the model input size when it has one.
    saliency : the map (H, W) at the same resolution as ``pixels``.
    target : a class index, "top1" (default), a list of classes, (p, q), or a resolved :class:`Target`.
    n_steps : number of removal steps (default 100, at most one pixel per step); None = one row of pixels per step,
        as in the reference implementation (224 steps at 224 x 224).
    baseline : the value removed pixels take: an RGB pixel (3,), a scalar, or an image (H, W, 3). Default: the
        pixel that is zero in the model's normalised space (the spec's mean colour; black without a mean).
    score : "probability" (default, softmax as in the paper), "logit" or "raw".

    Returns
    -------
    CurveResult with ``score`` = AUC, ``curve`` = target scores (n_steps + 1,), ``x`` = fraction removed.
    """
    model, pixels, saliency, target, score = _prepare(model, pixels, saliency, target, score)
    if baseline is None:
        finish = np.broadcast_to(model.preprocessor.zero_pixel(), pixels.shape)
    else:
        finish = _check_baseline(baseline, pixels.shape)
    return _pixel_curve(model, pixels, finish, saliency, target, n_steps, score)


def insertion(
    model: Model,
    pixels: np.ndarray,
    saliency: np.ndarray,
    target: TargetLike | Target = "top1",
    n_steps: int | None = 100,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    score: str = "probability",
) -> CurveResult:
    """Insertion curve and its AUC (Petsiuk et al. 2018); higher is better.

    Starts from a Gaussian-blurred copy of the image (kernel ``blur_kernel`` = 11, sigma ``blur_sigma`` = 5, as
    the reference; borders are reflected where the reference pads with zeros) and puts the original pixels back in
    order of decreasing saliency, ``n_steps`` equal shares at a time. The AUC is the trapezoid rule over
    x = fraction of pixels inserted.

    Parameters are those of :func:`deletion`, with ``blur_kernel`` (odd, >= 1) and ``blur_sigma`` (> 0) in place
    of ``baseline``.
    """
    model, pixels, saliency, target, score = _prepare(model, pixels, saliency, target, score)
    kernel = check_int(blur_kernel, "blur_kernel", 1)
    if kernel % 2 == 0:
        raise ParameterError(f"blur_kernel must be odd, got {blur_kernel}")
    sigma = check_float(blur_sigma, "blur_sigma", 0.0, low_open=True)
    blurred = cv2.GaussianBlur(pixels, (kernel, kernel), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    return _pixel_curve(model, blurred, pixels, saliency, target, n_steps, score)


def aopc(
    model: Model,
    pixels: np.ndarray,
    saliency: np.ndarray,
    target: TargetLike | Target = "top1",
    patch_size: int | None = None,
    n_regions: int = 100,
    fill: str = "uniform",
    seed: int = 0,
    score: str = "probability",
) -> CurveResult:
    """MoRF region perturbation and its AOPC (Samek et al. 2017); higher is better.

    The image is cut into a grid of non-overlapping ``patch_size`` squares (partial squares at the right and bottom
    borders); the squares are ranked by their summed relevance, and the first ``L = n_regions`` of them are
    replaced one after another (most relevant first) by ``fill``. With ``f`` the target score,

        AOPC = 1 / (L + 1) * sum_{k=0..L} (f(x_0) - f(x_k)).

    Parameters
    ----------
    model, pixels, saliency, target, score : as in :func:`deletion`.
    patch_size : side of the squares; default 9 at 224 pixels, scaled with the shorter image side
        (``max(1, round(9 * min(H, W) / 224))``).
    n_regions : L, the number of regions perturbed (default 100; at most the number of squares).
    fill : "uniform" (default: uniform noise in [0, 255] from a generator seeded with ``seed``, as the paper), or a
        fill of :func:`blackbox_xai.methods.fill.fill_image`: "black", "grey", "mean", "blur".
    seed : seed of the noise (default 0).

    Returns
    -------
    CurveResult with ``score`` = AOPC, ``curve`` = f(x_0) - f(x_k) for k = 0..L, ``x`` = k.
    """
    model, pixels, saliency, target, score = _prepare(model, pixels, saliency, target, score)
    height, width = saliency.shape
    if patch_size is None:
        patch = max(1, int(np.floor(9 * min(height, width) / 224 + 0.5)))
    else:
        patch = check_int(patch_size, "patch_size", 1, max(height, width))
    regions = check_int(n_regions, "n_regions", 1)
    if fill not in AOPC_FILLS:
        raise ParameterError(f"fill must be one of {AOPC_FILLS}, got {fill!r}")
    rng = np.random.default_rng(check_seed(seed))
    if fill == "uniform":
        replacement = rng.uniform(0.0, 255.0, size=pixels.shape).astype(np.float32)
    else:
        replacement = fill_image(pixels, fill, model.spec)
    rows, cols = -(-height // patch), -(-width // patch)
    cell_y = np.arange(height) // patch
    cell_x = np.arange(width) // patch
    cell = cell_y[:, None] * cols + cell_x[None, :]
    sums = np.bincount(cell.ravel(), weights=saliency.ravel(), minlength=rows * cols)
    order = np.argsort(-sums, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    rank = position[cell]
    regions = min(regions, order.size)
    counts = np.arange(regions + 1)
    curve = _progressive_scores(model, pixels, replacement, rank, counts, target, score)
    drops = curve[0] - curve
    return CurveResult(float(drops.mean()), drops, counts.astype(np.float64))


def road(
    model: Model,
    pixels: np.ndarray,
    saliency: np.ndarray,
    target: TargetLike | Target = "top1",
    order: str = "morf",
    percentages: Sequence[float] = ROAD_PERCENTAGES,
    noise: float = 0.01 * 255,
    seed: int = 0,
    score: str = "probability",
) -> CurveResult:
    """ROAD: remove the most (MoRF) or least (LeRF) salient p% of the pixels and impute them (Rong et al. 2022).

    For each p in ``percentages`` the ``round(p / 100 * H * W)`` pixels are removed (ties in the map broken by pixel
    order) and filled by :func:`noisy_linear_imputation` (which hides
    the shape of the removed region from the model), and the target score of the imputed image is recorded. The
    summary is the mean score over the percentages: lower is better for MoRF, higher for LeRF. (The paper reports
    accuracy over a data set; averaging ``score`` over images gives the per-image analogue.)

    Parameters
    ----------
    model, pixels, saliency, target, score : as in :func:`deletion`.
    order : "morf" (default, most relevant first) or "lerf" (least relevant first).
    percentages : percentages removed, each in (0, 100) (default 10, 20, ..., 90).
    noise : standard deviation of the Gaussian noise added to imputed pixels, in pixel units (default 0.01 * 255).
    seed : seed of the noise (default 0).

    Returns
    -------
    CurveResult with ``score`` = mean of the curve, ``curve`` = target score per percentage, ``x`` = p / 100.
    """
    model, pixels, saliency, target, score = _prepare(model, pixels, saliency, target, score)
    if order not in ROAD_ORDERS:
        raise ParameterError(f"order must be one of {ROAD_ORDERS}, got {order!r}")
    levels = _check_percentages(percentages)
    noise = check_float(noise, "noise", 0.0)
    rng = np.random.default_rng(check_seed(seed))
    flat = saliency.ravel()
    ranking = np.argsort(-flat if order == "morf" else flat, kind="stable")
    total = flat.size
    curve = np.empty(len(levels), dtype=np.float64)
    for start in range(0, len(levels), model.batch_size):
        batch = []
        for level in levels[start:start + model.batch_size]:
            count = min(int(round(level / 100.0 * total)), total - 1)
            removed = np.zeros(total, dtype=bool)
            removed[ranking[:count]] = True
            batch.append(noisy_linear_imputation(pixels, removed.reshape(saliency.shape), noise, rng))
        curve[start:start + len(batch)] = target.score(model.convert(model.predict(np.stack(batch)), score))
    return CurveResult(float(curve.mean()), curve, np.asarray(levels, dtype=np.float64) / 100.0)


def noisy_linear_imputation(
    pixels: np.ndarray,
    removed: np.ndarray,
    noise: float = 0.0,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Fill the ``removed`` pixels of an image by noisy linear imputation (Rong et al. 2022).

    Each removed pixel becomes the weighted mean of its (up to 8) neighbours inside the image, direct neighbours
    weighted 1/6 and diagonal ones 1/12, where neighbours that are themselves removed are unknowns too: one sparse
    linear system (factorised once, solved for every channel). A removed region with linearly varying surroundings
    is filled with the same linear ramp. Gaussian noise of standard deviation ``noise`` is then added to the
    imputed pixels, and values are clipped to [0, 255].

    Parameters
    ----------
    pixels : image (H, W, C) in [0, 255].
    removed : boolean (H, W), True where pixels are removed; at least one pixel must be kept.
    noise : noise standard deviation in pixel units (default 0: plain linear imputation).
    rng : a numpy Generator or a seed for the noise.

    Returns
    -------
    float32 image (H, W, C).
    """
    image = np.asarray(pixels, dtype=np.float64)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ParameterError(f"pixels must be an image (H, W, C), got shape {np.shape(pixels)}")
    removed = np.asarray(removed, dtype=bool)
    height, width, channels = image.shape
    if removed.shape != (height, width):
        raise ParameterError(f"removed has shape {removed.shape} but the image is {(height, width)}")
    noise = check_float(noise, "noise", 0.0)
    result = image.copy()
    index = np.flatnonzero(removed)
    count = index.size
    if count == 0:
        return result.astype(np.float32).reshape(np.shape(pixels))
    if count == removed.size:
        raise ParameterError("cannot impute an image with every pixel removed: keep at least one")
    variable = np.full(removed.size, -1, dtype=np.int64)
    variable[index] = np.arange(count)
    ys, xs = np.divmod(index, width)
    flat = image.reshape(-1, channels)
    diagonal = np.zeros(count)
    rhs = np.zeros((count, channels))
    rows, cols, values = [], [], []
    for (dy, dx), weight in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        equation = np.flatnonzero(inside)
        neighbour = ny[inside] * width + nx[inside]
        diagonal[equation] += weight
        unknown = variable[neighbour] >= 0
        rows.append(equation[unknown])
        cols.append(variable[neighbour[unknown]])
        values.append(np.full(int(unknown.sum()), -weight))
        # Each equation appears at most once per offset, so fancy-index accumulation is exact here.
        rhs[equation[~unknown]] += weight * flat[neighbour[~unknown]]
    rows.append(np.arange(count))
    cols.append(np.arange(count))
    values.append(diagonal)
    matrix = sparse.csc_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(count, count)
    )
    solution = spsolve(matrix, rhs)
    solution = np.asarray(solution).reshape(count, channels)
    if noise > 0:
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        solution = solution + generator.normal(0.0, noise, size=solution.shape)
    result.reshape(-1, channels)[index] = solution
    result = np.clip(result, 0.0, 255.0).astype(np.float32)
    return result.reshape(np.shape(pixels))


# --------------------------------------------------------------------------------------------------------------


def _prepare(
    model: Any, pixels: Any, saliency: Any, target: Any, score: str
) -> tuple[Model, np.ndarray, np.ndarray, Target, str]:
    model = check_model(model)
    pixels = check_pixels(pixels)
    saliency = check_map(saliency)
    check_same_size(pixels, saliency)
    score = check_score(score)
    pixels, saliency = model_resolution(model, pixels, saliency)
    return model, pixels, saliency, as_target(model, pixels, target), score


def _check_baseline(baseline: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(baseline, dtype=np.float32)
    if array.ndim == 0 or array.shape == (3,) or array.shape == tuple(shape):
        if not np.all(np.isfinite(array)):
            raise ParameterError("baseline contains NaN or infinite values")
        return np.broadcast_to(array, shape)
    raise ParameterError(
        f"baseline must be a scalar, an RGB pixel (3,) or an image {tuple(shape)}, got shape {array.shape}"
    )


def _check_percentages(percentages: Any) -> list[float]:
    try:
        levels = [float(p) for p in percentages]
    except (TypeError, ValueError):
        raise ParameterError(f"percentages must be a sequence of numbers in (0, 100), got {percentages!r}") from None
    if not levels:
        raise ParameterError("percentages is empty: give at least one percentage in (0, 100)")
    bad = [p for p in levels if not 0.0 < p < 100.0]
    if bad:
        raise ParameterError(f"percentages must lie in (0, 100), got {bad}")
    return levels


def _pixel_curve(
    model: Model,
    start: np.ndarray,
    finish: np.ndarray,
    saliency: np.ndarray,
    target: Target,
    n_steps: int | None,
    score: str,
) -> CurveResult:
    total = saliency.size
    steps = saliency.shape[0] if n_steps is None else min(check_int(n_steps, "n_steps", 1), total)
    if n_steps is None:
        # One row of pixels per step (the reference): step i changes min(i * W, H * W) pixels.
        counts = np.minimum(np.arange(steps + 1) * saliency.shape[1], total)
    else:
        counts = (np.arange(steps + 1) * total) // steps
    order = np.argsort(-saliency.ravel(), kind="stable")
    rank = np.empty(total, dtype=np.int64)
    rank[order] = np.arange(total)
    curve = _progressive_scores(model, start, finish, rank.reshape(saliency.shape), counts, target, score)
    fraction = counts / total
    return CurveResult(trapezoid(curve, fraction), curve, fraction)


def _progressive_scores(
    model: Model,
    start: np.ndarray,
    finish: np.ndarray,
    rank: np.ndarray,
    counts: np.ndarray,
    target: Target,
    score: str,
) -> np.ndarray:
    """Score of image i = ``finish`` where ``rank < counts[i]``, ``start`` elsewhere; in chunks of the batch size."""
    curve = np.empty(len(counts), dtype=np.float64)
    for first in range(0, len(counts), model.batch_size):
        last = min(first + model.batch_size, len(counts))
        changed = rank[None] < counts[first:last, None, None]
        batch = np.where(changed[..., None], finish, start).astype(np.float32, copy=False)
        curve[first:last] = target.score(model.convert(model.predict(batch), score))
    return curve
