"""CEM's optional autoencoder term (Alibi's ``gamma * |AE(x) - x|_2^2``) and its gradient on the feature variable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import GradientUnavailableError, ModelError, ParameterError
from ...model.base import Model
from ..base import chunks
from .problem import Problem


def check_autoencoder(autoencoder: Any) -> None:
    """Raise :class:`ParameterError` unless ``autoencoder`` is an existing file, a ``ModelProto`` or a callable."""
    if isinstance(autoencoder, (str, Path)):
        if not Path(autoencoder).is_file():
            raise ParameterError(f"autoencoder file {autoencoder} not found")
        return
    if callable(autoencoder) or hasattr(autoencoder, "SerializeToString"):
        return
    raise ParameterError(f"autoencoder must be an ONNX file, an onnx.ModelProto or a callable, got "
                         f"{type(autoencoder).__name__}")


def describe(autoencoder: Any) -> str:
    """What ``params["autoencoder"]`` records: the path, "onnx.ModelProto", or the callable's name."""
    if isinstance(autoencoder, (str, Path)):
        return str(autoencoder)
    if hasattr(autoencoder, "SerializeToString"):
        return "onnx.ModelProto"
    return getattr(autoencoder, "__name__", type(autoencoder).__name__)


class Autoencoder:
    """``|(AE(x) - x) / 255|^2`` and its pixel gradient (exact for ONNX, None for a callable).

    Parameters
    ----------
    source : an ONNX file (path), an ``onnx.ModelProto``, or a callable (images (N, H, W, 3) float32 in [0, 255]
        in, images of the same shape out).
    model : the explained model. An ONNX autoencoder and its backward graph run in sessions that the model opens
        (``model.make_session``), so that they use the same providers (``--provider``), threads and graph
        optimisation as the model itself; nothing here talks to onnxruntime. A callable ignores it.
    """

    def __init__(self, source: Any, model: Model) -> None:
        self.session = self.grad_session = None
        self.function: Callable[[np.ndarray], np.ndarray] | None = None
        if callable(source) and not isinstance(source, (str, Path)) and not hasattr(source, "SerializeToString"):
            self.function = source
            return
        make_session = getattr(model, "make_session", None)
        if make_session is None:
            raise ParameterError(f"an ONNX autoencoder runs in a session opened by the explained model, and a "
                                 f"{type(model).__name__} cannot open one: pass the autoencoder as a callable "
                                 "(images in, images out)")
        import onnx
        from google.protobuf.message import DecodeError

        from ...autodiff import build_gradient_model

        try:
            proto = onnx.load(str(source)) if isinstance(source, (str, Path)) else source
        except (OSError, ValueError, DecodeError) as error:
            raise ModelError(f"cannot read the autoencoder {source}: {error}") from None
        initializers = {t.name for t in proto.graph.initializer}
        inputs = [i.name for i in proto.graph.input if i.name not in initializers]
        if len(inputs) != 1 or len(proto.graph.output) != 1:
            raise ModelError("the autoencoder must have one image input and one image output")
        self.input, self.output = inputs[0], proto.graph.output[0].name
        self.session = make_session(proto)
        try:
            built = build_gradient_model(proto, self.output, wrt=[self.input])
        except GradientUnavailableError:
            return  # no backward rule for an op: finite differences on the feature variable
        self.grad_session = make_session(built)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if self.function is not None:
            out = np.asarray(self.function(images), np.float64)
        else:
            out = np.asarray(self.session.run([self.output], {self.input: images})[0], np.float64)
        if out.shape != images.shape:
            raise ModelError(f"the autoencoder returned {list(out.shape)} for images {list(images.shape)}: it must "
                             "return images of the shape it takes (N, H, W, 3)")
        return out

    def losses(self, images: np.ndarray) -> np.ndarray:
        residual = (self.reconstruct(images) - images) / 255.0
        return np.sum(residual.reshape(len(images), -1) ** 2, axis=1)

    def pixel_gradient(self, image: np.ndarray) -> tuple[float, np.ndarray] | None:
        """(loss, d loss / d pixels (h, w, 3)) or None when only finite differences are possible."""
        if self.grad_session is None:
            return None
        batch = np.asarray(image, np.float32)[None]
        residual = (self.reconstruct(batch) - batch) / 255.0
        names = [o.name for o in self.grad_session.get_outputs()]
        out = self.grad_session.run(names, {self.input: batch, "seed": residual.astype(np.float32)})
        jt_r = np.asarray(out[1], np.float64)[0]
        gradient = 2.0 / 255.0 * (jt_r - residual[0])
        return float(np.sum(residual ** 2)), gradient


def autoencoder_gradient(autoencoder: Autoencoder, problem: Problem, v: np.ndarray, step: float) -> np.ndarray:
    """d |(AE(x(v)) - x(v)) / 255|^2 / dv (F, k): exact through the backward graph, else central differences."""
    exact = autoencoder.pixel_gradient(problem.image(v))
    if exact is not None:
        return problem.pullback(v, exact[1])
    count = problem.n_features * problem.channels
    out = np.empty(count, dtype=np.float64)
    for start, stop in chunks(count, 16):
        elements = np.arange(start, stop)
        plus = autoencoder.losses(problem.perturbed(v, elements, step))
        minus = autoencoder.losses(problem.perturbed(v, elements, -step))
        out[start:stop] = (plus - minus) / (2.0 * step)
    return out.reshape(problem.shape)

