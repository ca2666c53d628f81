"""Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
CVPR Workshops 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...image import resize_map
from ...model.layer_model import LayerModel, LayerState
from ...targets import Target
from .. import params as P
from ..base import Progress, chunks, target_scores
from ..fill import fill_image
from .base import COMMON_CONSTRAINTS, BaseCAM, weighted_sum


class ScoreCAM(BaseCAM):
    """Channel weights from the model's own score on the image masked by each channel.

    Each activation map A_k is upsampled to the image, scaled to [0, 1] and used as a soft mask:
    ``C_k = f(X * H_k) - f(X_b)``, where X_b is the baseline image (the ``fill``) and f the target's score; the
    map is ``ReLU(sum_k C_k A_k)``. One full forward pass per channel (channels whose activation is constant
    are skipped), batched in chunks of the model's batch size.

    Parameters
    ----------
    layer : tensor name (default: the last spatial layer before global pooling).
    relu : default True.
    fill : what masked-out pixels become: "zero" (default: the pixel the model sees as zero, the data set's mean
        colour, as when the reference implementation masks the normalised tensor), "black", "grey", "mean" or
        "blur".
    score : "probability" (default, softmax as in the paper), "logit" or "raw".
    """

    name = "scorecam"
    parameter_constraints = {**COMMON_CONSTRAINTS, "fill": P.fill(), "score": P.score()}

    def __init__(self, layer: str | None = None, relu: bool = True, fill: str = "zero",
                 score: str = "probability") -> None:
        self._set_params(locals())

    def layer_map(self, layer: LayerModel, state: LayerState, target: Target, pixels: np.ndarray,
                  extras: dict[str, Any], progress: Progress) -> np.ndarray:
        model = layer.model
        activations = state.activations
        low = activations.min(axis=(1, 2))
        high = activations.max(axis=(1, 2))
        active = np.flatnonzero(high > low)
        baseline = fill_image(pixels, self.fill, model.spec)
        difference = pixels - baseline
        baseline_score = float(target_scores(model, baseline[None], target, self.score)[0])
        weights = np.zeros(len(activations), dtype=np.float64)
        for start, stop in chunks(len(active), model.batch_size):
            channels = active[start:stop]
            masks = np.stack([
                resize_map((activations[k] - low[k]) / (high[k] - low[k]), pixels.shape[:2]) for k in channels
            ])
            batch = baseline + masks[..., None] * difference
            weights[channels] = target_scores(model, batch, target, self.score) - baseline_score
            progress(stop, len(active))
        extras.update({"channel_weights": weights.astype(np.float32), "baseline_score": baseline_score,
                       "masked_passes": int(len(active))})
        return weighted_sum(weights, activations)
