"""Complexity metrics: how concentrated is the map?

Sparseness (Chalasani, Chen, Chowdhury, Wu and Jha, "Concise Explanations of Neural Networks using Adversarial
Training", ICML 2020): the Gini index of the absolute attributions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_map


def sparseness(saliency: Any) -> float:
    """Gini index of |saliency| (Chalasani et al. 2020); in [0, 1), higher = sparser.

    With the n absolute values sorted ascending, a_(1) <= ... <= a_(n),

        G = sum_i (2 i - n - 1) a_(i) / (n * sum_i a_(i)).

    A uniform map scores 0 and a map with a single nonzero pixel (n - 1) / n. An all-zero map scores 0. (Quantus
    adds 1e-7 to every value before the same formula.)
    """
    values = np.sort(np.abs(check_map(saliency)).ravel())
    n = values.size
    total = values.sum()
    if total <= 0:
        return 0.0
    weights = 2.0 * np.arange(1, n + 1) - n - 1
    return float(np.dot(weights, values) / (n * total))
