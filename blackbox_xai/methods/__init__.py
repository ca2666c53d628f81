"""Explanation methods, one file each, all behind ``Method.explain(model, image, target)``.

Importing this package imports every method module; each concrete method class registers itself
(:mod:`blackbox_xai.methods.registry`), so :func:`list_methods`, :func:`canonical_name` and :func:`make_method`
know every method without a list kept by hand.
"""

from __future__ import annotations

from . import params
from .attention import AttentionRollout, GradientWeightedAttention, TokenMasking
from .base import Attribution, Method
from .baselines import CentreMap, RandomMap
from .cam import (CAM, AblationCAM, CounterfactualCAM, EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM,
                  ScoreCAM, XGradCAM)
from .cem import CEM
from .extremal import ExtremalPerturbation
from .gradient import (LRP, DeconvNet, GuidedBackprop, GuidedGradCAM, InputXGradient, IntegratedGradients, Saliency,
                       SmoothGrad)
from .lime import LIME
from .meaningful import MeaningfulPerturbation
from .occlusion import Occlusion
from .registry import FAMILIES, METHODS, aliases, applicability, canonical_name, list_methods, make_method, registered
from .rise import RISE

__all__ = ["AblationCAM", "AttentionRollout", "Attribution", "CAM", "CEM", "CentreMap", "CounterfactualCAM",
           "DeconvNet", "EigenCAM", "ExtremalPerturbation", "FAMILIES", "GradCAM", "GradCAMPlusPlus",
           "GradientWeightedAttention", "GuidedBackprop", "GuidedGradCAM", "HiResCAM", "InputXGradient",
           "IntegratedGradients", "LIME", "LRP", "LayerCAM", "METHODS", "MeaningfulPerturbation", "Method",
           "Occlusion", "RISE", "RandomMap", "Saliency", "ScoreCAM", "SmoothGrad", "TokenMasking", "XGradCAM",
           "aliases", "applicability", "canonical_name", "list_methods", "make_method", "params", "registered"]
