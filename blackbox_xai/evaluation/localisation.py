"""Localisation metrics: does the map point at the object, given a ground-truth mask?

* :func:`pointing_game` (Zhang, Bargal, Lin, Brandt, Shen and Sclaroff, "Top-down Neural Attention by Excitation
  Backprop", ECCV 2016).
* :func:`relevance_mass_accuracy` and :func:`relevance_rank_accuracy` (Arras, Osman and Samek, "CLEVR-XAI: A
  benchmark dataset for the ground truth evaluation of neural network explanations", Information Fusion 2022).
* :func:`iou`: intersection over union of the thresholded map with the mask.

All take a map and a mask of the same (H, W) shape (the image's original resolution when called from
:func:`blackbox_xai.evaluation.evaluate`) and return a float in [0, 1]; higher is better. An empty mask is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ._checks import check_float, check_map, check_mask


def default_tolerance(shape: tuple[int, int]) -> float:
    """The pointing-game tolerance: 15 pixels at 224, scaled by min(H, W) / 224."""
    return 15.0 * min(shape) / 224.0


def pointing_game(saliency: Any, mask: Any, tolerance: float | None = None) -> float:
    """1.0 (hit) if the map's maximum lies within ``tolerance`` pixels of the mask, else 0.0 (Zhang et al. 2016).

    Distances are Euclidean from the maximum's pixel centre to the nearest mask pixel centre. When several pixels
    share the maximum value, it is a hit if any of them is within the tolerance (Quantus does the same). A
    constant map points nowhere and scores 0.0 (by the any-of-the-maxima rule every pixel would be a maximum, and
    an explanation that found nothing, e.g. an all-zero map, would always hit).

    Parameters
    ----------
    saliency : map (H, W).
    mask : ground truth (H, W), nonzero = object.
    tolerance : in pixels; default 15 at 224 pixels, scaled by min(H, W) / 224 (:func:`default_tolerance`);
        0 = the maximum must fall on the mask itself.
    """
    saliency = check_map(saliency)
    mask = check_mask(mask, saliency.shape)
    radius = default_tolerance(saliency.shape) if tolerance is None else check_float(tolerance, "tolerance", 0.0)
    maxima = saliency == saliency.max()
    if maxima.all():
        return 0.0
    if radius == 0:
        return float(np.any(mask & maxima))
    distance = ndimage.distance_transform_edt(~mask)
    return float(np.any(distance[maxima] <= radius))


def relevance_mass_accuracy(saliency: Any, mask: Any) -> float:
    """Share of the relevance that falls inside the mask (Arras et al. 2022): R_within / R_total.

    The map is first shifted so that its minimum is 0 (min-subtracted), making all relevance non-negative. A
    constant map has no relevance mass and scores 0.
    """
    saliency = check_map(saliency)
    mask = check_mask(mask, saliency.shape)
    shifted = saliency - saliency.min()
    total = shifted.sum()
    if total <= 0:
        return 0.0
    return float(shifted[mask].sum() / total)


def relevance_rank_accuracy(saliency: Any, mask: Any) -> float:
    """Share of the K most relevant pixels that lie inside the mask, K = mask size (Arras et al. 2022).

    Ranks are those of the min-subtracted map (the same as the raw map's). Ties at the K-th value are shared
    fairly: the tied pixels fill the remaining places in proportion to how many of them lie inside the mask (the
    expected score under random tie-breaking), so the result does not depend on pixel order.
    """
    saliency = check_map(saliency)
    mask = check_mask(mask, saliency.shape)
    shifted = (saliency - saliency.min()).ravel()
    inside = mask.ravel()
    k = int(inside.sum())
    kth = np.partition(shifted, shifted.size - k)[shifted.size - k]
    above = shifted > kth
    tied = shifted == kth
    places = k - int(above.sum())
    hits = float(np.sum(above & inside)) + places * float(np.sum(tied & inside)) / float(np.sum(tied))
    return hits / k


def iou(saliency: Any, mask: Any, threshold: float | None = None) -> float:
    """Intersection over union of the thresholded map with the mask.

    Parameters
    ----------
    saliency : map (H, W).
    mask : ground truth (H, W), nonzero = object.
    threshold : None (default) keeps the K most salient pixels, K = mask size (with every pixel tied with the K-th
        value); a fraction f in (0, 1] keeps the pixels of the min-subtracted map that reach f times its maximum
        (e.g. 0.15 as in CAM-style localisation).
    """
    saliency = check_map(saliency)
    mask = check_mask(mask, saliency.shape)
    shifted = saliency - saliency.min()
    if threshold is None:
        k = int(mask.sum())
        flat = shifted.ravel()
        kth = np.partition(flat, flat.size - k)[flat.size - k]
        kept = shifted >= kth
    else:
        fraction = check_float(threshold, "threshold", 0.0, 1.0, low_open=True)
        kept = shifted >= fraction * shifted.max()  # a constant map keeps every pixel
    union = np.sum(kept | mask)
    return float(np.sum(kept & mask) / union)
