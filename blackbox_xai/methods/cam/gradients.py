"""Gradients of the explained score with respect to a layer's activations, behind one interface.

The ``gradient`` parameter takes the shared vocabulary (GUIDE section 1): "auto", "exact" or
"finite-difference" ("affine" and "backward" are accepted as legacy spellings that force that exact source). The
explanation records ``params["gradient"]`` as "exact" or "finite-difference" and the concrete source in
``params["gradient_source"]``. Sources:

- ``affine``: the head is global average pooling + a linear layer, so ``dy/dA_kij = (w_target @ W)_k / (h w)``,
  read exactly from the graph's weights at no cost;
- ``backward``: exact gradients of any head by a backward graph of ordinary ONNX ops
  (:meth:`blackbox_xai.model.layer_model.LayerModel.head_gradient`), one head pass whatever the number of
  channels; used when the head is not affine and every op of the head has a backward rule;
- ``finite-difference``: central differences of the head, with a step ``h = c * rms(A)`` (GUIDE section 3: a
  fixed absolute step fails in float32) and every perturbed copy evaluated in batched head calls. Derivatives along
  a few directions (one per channel for Grad-CAM, 2K head passes) are cheap; element-wise gradients cost
  2 x K x h x w head passes. Each result is re-computed at h/2 and the relative disagreement reported.

"auto" tries them in that order ("exact": the first two only, an error when neither applies): affine (free),
backward (one pass), finite differences (2K head passes or more); when the backward graph cannot be built (an op
without a rule), the reason is reported as ``backward_unavailable``. A backward gradient that is identically zero
while the head's score moves under a small perturbation (:mod:`..zero_gradient`, two head passes) is not used:
"auto" falls back to finite differences and reports ``gradient_fallback``; an explicit "exact"/"backward" fails.

The explained score is ``target.weights @ logits`` (logits: the pre-softmax scores), so a contrast (p, q) is the
gradient of ``y_p - y_q``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...errors import GradientUnavailableError, ParameterError
from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from ..base import chunks
from ..zero_gradient import ZERO_GRADIENT, head_score_moves, is_zero, zero_gradient_error

SOURCES = ("auto", "exact", "finite-difference", "affine", "backward")
"""Accepted values of the CAM family's ``gradient``: the shared vocabulary's, then the legacy spellings of a
concrete exact source."""


def resolved_gradient(source_name: str) -> dict[str, str]:
    """What an explanation records for a gradient source: ``gradient`` in the shared vocabulary ("exact" or
    "finite-difference") and the concrete ``gradient_source`` ("affine", "backward" or "finite-difference")."""
    vocabulary = "finite-difference" if source_name == "finite-difference" else "exact"
    return {"gradient": vocabulary, "gradient_source": source_name}

# Directions are produced lazily: directions(start, stop) -> (stop - start, K, h, w).
Directions = Callable[[int, int], np.ndarray]


class GradientSource:
    """Derivatives of the target score along directions in activation space, and full gradients."""

    name = ""

    def __init__(self, layer: LayerModel, state: LayerState, target: Target) -> None:
        self.layer = layer
        self.state = state
        self.target = target
        self.report: dict[str, Any] = {"gradient_source": self.name}

    def gradient(self) -> np.ndarray:
        """d score / d A, shape (K, h, w)."""
        raise NotImplementedError

    def derivatives(self, directions: Directions, count: int) -> np.ndarray:
        """Directional derivatives (count,) of the score along ``count`` directions."""
        gradient = self.gradient()
        return np.concatenate([np.einsum("nkhw,khw->n", directions(start, stop), gradient)
                               for start, stop in chunks(count, 512)])

    def channel_sums(self) -> np.ndarray:
        """sum_ij dy/dA_kij per channel (K,): the direction is channel k set to ones."""
        channels, height, width = self.state.activations.shape

        def planes(start: int, stop: int) -> np.ndarray:
            result = np.zeros((stop - start, channels, height, width), dtype=np.float32)
            result[np.arange(stop - start), np.arange(start, stop)] = 1.0
            return result

        return self.derivatives(planes, channels)


class AffineGradients(GradientSource):
    """Exact gradients of an affine head (global average pooling then a linear layer)."""

    name = "affine"

    def gradient(self) -> np.ndarray:
        channels, height, width = self.state.activations.shape
        per_channel = (self.target.weights @ self.layer.affine.weight) / (height * width)
        return np.broadcast_to(per_channel[:, None, None], (channels, height, width)).astype(np.float32)

    def channel_sums(self) -> np.ndarray:
        """sum_ij dy/dA_kij = (w_target @ W)_k, directly (the base class's one-hot planes cost 150 ms at 1280
        channels for the same numbers)."""
        used = np.flatnonzero(self.target.weights)  # the target's classes
        return self.target.weights[used].astype(np.float64) @ self.layer.affine.weight[used].astype(np.float64)


class BackwardGradients(GradientSource):
    """Exact gradients of any head by its backward graph (:meth:`LayerModel.head_gradient`): one head pass.

    Raises :class:`~blackbox_xai.errors.GradientUnavailableError` when the head's backward graph cannot be built.
    """

    name = "backward"

    def __init__(self, layer: LayerModel, state: LayerState, target: Target) -> None:
        super().__init__(layer, state, target)
        gap = layer.head_gradient_gap()
        if gap is not None:
            raise GradientUnavailableError(gap)
        self._gradient: np.ndarray | None = None

    def gradient(self) -> np.ndarray:
        if self._gradient is None:
            _, self._gradient = self.layer.head_gradient(self.state, self.target.weights)
        return self._gradient

    def channel_sums(self) -> np.ndarray:
        """sum_ij dy/dA_kij, read off the gradient (the base class's one-hot planes give the same numbers)."""
        return self.gradient().astype(np.float64).sum(axis=(1, 2))


class FiniteDifferenceGradients(GradientSource):
    """Central finite differences of the head, step ``h = c * rms(A)``, re-checked at h/2.

    Parameters
    ----------
    step : c (default 0.05, within the [1e-2, 1e-1] range that float32 tolerates).
    check : also compute every result at h/2 and report the relative disagreement (doubles the head passes).
    """

    name = "finite-difference"

    def __init__(self, layer: LayerModel, state: LayerState, target: Target, step: float = 0.05,
                 check: bool = True) -> None:
        super().__init__(layer, state, target)
        rms = float(np.sqrt(np.mean(np.square(state.activations, dtype=np.float64))))
        self.step = step * (rms if rms > 0 else 1.0)
        self.check = check
        self.report.update({"fd_step": self.step, "fd_relative_step": step, "fd_disagreement": 0.0})

    def derivatives(self, directions: Directions, count: int) -> np.ndarray:
        result = self._central(directions, count, self.step)
        if self.check:
            half = self._central(directions, count, self.step / 2)
            norm = float(np.linalg.norm(result))
            disagreement = float(np.linalg.norm(result - half)) / norm if norm > 0 else 0.0
            self.report["fd_disagreement"] = max(self.report["fd_disagreement"], disagreement)
        return result

    def gradient(self) -> np.ndarray:
        """Element-wise: one direction per activation, 2 x K x h x w head passes (x2 with the check)."""
        shape = self.state.activations.shape
        size = int(np.prod(shape))

        def unit(start: int, stop: int) -> np.ndarray:
            result = np.zeros((stop - start, size), dtype=np.float32)
            result[np.arange(stop - start), np.arange(start, stop)] = 1.0
            return result.reshape((stop - start, *shape))

        self.report["fd_elementwise_head_passes"] = 2 * size * (2 if self.check else 1)
        return self.derivatives(unit, size).reshape(shape)

    def _central(self, directions: Directions, count: int, step: float) -> np.ndarray:
        activations = self.state.activations
        weights = self.target.weights
        results = []
        for start, stop in chunks(count, max(1, self.layer.head_batch_size // 2)):
            block = directions(start, stop)
            peak = np.abs(block).reshape(len(block), -1).max(axis=1)
            scale = np.where(peak > 0, step / np.where(peak > 0, peak, 1), 0.0).astype(np.float32)
            moved = block * scale[:, None, None, None]
            logits = self.layer.head(self.state, np.concatenate([activations + moved, activations - moved]))
            scores = logits.astype(np.float64) @ weights
            half = len(block)
            with np.errstate(divide="ignore", invalid="ignore"):
                derivative = np.where(scale > 0, (scores[:half] - scores[half:]) / (2 * scale), 0.0)
            results.append(derivative)
        return np.concatenate(results) if results else np.zeros(0)


def gradient_source(layer: LayerModel, state: LayerState, target: Target, source: str = "auto",
                    step: float = 0.05, check: bool = True) -> GradientSource:
    """The source ``source`` asks for: "auto" takes the exact weights of an affine head, else the head's backward
    graph, else finite differences (``report["backward_unavailable"]`` says why the backward graph could not be
    built); "exact" the first two only; "affine", "backward" and "finite-difference" that source alone."""
    if source not in SOURCES:
        raise ParameterError(f"gradient must be one of {SOURCES}, got {source!r}")
    if source == "affine" and layer.affine is None:
        raise ParameterError("gradient='affine' needs a head of global average pooling + a linear layer; this "
                             "head is not: use gradient='auto'")
    if source in ("auto", "exact", "affine") and layer.affine is not None:
        return AffineGradients(layer, state, target)
    unavailable = fallback = None
    if source in ("auto", "exact", "backward"):
        unavailable = layer.head_gradient_gap()
        if unavailable is None:
            backward = BackwardGradients(layer, state, target)
            # never silently wrong: a zero gradient is checked against the head's score (zero_gradient.py)
            if not is_zero(backward.gradient()) or not head_score_moves(layer, state, target.weights):
                return backward
            if source != "auto":
                raise zero_gradient_error(source, "finite-difference")
            fallback = ZERO_GRADIENT
        elif source in ("exact", "backward"):
            raise GradientUnavailableError(f"gradient={source!r} is not available for this head: {unavailable} "
                                           "(gradient='finite-difference' works for any head)")
    fd = FiniteDifferenceGradients(layer, state, target, step=step, check=check)
    if unavailable is not None:
        fd.report["backward_unavailable"] = unavailable
    if fallback is not None:
        fd.report["gradient_fallback"] = fallback
    return fd

