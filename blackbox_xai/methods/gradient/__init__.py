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

GRADIENT_METHODS = (Saliency, InputXGradient, SmoothGrad, IntegratedGradients, GuidedBackprop, DeconvNet,
                    GuidedGradCAM, LRP)

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
