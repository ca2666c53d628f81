"""Parameter checks and small helpers shared by the metric families (one clear ParameterError per mistake)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError
from ..image import resize_map, resize_pixels
from ..model.base import SCORE_KINDS, Model
from ..targets import Target, TargetLike, resolve_target


def check_map(saliency: Any, name: str = "saliency") -> np.ndarray:
    """A finite 2-D float map, or a ParameterError saying what is wrong."""
    array = np.asarray(saliency)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise ParameterError(f"{name} must be a 2-D map (H, W), got shape {array.shape}")
    if array.size == 0:
        raise ParameterError(f"{name} is empty (shape {array.shape})")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise ParameterError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"{name} contains NaN or infinite values")
    return array


def check_mask(mask: Any, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    """A boolean ground-truth mask of ``shape`` (nonzero = object) with at least one pixel."""
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise ParameterError(f"{name} must be a 2-D array (H, W), got shape {array.shape}")
    if array.shape != tuple(shape):
        raise ParameterError(
            f"{name} has shape {array.shape} but the saliency map has shape {tuple(shape)}: they must match"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ParameterError(f"{name} must be boolean or numeric, got dtype {array.dtype}")
    boolean = array.astype(bool)
    if not boolean.any():
        raise ParameterError(f"{name} is empty: a ground-truth mask needs at least one pixel")
    return boolean


def check_pixels(pixels: Any, name: str = "pixels") -> np.ndarray:
    """An image (H, W, 3) as float32 pixels in [0, 255]."""
    array = np.asarray(pixels)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ParameterError(f"{name} must be an RGB image (H, W, 3) in [0, 255], got shape {array.shape}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"{name} contains NaN or infinite values")
    return array


def check_same_size(pixels: np.ndarray, saliency: np.ndarray) -> None:
    if pixels.shape[:2] != saliency.shape:
        raise ParameterError(
            f"saliency has shape {saliency.shape} but the image is {pixels.shape[:2]}: they must match"
        )


def check_int(value: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    integral = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    whole_float = isinstance(value, (float, np.floating)) and float(value).is_integer()
    if not (integral or whole_float):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        limits = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ParameterError(f"{name} must be {limits}, got {value!r}")
    return number


def check_float(value: Any, name: str, low: float, high: float | None = None, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    if not np.isfinite(number) or too_low or (high is not None and number > high):
        bracket = "(" if low_open else "["
        limits = f"{bracket}{low}, {'inf)' if high is None else str(high) + ']'}"
        raise ParameterError(f"{name} must be in {limits}, got {value!r}")
    return number


def check_score(kind: str) -> str:
    if kind not in SCORE_KINDS:
        raise ParameterError(f"score must be one of {SCORE_KINDS}, got {kind!r}")
    return kind


def check_seed(seed: Any) -> int:
    return check_int(seed, "seed", 0)


def check_model(model: Any) -> Model:
    if not isinstance(model, Model):
        raise ParameterError(
            f"model must be a blackbox_xai Model (OnnxModel or CallableModel), got {type(model).__name__}"
        )
    return model


def model_resolution(model: Model, pixels: np.ndarray, saliency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and map resized to the model's input size (unchanged when the model takes any size)."""
    size = model.input_size
    if size is None or pixels.shape[:2] == tuple(size):
        return pixels, saliency
    return resize_pixels(pixels, size), resize_map(saliency.astype(np.float32), size).astype(np.float64)


def as_target(model: Model, pixels: np.ndarray, target: TargetLike | Target) -> Target:
    """A resolved :class:`Target` (resolving "top1" and checking class indices costs one forward pass)."""
    if isinstance(target, Target):
        if target.weights.shape[0] != model.n_classes:
            raise ParameterError(
                f"target was resolved for {target.weights.shape[0]} classes but the model has {model.n_classes}"
            )
        return target
    return resolve_target(target, model.predict(pixels)[0], labels=model.labels)


def target_from_json(value: Any) -> TargetLike:
    """Turn an explanation's JSON target (int, list, or {"contrast": [p, q]}) back into a target."""
    if isinstance(value, dict):
        pair = value.get("contrast")
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or len(value) != 1:
            raise ParameterError(f"cannot read the explanation's target {value!r}: expected {{'contrast': [p, q]}}")
        return (pair[0], pair[1])
    if isinstance(value, tuple):
        return value
    if isinstance(value, (list, np.ndarray)):
        return [v.item() if isinstance(v, np.generic) else v for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Area under y(x) by the trapezoid rule (numpy-version independent)."""
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)
