"""Never silently wrong: an identically zero gradient is checked against the score itself.

A backward graph can give an identically zero gradient where the score does move: the exact derivative of a
rounding is zero (quantised graphs without straight-through rules), a saturated quantiser, a Where or a Cast that
cuts the path. Before a method trusts such a gradient it asks whether the score moves under a small perturbation:

* :func:`input_score_moves`: the explained score of the model on the image and on two antithetic random
  perturbations of ``amplitude`` pixel levels (default 4 of 255), two forward passes, cached on the model per image
  and target (so checked once per model and target);
* :func:`head_score_moves`: the same for a CAM head, activations perturbed by ``fraction`` (default 0.05) of
  their rms, two head passes.

If the score moves, the zero gradient is wrong as an explanation: ``"auto"`` falls back to the next source
(SPSA for the mask optimisers, finite differences for the CAM heads) and records :data:`ZERO_GRADIENT` as
``gradient_fallback``; an explicit choice fails with :func:`zero_gradient_error`; the gradient family, which has
no other source, says so in its constant-map warning (:data:`ZERO_GRADIENT`, as opposed to the score not
moving: :data:`SCORE_STILL`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..errors import GradientUnavailableError

__all__ = ["SCORE_STILL", "ZERO_GRADIENT", "head_score_moves", "input_score_moves", "is_zero",
           "zero_gradient_error"]

ZERO_GRADIENT = ("the gradient is identically zero although the score moves under a small perturbation (the "
                 "backward graph carries no signal here, e.g. a saturated or rounding quantiser)")
SCORE_STILL = "the gradient is zero and the score does not move under a small perturbation either"
_RELATIVE = 1e-6


def is_zero(gradient: Any) -> bool:
    """True when every entry of ``gradient`` is exactly zero (or it is empty)."""
    array = np.asarray(gradient)
    return not np.any(array)


def _moved(reference: float, values: np.ndarray) -> bool:
    return bool(np.any(np.abs(np.asarray(values, np.float64) - reference) > _RELATIVE * max(1.0, abs(reference))))


def input_score_moves(model: Any, pixels: np.ndarray, weights: np.ndarray, amplitude: float = 4.0,
                      seed: int = 0) -> bool:
    """Whether ``weights @ logits`` of ``model`` changes when the pixels (H, W, 3) move by +-``amplitude`` levels
    of uniform random noise (two forward passes; the answer is cached on the model per image and target)."""
    pixels = np.asarray(pixels, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float64)
    key = (hashlib.sha1(pixels.tobytes()).hexdigest(), hashlib.sha1(weights.tobytes()).hexdigest(), amplitude)
    cache = model.__dict__.setdefault("_score_moves", {})
    if key not in cache:
        noise = np.random.default_rng(seed).uniform(-amplitude, amplitude, pixels.shape).astype(np.float32)
        batch = np.clip(np.stack([pixels, pixels + noise, pixels - noise]), 0.0, 255.0)
        scores = model.predict(batch).astype(np.float64) @ weights
        cache[key] = _moved(float(scores[0]), scores[1:])
    return cache[key]


def head_score_moves(layer: Any, state: Any, weights: np.ndarray, fraction: float = 0.05, seed: int = 0) -> bool:
    """Whether ``weights @ logits`` of a CAM head changes when its activations move by +-``fraction`` of their rms
    in a random direction (two head passes plus the clean one)."""
    activations = np.asarray(state.activations, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(activations, dtype=np.float64)))) or 1.0
    noise = np.random.default_rng(seed).uniform(-1.0, 1.0, activations.shape).astype(np.float32) * fraction * rms
    scores = layer.head(state, np.stack([activations, activations + noise, activations - noise])).astype(
        np.float64) @ np.asarray(weights, dtype=np.float64)
    return _moved(float(scores[0]), scores[1:])


def zero_gradient_error(choice: str, alternative: str) -> GradientUnavailableError:
    """The one-line error of an explicit gradient choice whose gradient is zero although the score moves."""
    return GradientUnavailableError(f"gradient={choice!r}: {ZERO_GRADIENT}; use gradient='{alternative}' or "
                                    "'auto'")
