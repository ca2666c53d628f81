"""An onnxruntime-backed ``run(model, feeds)`` callable for the few graph helpers that must evaluate a model.

The surgery in :mod:`blackbox_xai.graph` uses ``onnx`` only. Two helpers optionally evaluate a model: the shape
probe of :func:`~blackbox_xai.graph.analysis.tensor_info` and :func:`~blackbox_xai.graph.batch.verify_batch`.
They take a ``run`` argument, any callable ``run(model: onnx.ModelProto, feeds: dict) -> {output name: array}``;
this module builds one on onnxruntime, which is imported only when the runner is first called.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from onnx import ModelProto

from ..errors import ModelError
from .analysis import PROTOBUF_LIMIT


class OnnxruntimeRunner:
    """Evaluate ONNX models with onnxruntime, caching the session of the last model seen.

    Parameters
    ----------
    optimize : onnxruntime graph optimisations (default False: exact, unfused kernels, for comparisons).
    threads : intra-op threads (default: onnxruntime's choice).
    providers : onnxruntime provider names (default CPU).
    memory_arena : keep onnxruntime's CPU memory arena (default False, so that large temporary weights are
        returned after each run).

    The session cache is keyed by the identity of the ``ModelProto``: do not edit a model in place between calls.
    """

    def __init__(
        self,
        optimize: bool = False,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        memory_arena: bool = False,
    ) -> None:
        self.optimize = optimize
        self.threads = threads
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.memory_arena = memory_arena
        self._model: ModelProto | None = None
        self._session: Any = None

    def session(self, model: ModelProto) -> Any:
        """The onnxruntime session for ``model`` (built on first use, then cached for the same object)."""
        if self._model is model and self._session is not None:
            return self._session
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = self.memory_arena
        if not self.optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
        try:
            if model.ByteSize() < PROTOBUF_LIMIT:
                session = ort.InferenceSession(model.SerializeToString(), options, providers=self.providers)
            else:
                session = self._session_from_file(ort, model, options)
        except ModelError:
            raise
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime cannot load the model: {_first_line(error)}") from None
        self._model, self._session = model, session
        return session

    def _session_from_file(self, ort: Any, model: ModelProto, options: Any) -> Any:
        from .io import save

        with tempfile.TemporaryDirectory(prefix="bx_graph_") as folder:
            path = save(model, Path(folder) / "model.onnx", external_data=True)
            return ort.InferenceSession(str(path), options, providers=self.providers)

    def __call__(self, model: ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.session(model)
        names = [output.name for output in session.get_outputs()]
        values = session.run(names, dict(feeds))
        return dict(zip(names, values, strict=True))


def onnxruntime_runner(optimize: bool = False, threads: int | None = None, **options: Any) -> OnnxruntimeRunner:
    """A ``run(model, feeds) -> {name: array}`` callable on onnxruntime (imported lazily, on the first call)."""
    return OnnxruntimeRunner(optimize=optimize, threads=threads, **options)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
