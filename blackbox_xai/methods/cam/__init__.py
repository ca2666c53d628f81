"""The CAM family on ONNX graphs: one base class (:class:`BaseCAM`) and one small override per variant."""

from .ablationcam import AblationCAM
from .base import BaseCAM
from .cam import CAM
from .counterfactual import CounterfactualCAM
from .eigencam import EigenCAM
from .gradcam import GradCAM
from .gradcampp import GradCAMPlusPlus
from .hirescam import HiResCAM
from .layercam import LayerCAM
from .scorecam import ScoreCAM
from .xgradcam import XGradCAM
from ..registry import registered

CAM_METHODS = tuple(registered("cam").values())
"""The registered CAM variants (read from the registry, sorted by name)."""

__all__ = ["AblationCAM", "BaseCAM", "CAM", "CAM_METHODS", "CounterfactualCAM", "EigenCAM", "GradCAM",
           "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "ScoreCAM", "XGradCAM"]
