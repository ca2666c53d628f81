"""LIME for images: a weighted linear surrogate over superpixels (Ribeiro, Singh and Guestrin, KDD 2016).

"Why should I trust you?": Explaining the predictions of any classifier. The image is cut into superpixels (the
interpretable features); random on/off patterns ``z`` over them make perturbed images (hidden superpixels take a
fill colour); the model scores them; a Ridge regression, weighted by a kernel on the distance of ``z`` to the
original (all-on) pattern, fits ``score ~ intercept + z @ coef``. The saliency of a pixel is the coefficient of
its superpixel.

The defaults are those of the reference implementation, ``lime_image.LimeImageExplainer.explain_instance``
(lime 0.2): quickshift superpixels (kernel_size=4, max_dist=200, ratio=0.2) computed on the image as a user's
uint8 photo reaches scikit-image (scaled to [0, 1] floats, then converted to CIELAB), 1000 samples whose first one
is the original image and the others switch each superpixel on with probability 1/2, hidden superpixels filled
with their own mean colour, cosine distance to the all-on vector, kernel ``sqrt(exp(-d**2 / width**2))`` with
width 0.25, and ``Ridge(alpha=1, fit_intercept=True)`` fitted with those sample weights on the class
probabilities.

Costs: one segmentation (quickshift: 0.3-0.5 s at 224x224 on one core; slic and felzenszwalb are ~10x faster),
then ``n_samples - 1`` forward passes (the all-on sample is the clean image, whose outputs ``explain`` has already
computed). Perturbed images are composed and evaluated in chunks of the model's batch size.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from sklearn.linear_model import Ridge

from ..errors import ParameterError
from ..model.base import Model
from ..targets import Target
from . import params as P
from .base import Attribution, Method, Progress, chunks, target_scores
from .fill import fill_image

SEGMENTATIONS = ("quickshift", "slic", "felzenszwalb", "grid")
FILLS = ("mean", "grey", "black", "zero", "blur")
"""LIME's fills: the shared ones, with "mean" meaning each superpixel's own mean colour (lime_image's default)."""

# Default parameters of each segmenter. quickshift: lime_image's own. slic: about 50 superpixels (39 on chelsea
# at 224), lime's usual alternative. felzenszwalb: scale 100, sigma 0.5, min_size 50 gives ~100 superpixels at
# 224 (108 on chelsea). grid: cells x cells blocks (an int, or a (rows, columns) pair).
DEFAULT_SEGMENTATION_PARAMS: dict[str, dict[str, Any]] = {
    "quickshift": {"kernel_size": 4, "max_dist": 200, "ratio": 0.2},
    "slic": {"n_segments": 50, "compactness": 10.0, "start_label": 0},
    "felzenszwalb": {"scale": 100.0, "sigma": 0.5, "min_size": 50},
    "grid": {"cells": 8},
}
# Arguments that LIME sets itself and a user may not pass.
_RESERVED = {"image", "rng", "random_seed", "channel_axis", "mask", "return_tree"}


class LIME(Method):
    """Local Interpretable Model-agnostic Explanations over superpixels (Ribeiro et al., KDD 2016).

    Parameters
    ----------
    n_samples : number of on/off patterns, the original image (all on) included (default 1000, as lime_image).
        The original is not evaluated again: ``n_samples - 1`` forward passes.
    segmentation : how superpixels are made: "quickshift" (default, as lime_image), "slic", "felzenszwalb"
        (scikit-image) or "grid" (regular blocks, deterministic).
    segmentation_params : keyword arguments of the segmenter, merged over its defaults (None = defaults):
        quickshift ``kernel_size=4, max_dist=200, ratio=0.2`` (lime_image's); slic ``n_segments=50,
        compactness=10, start_label=0``; felzenszwalb ``scale=100, sigma=0.5, min_size=50``; grid ``cells=8``
        (an int or a (rows, columns) pair). The scikit-image segmenters see the image scaled to [0, 1], as they
        see a uint8 photo.
    fill : what a hidden superpixel becomes: "mean" (default: its own mean colour, lime_image's
        ``hide_color=None``), "grey" (127.5), "black" (0, lime's ``hide_color=0`` on a uint8 image), "zero" (the
        pixel the model sees as zero after normalisation) or "blur" (a Gaussian blur of the image).
    kernel_width : width of the exponential kernel on the cosine distance (default 0.25, as lime_image); a sample
        at distance d weighs ``sqrt(exp(-d**2 / kernel_width**2))``.
    alpha : L2 penalty of the Ridge surrogate (default 1.0, as lime).
    score : the explained output: "probability" (default, lime explains class probabilities), "logit" or "raw".
    seed : random seed (default 0; None draws fresh entropy) of both the segmentation (quickshift's ``rng``)
        and the sampling; the same seed gives the same map.

    Extras
    ------
    segments : int32 (h, w) superpixel labels 0..F-1 at the model's resolution; segment_weights : float32 (F,)
    Ridge coefficients; intercept; r2 : the surrogate's weighted R^2 on the samples (local fidelity);
    local_prediction : the surrogate at the original image; clean_score : the explained score of the original;
    n_segments : F.
    """

    name = "lime"
    family = "perturbation"
    stochastic = True
    parameter_constraints = {
        "n_samples": P.Budget(2),
        "segmentation": P.Options(*SEGMENTATIONS),
        "segmentation_params": P.Optional(P.Dict()),
        "fill": P.Options(*FILLS),
        "kernel_width": P.Interval(0.0, None, closed="neither"),
        "alpha": P.Interval(0.0, None, closed="left"),
        "score": P.score(),
        "seed": P.Seed(),
    }

    def __init__(
        self,
        n_samples: int = 1000,
        segmentation: str = "quickshift",
        segmentation_params: dict[str, Any] | None = None,
        fill: str = "mean",
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        score: str = "probability",
        seed: int = 0,
    ) -> None:
        self._set_params(locals())  # n_samples >= 2: the original and at least one perturbed image
        self._segment_kwargs = resolve_segmentation_params(self.segmentation, self.segmentation_params)

    def planned_passes(self, size: tuple[int, int]) -> int:
        return self.n_samples - 1

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        segments = segment_image(pixels, self.segmentation, self._segment_kwargs, self.seed)
        n_features = int(segments.max()) + 1
        hidden = hide_image(pixels, segments, self.fill, model)
        rng = np.random.default_rng(self.seed)
        # As lime_image: the first pattern is the original image, the others switch each superpixel on w.p. 1/2.
        patterns = rng.integers(0, 2, size=(self.n_samples, n_features)).astype(bool)
        patterns[0] = True
        targets = np.empty(self.n_samples, dtype=np.float64)
        targets[0] = float(target.score(model.convert(clean_outputs[None], self.score))[0])
        progress(1, self.n_samples)
        for start, stop in chunks(self.n_samples - 1, model.batch_size):
            rows = patterns[1 + start:1 + stop]
            batch = compose(pixels, hidden, segments, rows)
            targets[1 + start:1 + stop] = target_scores(model, batch, target, self.score)
            progress(1 + stop, self.n_samples)
        weights = kernel_weights(patterns, self.kernel_width)
        surrogate = Ridge(alpha=self.alpha, fit_intercept=True)
        design = patterns.astype(np.float64)
        surrogate.fit(design, targets, sample_weight=weights)
        coefficients = np.asarray(surrogate.coef_, dtype=np.float64)
        saliency = coefficients[segments].astype(np.float32)
        extras = {
            "segments": segments.astype(np.int32),
            "segment_weights": coefficients.astype(np.float32),
            "intercept": float(surrogate.intercept_),
            "r2": float(surrogate.score(design, targets, sample_weight=weights)),
            "local_prediction": float(surrogate.intercept_ + coefficients.sum()),
            "clean_score": float(targets[0]),
            "n_segments": n_features,
        }
        return Attribution(saliency, extras, {"segmentation_params": dict(self._segment_kwargs)})


def resolve_segmentation_params(segmentation: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The segmenter's keyword arguments: ``params`` over its defaults, names checked against the segmenter."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise P.parameter_error("lime", "segmentation_params", params, "a dict or None")
    if segmentation == "grid":
        allowed = {"cells"}
    else:
        allowed = set(inspect.signature(_segmenter(segmentation)).parameters) - _RESERVED
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ParameterError(f"unknown {segmentation} parameter(s) {', '.join(map(repr, unknown))}; "
                             f"accepted: {', '.join(sorted(allowed))}")
    resolved = {**DEFAULT_SEGMENTATION_PARAMS[segmentation], **params}
    if segmentation == "grid":
        resolved["cells"] = _cells(resolved["cells"])
    return resolved


def segment_image(pixels: np.ndarray, segmentation: str, params: dict[str, Any], seed: int = 0) -> np.ndarray:
    """Superpixel labels (h, w) int64, numbered 0..F-1 without gaps, for float RGB ``pixels`` in [0, 255].

    The scikit-image segmenters get the image as float64 in [0, 1], which is what they make of a uint8 photo
    (so the superpixels are those lime_image finds for the same photo loaded as uint8).
    """
    height, width = pixels.shape[:2]
    if segmentation == "grid":
        rows, columns = _cells(params["cells"])
        if rows > height or columns > width:
            raise ParameterError(f"a {rows}x{columns} grid does not fit a {height}x{width} image")
        y = (np.arange(height) * rows) // height
        x = (np.arange(width) * columns) // width
        return (y[:, None] * columns + x[None, :]).astype(np.int64)
    image = np.asarray(pixels, dtype=np.float64) / 255.0
    function = _segmenter(segmentation)
    kwargs = dict(params)
    if segmentation == "quickshift":
        kwargs["rng"] = seed
    try:
        labels = function(image, **kwargs)
    except (TypeError, ValueError) as error:
        raise ParameterError(f"{segmentation} failed with segmentation_params {params}: {error}") from None
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(height, width).astype(np.int64)


def hide_image(pixels: np.ndarray, segments: np.ndarray, fill: str, model: Model | None = None) -> np.ndarray:
    """The image (h, w, 3) float32 whose pixels replace hidden superpixels (``fill``: one of :data:`FILLS`)."""
    if fill != "mean":
        return np.ascontiguousarray(fill_image(pixels, fill, model.spec if model is not None else None),
                                    dtype=np.float32)
    flat = segments.ravel()
    counts = np.bincount(flat, minlength=int(flat.max()) + 1).astype(np.float64)
    means = np.stack([np.bincount(flat, weights=pixels[..., c].ravel().astype(np.float64), minlength=len(counts))
                      for c in range(3)], axis=1) / counts[:, None]
    return np.ascontiguousarray(means[segments], dtype=np.float32)


def compose(pixels: np.ndarray, hidden: np.ndarray, segments: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """Perturbed images (n, h, w, 3): ``pixels`` where a superpixel is on in ``patterns`` (n, F), else ``hidden``.

    The keep masks are ``patterns[:, segments]``; each image is the hidden image with the kept pixels copied over
    by OpenCV (``cv2.copyTo``, ~10x faster than ``np.where`` over the 3-wide channel axis; same values).
    """
    keep = np.asarray(patterns, dtype=bool)[:, segments].view(np.uint8)  # 0/1 bytes, no copy
    batch = np.empty((len(patterns),) + pixels.shape, dtype=np.float32)
    batch[:] = hidden
    for mask, image in zip(keep, batch):
        cv2.copyTo(pixels, mask, image)
    return batch


def kernel_weights(patterns: np.ndarray, kernel_width: float) -> np.ndarray:
    """lime_image's sample weights: ``sqrt(exp(-d**2 / width**2))`` with d the cosine distance of each pattern
    (n, F) to the all-on pattern, ``1 - sqrt(k / F)`` for k superpixels on (1 for the all-off pattern, as
    scikit-learn's cosine distance of a zero vector)."""
    on = patterns.sum(axis=1).astype(np.float64)
    distances = 1.0 - np.sqrt(on / patterns.shape[1])
    return np.sqrt(np.exp(-(distances ** 2) / kernel_width ** 2))


def _segmenter(segmentation: str) -> Callable[..., np.ndarray]:
    from skimage import segmentation as skseg

    return {"quickshift": skseg.quickshift, "slic": skseg.slic, "felzenszwalb": skseg.felzenszwalb}[segmentation]


_CELLS = P.SequenceOf(P.Int(1), length=2, scalar="pair")


def _cells(value: Any) -> tuple[int, int]:
    try:
        rows, columns = _CELLS.convert(value)
    except (ValueError, TypeError):
        raise P.parameter_error("lime", "segmentation_params['cells']", value, _CELLS.describe()) from None
    if rows * columns < 2:
        raise P.parameter_error("lime", "segmentation_params['cells']", value, "a grid of at least 2 cells")
    return rows, columns
