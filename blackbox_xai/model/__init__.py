"""The model adapter: input specification, preprocessing, sessions, ONNX and callable models behind one pixel-batch
interface. The only package that talks to onnxruntime (:mod:`.session`, :mod:`.runner`) or knows preprocessing
(:mod:`.preprocess`).

Where a spec's values come from (caller, spec file beside the model, metadata, graph, defaults) and what was
assumed: :mod:`.resolve`. Memory bounds of model inputs: :mod:`.limits`. onnxruntime's errors in one line:
:mod:`.diagnose`. Any ONNX file described: :func:`describe` (:mod:`.description`)."""

from .base import Model, softmax
from .callable_model import CallableModel
from .description import describe, format_description
from .onnx_model import OnnxModel
from .preprocess import Preprocessor, to_model_input
from .runner import onnxruntime_runner
from .session import create_session
from .spec import InputSpec

__all__ = ["CallableModel", "InputSpec", "Model", "OnnxModel", "Preprocessor", "create_session", "describe",
           "format_description", "onnxruntime_runner", "softmax", "to_model_input"]
