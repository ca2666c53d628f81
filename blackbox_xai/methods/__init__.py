"""Explanation methods, one file each, all behind ``Method.explain(model, image, target)``."""

from __future__ import annotations

from typing import Any

from ..errors import ParameterError
from .base import Method
from .baselines import CentreMap, RandomMap
from .cam import (CAM, AblationCAM, CounterfactualCAM, EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM,
                  ScoreCAM, XGradCAM)
from .cam import CAM_METHODS
from .gradient import (GRADIENT_METHODS, LRP, DeconvNet, GuidedBackprop, GuidedGradCAM, InputXGradient,
                       IntegratedGradients, Saliency, SmoothGrad)
from .cem import CEM
from .extremal import ExtremalPerturbation
from .lime import LIME
from .meaningful import MeaningfulPerturbation
from .occlusion import Occlusion
from .rise import RISE

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (RISE, Occlusion, LIME, MeaningfulPerturbation,
                                                                ExtremalPerturbation, CEM, *CAM_METHODS,
                                                                *GRADIENT_METHODS, RandomMap, CentreMap)}
ALIASES = {"gradcam++": "gradcampp", "gradcamplusplus": "gradcampp", "counterfactualcam": "counterfactual",
           "ig": "integratedgradients", "inputtimesgradient": "inputxgradient", "guidedbp": "guidedbackprop",
           "vanillagradient": "saliency", "meaningfulperturbation": "meaningful", "mp": "meaningful",
           "extremalperturbation": "extremal", "ep": "extremal", "contrastive": "cem"}


def list_methods() -> list[str]:
    """Names accepted by :func:`blackbox_xai.explain` and the CLI's ``--method``."""
    return sorted(METHODS)


def canonical_name(name: str) -> str:
    """The registered name of a method ("Grad-CAM++" -> "gradcampp"); ParameterError for unknown names."""
    key = name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    key = ALIASES.get(key, key)
    if key not in METHODS:
        raise ParameterError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return key


def make_method(name: str, **params: Any) -> Method:
    """Instantiate a method by name with hyperparameters; a clear error for unknown names or parameters."""
    cls = METHODS[canonical_name(name)]
    try:
        return cls(**params)
    except ParameterError:
        raise
    except (TypeError, ValueError, OverflowError) as error:  # unknown keyword, or a value int()/float() refuses
        valid = ", ".join(p for p in cls().get_params())
        raise ParameterError(f"{name}: {error}; valid parameters: {valid}") from None


__all__ = ["CAM", "CEM", "LIME", "LRP", "ExtremalPerturbation", "MeaningfulPerturbation", "METHODS", "AblationCAM", "CentreMap", "CounterfactualCAM", "DeconvNet", "EigenCAM",
           "GradCAM", "GradCAMPlusPlus", "GuidedBackprop", "GuidedGradCAM", "HiResCAM", "InputXGradient",
           "IntegratedGradients", "LayerCAM", "Method", "Occlusion", "RISE", "RandomMap", "Saliency", "ScoreCAM",
           "SmoothGrad", "XGradCAM", "canonical_name", "list_methods", "make_method"]
