"""Counterfactual Grad-CAM: the evidence against the target (Selvaraju et al., ICCV 2017, section 5.1)."""

from __future__ import annotations

from .gradcam import GradCAM


class CounterfactualCAM(GradCAM):
    """Grad-CAM with negated gradients: regions whose removal would raise the target's score.

    Parameters as :class:`GradCAM`.
    """

    name = "counterfactual"
    aliases = ("counterfactualcam",)
    sign = -1.0
