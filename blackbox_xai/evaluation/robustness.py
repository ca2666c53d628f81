"""Robustness metrics: how much does the map change when the image changes imperceptibly?

Max-sensitivity and avg-sensitivity (Yeh, Hsieh, Suggala, Inouye and Ravikumar, "On the (In)fidelity and
Sensitivity of Explanations", NeurIPS 2019): the image is perturbed ``n_samples`` times uniformly within an
L-infinity ball of radius ``radius`` (pixel units), each copy is explained again by the same method with the same
hyperparameters (seed included) and the same target, and

    sensitivity_i = ||Phi(x'_i) - Phi(x)||_2 / ||Phi(x)||_2.

Max-sensitivity is the largest, avg-sensitivity the mean; lower is better.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..errors import ParameterError
from ..image import ImageSource, load_image, resize_pixels
from ..methods.base import Method
from ..model.base import Model
from ..targets import Target, TargetLike, resolve_target
from ._checks import check_float, check_int, check_map, check_model, check_seed

DEFAULT_RADIUS = 0.02 * 255


class SensitivityResult(NamedTuple):
    """``max`` and ``avg`` sensitivity, and the per-sample ``values`` (n_samples,)."""

    max: float
    avg: float
    values: np.ndarray


def sensitivity(
    model: Model,
    image: ImageSource,
    method: Method,
    target: TargetLike | Target,
    saliency: np.ndarray | None = None,
    n_samples: int = 10,
    radius: float = DEFAULT_RADIUS,
    seed: int = 0,
) -> SensitivityResult:
    """Max- and avg-sensitivity of ``method``'s explanation of ``image`` (Yeh et al. 2019).

    Parameters
    ----------
    model : the model explained.
    image : the image explained (path or array), at the resolution the map was made for.
    method : the :class:`~blackbox_xai.methods.Method` object that produced the map (re-explains the copies).
    target : the explained target (a fixed class, list or pair; "top1" is resolved once on the clean image, so all
        copies explain the same class). A resolved :class:`Target` is accepted.
    saliency : the map Phi(x) (H, W); None = computed with ``method``.
    n_samples : number of perturbed copies (default 10).
    radius : L-infinity radius of the perturbation in pixel units (default 0.02 * 255 = 5.1); the copies are
        clipped to [0, 255], which keeps them inside the ball.
    seed : seed of the perturbations (default 0).
    """
    model = check_model(model)
    if not isinstance(method, Method):
        raise ParameterError(f"method must be a blackbox_xai Method object, got {type(method).__name__}")
    count = check_int(n_samples, "n_samples", 1)
    radius = check_float(radius, "radius", 0.0, low_open=True)
    rng = np.random.default_rng(check_seed(seed))
    pixels = load_image(image)
    target_like = _fixed_target(model, pixels, target)
    if saliency is None:
        saliency = method.explain(model, pixels, target=target_like).saliency
    reference = check_map(saliency)
    if reference.shape != pixels.shape[:2]:
        raise ParameterError(
            f"saliency has shape {reference.shape} but the image is {pixels.shape[:2]}: they must match"
        )
    norm = float(np.linalg.norm(reference))
    if norm == 0:
        raise ParameterError("the map is all zeros: sensitivity (relative to ||map||) is undefined")
    values = np.empty(count, dtype=np.float64)
    for i in range(count):
        noise = rng.uniform(-radius, radius, size=pixels.shape).astype(np.float32)
        perturbed = np.clip(pixels + noise, 0.0, 255.0)
        other = method.explain(model, perturbed, target=target_like).saliency.astype(np.float64)
        values[i] = float(np.linalg.norm(other - reference)) / norm
    return SensitivityResult(float(values.max()), float(values.mean()), values)


def max_sensitivity(model: Model, image: ImageSource, method: Method, target: TargetLike | Target,
                    **options: Any) -> float:
    """Largest relative change of the map over the perturbed copies; see :func:`sensitivity`."""
    return sensitivity(model, image, method, target, **options).max


def avg_sensitivity(model: Model, image: ImageSource, method: Method, target: TargetLike | Target,
                    **options: Any) -> float:
    """Mean relative change of the map over the perturbed copies; see :func:`sensitivity`."""
    return sensitivity(model, image, method, target, **options).avg


def _fixed_target(model: Model, pixels: np.ndarray, target: Any) -> TargetLike:
    """A target that means the same class on every copy: resolve "top1" on the clean image."""
    if isinstance(target, Target):
        return target.to_json() if target.kind != "contrast" else tuple(target.classes)
    if isinstance(target, str):
        size = model.input_size or pixels.shape[:2]
        resolved = resolve_target(target, model.predict(resize_pixels(pixels, size))[0], labels=model.labels)
        return resolved.to_json() if resolved.kind != "contrast" else tuple(resolved.classes)
    return target
