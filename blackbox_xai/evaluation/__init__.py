"""Scoring explanations: faithfulness, localisation, robustness and complexity metrics.

The metric functions are pure functions over arrays, one module per family (:mod:`.faithfulness`,
:mod:`.localisation`, :mod:`.robustness`, :mod:`.complexity`). :func:`evaluate` runs several of them on one
explanation and returns a plain dict::

    scores = bx.evaluate(model, "cat.jpg", exp, metrics=["deletion", "insertion", "pointing_game"], mask=mask)
    scores["deletion"], scores["deletion_curve"], scores["pointing_game"]

See :func:`list_metrics` for the names and :data:`METRICS` for what each one needs and which options it takes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..explanation import Explanation
from ..image import ImageSource, load_image, resize_map, resize_pixels
from ..methods import make_method
from ..methods.fill import zero_pixel
from ..model.base import Model
from ..targets import Target, resolve_target
from . import complexity, faithfulness, localisation, robustness
from ._checks import check_model, target_from_json
from .complexity import sparseness
from .faithfulness import CurveResult, aopc, deletion, insertion, noisy_linear_imputation, road
from .localisation import iou, pointing_game, relevance_mass_accuracy, relevance_rank_accuracy
from .robustness import SensitivityResult, avg_sensitivity, max_sensitivity, sensitivity


@dataclass(frozen=True)
class MetricInfo:
    """A metric known to :func:`evaluate`.

    ``compute(context, options)`` returns ``{name: float}`` (plus ``{name + "_curve": array}`` for curve metrics);
    ``options`` are the keyword options of :func:`evaluate` it takes.
    """

    name: str
    family: str
    higher_is_better: bool
    needs_mask: bool
    curve: bool
    options: tuple[str, ...]
    compute: Callable[[_Context, dict[str, Any]], dict[str, Any]]
    summary: str


class _Context:
    """What the metrics of one :func:`evaluate` call share, computed once and only when needed."""

    def __init__(self, model: Model, image: np.ndarray, explanation: Explanation, mask: np.ndarray | None) -> None:
        self.model = model
        self.image = image
        self.explanation = explanation
        self.saliency = np.asarray(explanation.saliency, dtype=np.float32)
        self.mask = mask
        self._model_view: tuple[np.ndarray, np.ndarray, Target] | None = None
        self._sensitivity: dict[tuple, SensitivityResult] = {}

    def model_view(self) -> tuple[np.ndarray, np.ndarray, Target]:
        """Pixels and map at the model's input size, and the resolved target."""
        if self._model_view is None:
            size = self.model.input_size or self.image.shape[:2]
            pixels = resize_pixels(self.image, size)
            saliency = resize_map(self.saliency, size)
            target = resolve_target(target_from_json(self.explanation.target), self._clean_scores(pixels))
            self._model_view = (pixels, saliency, target)
        return self._model_view

    def _clean_scores(self, pixels: np.ndarray) -> np.ndarray:
        """The model's outputs on the clean image, to resolve the explanation's target against.

        The explanation already carries them (``scores``) when it was made on this very image: reused when its
        target is recorded resolved (a class, a list, a pair: only the number of classes is read from the scores,
        checked against this model's) -- the case of every explanation a method returns. Anything else (a
        hand-made explanation with a target such as "top1", whose meaning depends on the scores' values, or
        another image) costs one forward pass on ``pixels``, as before.
        """
        explanation = self.explanation
        scores = np.asarray(explanation.scores)
        reusable = (
            not isinstance(target_from_json(explanation.target), str)
            and scores.shape == (self.model.n_classes,)
            and explanation.image is not None
            and np.asarray(explanation.image).shape == self.image.shape
            and np.array_equal(explanation.image, self.image)
        )
        return scores if reusable else self.model.predict(pixels)[0]

    def sensitivity(self, options: dict[str, Any]) -> SensitivityResult:
        key = tuple(sorted((k, repr(v)) for k, v in options.items()))
        if key not in self._sensitivity:
            explanation = self.explanation
            method = make_method(explanation.method, **explanation.params)
            self._sensitivity[key] = sensitivity(
                self.model, self.image, method, target_from_json(explanation.target), saliency=self.saliency,
                **options,
            )
        return self._sensitivity[key]


def _curve_metric(name: str, function: Callable[..., CurveResult], **fixed: Any) -> Callable:
    def compute(context: _Context, options: dict[str, Any]) -> dict[str, Any]:
        pixels, saliency, target = context.model_view()
        result = function(context.model, pixels, saliency, target, **fixed, **options)
        return {name: result.score, f"{name}_curve": result.curve}

    return compute


def _mask_metric(name: str, function: Callable[..., float]) -> Callable:
    def compute(context: _Context, options: dict[str, Any]) -> dict[str, Any]:
        return {name: function(context.saliency, context.mask, **options)}

    return compute


def _sensitivity_metric(name: str, field: str) -> Callable:
    def compute(context: _Context, options: dict[str, Any]) -> dict[str, Any]:
        return {name: getattr(context.sensitivity(options), field)}

    return compute


def _sparseness(context: _Context, options: dict[str, Any]) -> dict[str, Any]:
    return {"sparseness": sparseness(context.saliency)}


_SENSITIVITY_OPTIONS = ("n_samples", "radius", "seed")

METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("deletion", "faithfulness", False, False, True, ("n_steps", "baseline", "score"),
                   _curve_metric("deletion", deletion), "AUC of the target probability as salient pixels are removed"),
        MetricInfo("insertion", "faithfulness", True, False, True, ("n_steps", "blur_kernel", "blur_sigma", "score"),
                   _curve_metric("insertion", insertion),
                   "AUC of the target probability as salient pixels are inserted into a blurred image"),
        MetricInfo("aopc", "faithfulness", True, False, True, ("patch_size", "n_regions", "fill", "seed", "score"),
                   _curve_metric("aopc", aopc), "MoRF area over the perturbation curve, patches replaced by noise"),
        MetricInfo("road_morf", "faithfulness", False, False, True, ("percentages", "noise", "seed", "score"),
                   _curve_metric("road_morf", road, order="morf"),
                   "mean target probability with the most salient p% imputed (ROAD)"),
        MetricInfo("road_lerf", "faithfulness", True, False, True, ("percentages", "noise", "seed", "score"),
                   _curve_metric("road_lerf", road, order="lerf"),
                   "mean target probability with the least salient p% imputed (ROAD)"),
        MetricInfo("pointing_game", "localisation", True, True, False, ("tolerance",),
                   _mask_metric("pointing_game", pointing_game), "1 if the map's maximum is on the mask"),
        MetricInfo("relevance_mass", "localisation", True, True, False, (),
                   _mask_metric("relevance_mass", relevance_mass_accuracy),
                   "share of the (min-subtracted) relevance inside the mask"),
        MetricInfo("relevance_rank", "localisation", True, True, False, (),
                   _mask_metric("relevance_rank", relevance_rank_accuracy),
                   "share of the K most relevant pixels inside the mask (K = mask size)"),
        MetricInfo("iou", "localisation", True, True, False, ("threshold",), _mask_metric("iou", iou),
                   "intersection over union of the thresholded map with the mask"),
        MetricInfo("max_sensitivity", "robustness", False, False, False, _SENSITIVITY_OPTIONS,
                   _sensitivity_metric("max_sensitivity", "max"),
                   "largest relative change of the map under small input noise"),
        MetricInfo("avg_sensitivity", "robustness", False, False, False, _SENSITIVITY_OPTIONS,
                   _sensitivity_metric("avg_sensitivity", "avg"),
                   "mean relative change of the map under small input noise"),
        MetricInfo("sparseness", "complexity", True, False, False, (), _sparseness, "Gini index of |map|"),
    )
}

_ALIASES = {
    "morf": "aopc",
    "relevance_mass_accuracy": "relevance_mass",
    "relevance_rank_accuracy": "relevance_rank",
    "gini": "sparseness",
    "pointing": "pointing_game",
}


def list_metrics() -> list[str]:
    """Names accepted by :func:`evaluate` (and the CLI)."""
    return sorted(METRICS)


def evaluate(
    model: Model,
    image: ImageSource | None,
    explanation: Explanation,
    metrics: str | Sequence[str] = ("deletion", "insertion"),
    mask: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Score one explanation with several metrics.

    Parameters
    ----------
    model : the model that was explained.
    image : the explained image (path or array, its original resolution); None = ``explanation.image``.
    explanation : the :class:`~blackbox_xai.Explanation` to score (its saliency must have the image's size).
    metrics : a name or a list of names from :func:`list_metrics` (default: deletion and insertion).
    mask : ground-truth object mask (H, W) at the image's resolution (array, nonzero = object, or an image file,
        bright = object); required by the localisation metrics.
    **options : metric options, given to every requested metric that takes them (see ``METRICS[name].options``):
        n_steps, baseline, blur_kernel, blur_sigma, score (deletion/insertion); patch_size, n_regions, fill, seed
        (aopc); percentages, noise, seed (road_morf/road_lerf); tolerance (pointing_game); threshold (iou);
        n_samples, radius, seed (max_sensitivity/avg_sensitivity).

    Returns
    -------
    dict with one float per metric name and, for curve metrics (deletion, insertion, aopc, road_*), the curve as
    a numpy array under ``"<name>_curve"``.

    Faithfulness metrics run at the model's input size (map resized with
    :func:`~blackbox_xai.image.resize_map`, image with :func:`~blackbox_xai.image.resize_pixels`); localisation
    metrics compare the map and the mask at the image's original resolution; robustness metrics re-explain
    perturbed copies of the original image with the method and hyperparameters recorded in the explanation.
    """
    check_model(model)
    if not isinstance(explanation, Explanation):
        raise ParameterError(f"explanation must be an Explanation, got {type(explanation).__name__}")
    names = _metric_names(metrics)
    _check_options(names, options)
    if image is None:
        if explanation.image is None:
            raise ParameterError("give the explained image (the explanation does not carry it)")
        image = explanation.image
    pixels = load_image(image)
    saliency = np.asarray(explanation.saliency)
    if saliency.ndim != 2 or saliency.shape != pixels.shape[:2]:
        raise ParameterError(
            f"the explanation's saliency has shape {saliency.shape} but the image is {pixels.shape[:2]}: "
            "evaluate an explanation with the image it explains"
        )
    mask_array = None if mask is None else load_mask(mask, pixels.shape[:2])
    for name in names:
        if METRICS[name].needs_mask and mask_array is None:
            raise ParameterError(f"metric {name} needs a ground-truth mask (mask=...)")
    context = _Context(model, pixels, explanation, mask_array)
    results: dict[str, Any] = {}
    for name in names:
        info = METRICS[name]
        taken = {key: value for key, value in options.items() if key in info.options}
        results.update(info.compute(context, taken))
    return {key: (float(value) if np.isscalar(value) else value) for key, value in results.items()}


def _metric_names(metrics: str | Sequence[str]) -> list[str]:
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        requested = list(metrics)
    except TypeError:
        raise ParameterError(f"metrics must be a name or a list of names, got {metrics!r}") from None
    if not requested:
        raise ParameterError(f"no metrics requested; available: {', '.join(list_metrics())}")
    names = []
    for metric in requested:
        if not isinstance(metric, str):
            raise ParameterError(f"a metric name must be a string, got {metric!r}")
        key = metric.strip().lower().replace("-", "_").replace(" ", "_")
        key = _ALIASES.get(key, key)
        if key not in METRICS:
            raise ParameterError(f"unknown metric {metric!r}; available: {', '.join(list_metrics())}")
        if key not in names:
            names.append(key)
    return names


def _check_options(names: list[str], options: dict[str, Any]) -> None:
    accepted = {option for name in names for option in METRICS[name].options}
    unknown = sorted(set(options) - accepted)
    if unknown:
        valid = ", ".join(sorted(accepted)) or "none"
        raise ParameterError(
            f"option(s) {', '.join(unknown)} not taken by the requested metrics ({', '.join(names)}); "
            f"their options: {valid}"
        )


def load_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth mask as :func:`evaluate` reads it: an array (H, W) or (H, W, 1), nonzero = object, returned
    as is; or an image file, read as a boolean array, bright (mean of the channels > 127.5) = object. Raises
    :class:`ParameterError` unless it is (H, W) = ``shape``, the image's resolution."""
    if isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__"):
        mask = load_image(mask).mean(axis=2) > 127.5
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.shape != tuple(shape):
        raise ParameterError(
            f"mask has shape {array.shape} but the image is {tuple(shape)}: give the mask at the image's resolution"
        )
    return array


__all__ = [
    "METRICS",
    "CurveResult",
    "MetricInfo",
    "SensitivityResult",
    "aopc",
    "avg_sensitivity",
    "complexity",
    "deletion",
    "evaluate",
    "faithfulness",
    "insertion",
    "iou",
    "list_metrics",
    "load_mask",
    "localisation",
    "max_sensitivity",
    "noisy_linear_imputation",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "robustness",
    "sensitivity",
    "sparseness",
    "zero_pixel",
]
