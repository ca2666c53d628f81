"""The gradient family on ONNX graphs: exact input gradients from a backward graph of ordinary ONNX ops
(:mod:`blackbox_xai.autodiff`), one small class per method on a shared base (:class:`GradientMethod`)."""

from .base import REDUCTIONS, GradientMethod, reduce_channels
from .guided import DeconvNet, GuidedBackprop
from .guidedgradcam import GuidedGradCAM
from .inputxgradient import InputXGradient
from .integratedgradients import IntegratedGradients, path_points
from .lrp import LRP
from .saliency import Saliency
from .smoothgrad import SmoothGrad
from ..registry import registered

GRADIENT_METHODS = tuple(registered("gradient").values())
"""The registered gradient methods (read from the registry, sorted by name)."""

__all__ = [
                    "GRADIENT_METHODS",
                    "LRP",
                    "REDUCTIONS",
                    "DeconvNet",
                    "GradientMethod",
                    "GuidedBackprop",
                    "GuidedGradCAM",
                    "InputXGradient",
                    "IntegratedGradients",
                    "Saliency",
                    "SmoothGrad",
                    "path_points",
                    "reduce_channels",
]
