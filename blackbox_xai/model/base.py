"""The model interface every method talks to: pixel batches in, class scores out, in bounded chunks."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ParameterError, ScoreError, SpecError
from . import capabilities
from .preprocess import Preprocessor
from .spec import InputSpec

SCORE_KINDS = ("probability", "logit", "raw")


class Model(ABC):
    """A classifier seen as a black box over pixel batches.

    Subclasses implement :meth:`_run` for one chunk; :meth:`predict` streams any number of images through it in
    chunks of ``batch_size`` so memory stays bounded, checks the scores, and counts forward passes and the time
    spent inside the model (used by benchmarks and recorded in every explanation's timing).

    Pass counters, all 0 on a fresh model and only ever increased (a method reads the difference):

    - ``forward_passes``, ``forward_seconds``: images through the model (each gradient image counts too; so does a
      layer model's body run) and the time of those calls, preprocessing included;
    - ``session_seconds``: of that, the time spent inside onnxruntime's ``session.run`` for forward passes (0 for
      a model without a session);
    - ``backward_passes``, ``backward_seconds``: images whose exact gradient was computed (input or layer
      gradients, a head gradient included) and the time of those forward-backward runs;
    - ``head_passes``, ``head_seconds``: activation tensors evaluated by a layer model's head (a head gradient
      counts as one head pass and one backward pass), and their time.

    ``on_forward_chunk``: None, or a callable ``f(n)`` called before each chunk of ``n`` images goes through the
    model in :meth:`predict`, outside the timed part (benchmarks use it to interleave reference runs).
    """

    spec: InputSpec
    labels: list[str] | None
    output_kind: str  # "logits" or "probabilities"

    def __init__(self, spec: InputSpec, batch_size: int, labels: Sequence[str] | str | Path | None) -> None:
        if int(batch_size) < 1:
            raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
        self.spec = spec
        self.batch_size = int(batch_size)
        self.labels = _read_labels(labels if labels is not None else spec.labels)
        self.output_kind = "logits"
        self.assumptions: list[str] = []  # one line per assumption about the input (see model.resolve)
        self.forward_passes = 0
        self.forward_seconds = 0.0
        self.session_seconds = 0.0
        self.backward_passes = 0
        self.backward_seconds = 0.0
        self.head_passes = 0
        self.head_seconds = 0.0
        self.on_forward_chunk: Callable[[int], None] | None = None

    @property
    def input_size(self) -> tuple[int, int] | None:
        """Model (height, width), or None when the model takes any size."""
        return self.spec.size

    @property
    def preprocessor(self) -> Preprocessor:
        """The :class:`~blackbox_xai.model.preprocess.Preprocessor` of this model's spec: pixels to model inputs,
        its vector-Jacobian product, the zero pixel, the same steps as ONNX nodes."""
        cached = self.__dict__.get("_preprocessor")
        if cached is None or cached.spec is not self.spec:
            cached = self.__dict__["_preprocessor"] = Preprocessor(self.spec)
        return cached

    def make_session(self, source: str | bytes | Any) -> Any:
        """An onnxruntime session for ``source`` (a path, serialised bytes or an ``onnx.ModelProto``), e.g. a helper
        graph run beside the model. Here on the CPU with onnxruntime's default options; a model that has its own
        session (:class:`~blackbox_xai.model.OnnxModel`) uses its own providers, optimisation level and threads."""
        from .session import create_session

        return create_session(source, "the helper graph")

    @abstractmethod
    def _run(self, pixels: np.ndarray) -> np.ndarray:
        """Evaluate one chunk of pixels (n <= batch_size, H, W, 3) and return raw outputs (n, C)."""

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Raw model outputs (N, C) for pixels (N, H, W, 3) or (H, W, 3), float in [0, 255], RGB.

        Evaluated in chunks of ``batch_size``. Raises :class:`ScoreError` on NaN or infinite outputs.
        """
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim == 3:
            pixels = pixels[None]
        outputs = []
        for start in range(0, len(pixels), self.batch_size):
            chunk = pixels[start:start + self.batch_size]
            if self.on_forward_chunk is not None:
                self.on_forward_chunk(len(chunk))
            began = time.perf_counter()
            raw = np.asarray(self._run(chunk))
            self.forward_seconds += time.perf_counter() - began
            self.forward_passes += len(chunk)
            outputs.append(self._check_outputs(raw, len(chunk)))
        return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)

    def scores(self, pixels: np.ndarray, kind: str = "probability") -> np.ndarray:
        """Outputs of :meth:`predict` converted to ``kind``: "probability", "logit" or "raw"."""
        return self.convert(self.predict(pixels), kind)

    def convert(self, outputs: np.ndarray, kind: str) -> np.ndarray:
        """Convert raw outputs to probabilities (softmax of logits), logits (log of probabilities) or leave them.

        A single-output model has no softmax: its output is returned as it is for every kind.
        """
        if kind not in SCORE_KINDS:
            raise ParameterError(f"score kind must be one of {SCORE_KINDS}, got {kind!r}")
        if kind == "raw" or outputs.shape[1] == 1:
            return outputs
        if kind == "probability":
            return outputs if self.output_kind == "probabilities" else softmax(outputs)
        return np.log(np.clip(outputs, 1e-30, None)) if self.output_kind == "probabilities" else outputs

    def _check_outputs(self, raw: np.ndarray, expected: int) -> np.ndarray:
        raw = raw.astype(np.float32, copy=False)
        if raw.ndim == 1:
            raw = raw[:, None]
        elif raw.ndim > 2:
            if int(np.prod(raw.shape[2:])) != 1:
                raise SpecError(
                    f"model output has shape {list(raw.shape)}: expected class scores (batch, classes); "
                    "choose the score output with the spec key 'output'"
                )
            raw = raw.reshape(raw.shape[0], raw.shape[1])
        if raw.shape[0] != expected:
            raise SpecError(
                f"model returned {raw.shape[0]} score rows for a batch of {expected} images; "
                "check that the output is per-image class scores"
            )
        finite = np.isfinite(raw)
        if not finite.all():
            bad = int((~finite.all(axis=1)).sum())
            raise ScoreError(
                f"model returned NaN or infinite scores for {bad} of {expected} images; check the input spec "
                "(value range, mean/std, dtype) or the model itself"
            )
        return raw

    def detect_output_kind(self, outputs: np.ndarray) -> str:
        """'probabilities' when every row is non-negative and sums to 1, else 'logits'."""
        if outputs.shape[1] > 1 and outputs.min() >= 0 and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
            return "probabilities"
        return "logits"

    def capability_gap(self, capability: str) -> str | None:
        """None when the model offers ``capability`` (see :mod:`blackbox_xai.model.capabilities`), otherwise one
        line saying why not. A black box offers scores only."""
        if capability == capabilities.SCORES:
            return None
        if capability == capabilities.LAYERS:
            return f"a black box ({type(self).__name__}) has no layers to read (they need an ONNX model)"
        if capability == capabilities.ATTENTION:
            return f"a black box ({type(self).__name__}) has no attention tensors to read (they need an ONNX model)"
        if capability in capabilities.GRADIENTS:
            return (f"a black box ({type(self).__name__}) has no graph to differentiate (exact gradients need an "
                    "ONNX model)")
        raise ParameterError(f"unknown capability {capability!r}; known: {capabilities.CAPABILITIES}")

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The capabilities this model offers (see :mod:`blackbox_xai.model.capabilities`)."""
        return tuple(c for c in capabilities.CAPABILITIES if self.capability_gap(c) is None)

    @property
    def n_classes(self) -> int:
        return self._n_classes

    def class_name(self, index: int) -> str:
        """Human-readable name of a class index (the index itself when no labels are known)."""
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return str(index)

    def _probe(self, declared_kind: str | None = None) -> None:
        """Run one grey image to learn the number of classes and whether outputs are logits or probabilities
        (``declared_kind`` wins when the caller or the graph says)."""
        size = self.input_size or (32, 32)
        grey = np.full((1, size[0], size[1], 3), 127.5, dtype=np.float32)
        outputs = self.predict(grey)
        self.forward_passes = 0
        self.forward_seconds = 0.0
        self.session_seconds = 0.0
        self._n_classes = outputs.shape[1]
        self.output_kind = declared_kind or self.detect_output_kind(outputs)
        if self.labels is not None and len(self.labels) != self._n_classes:
            raise SpecError(
                f"labels file has {len(self.labels)} names but the model has {self._n_classes} outputs"
            )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _read_labels(labels: Sequence[str] | str | Path | None) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        try:
            return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as error:
            raise SpecError(f"cannot read labels file {path}: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise SpecError(f"cannot read labels file {path}: not UTF-8 text (one class name per line)") from None
    return [str(label) for label in labels]
