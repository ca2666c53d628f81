"""An onnxruntime-backed ``run(model, feeds)`` callable for the few graph helpers that must evaluate a model.

The surgery in :mod:`blackbox_xai.graph` uses ``onnx`` only. Two helpers optionally evaluate a model: the shape
probe of :func:`~blackbox_xai.graph.analysis.tensor_info` and :func:`~blackbox_xai.graph.batch.verify_batch`.
They take a ``run`` argument, any callable ``run(model: onnx.ModelProto, feeds: dict) -> {output name: array}``;
this module builds one on onnxruntime (sessions from :func:`~blackbox_xai.model.session.create_session`, so the
provider policy is the model's), imported only when the runner is first called.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..graph.analysis import PROTOBUF_LIMIT
from ..graph.io import save
from .session import create_session


class OnnxruntimeRunner:
    """Evaluate ONNX models with onnxruntime, caching the session of the last model seen.

    Parameters
    ----------
    optimize : onnxruntime graph optimisations (default False: exact, unfused kernels, for comparisons).
    threads : intra-op threads (default: onnxruntime's choice).
    providers : as :func:`~blackbox_xai.model.session.resolve_providers` takes them (default CPU).
    memory_arena : keep onnxruntime's CPU memory arena (default False, so that large temporary weights are
        returned after each run).

    The session cache is keyed by the identity of the ``ModelProto``: do not edit a model in place between calls.
    """

    def __init__(
        self,
        optimize: bool = False,
        threads: int | None = None,
        providers: str | Sequence[str | tuple[str, dict[str, str]]] | None = None,
        memory_arena: bool = False,
    ) -> None:
        self.optimize = optimize
        self.threads = threads
        self.providers = providers
        self.memory_arena = memory_arena
        self._model: Any = None
        self._session: Any = None

    def session(self, model: Any) -> Any:
        """The onnxruntime session for ``model`` (built on first use, then cached for the same object)."""
        if self._model is model and self._session is not None:
            return self._session
        settings = dict(providers=self.providers, optimize=self.optimize, threads=self.threads,
                        memory_arena=self.memory_arena)
        if model.ByteSize() < PROTOBUF_LIMIT:
            session = create_session(model.SerializeToString(), "the model", **settings)
        else:
            with tempfile.TemporaryDirectory(prefix="bx_graph_") as folder:
                path = save(model, Path(folder) / "model.onnx", external_data=True)
                session = create_session(str(path), "the model", **settings)
        self._model, self._session = model, session
        return session

    def __call__(self, model: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.session(model)
        names = [output.name for output in session.get_outputs()]
        values = session.run(names, dict(feeds))
        return dict(zip(names, values, strict=True))


def onnxruntime_runner(optimize: bool = False, threads: int | None = None, **options: Any) -> OnnxruntimeRunner:
    """A ``run(model, feeds) -> {name: array}`` callable on onnxruntime (imported lazily, on the first call):
    the ``run`` argument of :func:`blackbox_xai.graph.dynamic_batch`, :func:`~blackbox_xai.graph.tensor_info`..."""
    return OnnxruntimeRunner(optimize=optimize, threads=threads, **options)
