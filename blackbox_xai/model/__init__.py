"""The model adapter: input specification, ONNX and callable models behind one pixel-batch interface."""

from .base import Model, softmax
from .callable_model import CallableModel
from .onnx_model import OnnxModel
from .preprocess import to_model_input
from .spec import InputSpec

__all__ = ["CallableModel", "InputSpec", "Model", "OnnxModel", "softmax", "to_model_input"]
