"""onnxruntime sessions, created in one place: the provider policy, the session options, the error messages.

Every session blackbox-xai opens (the explained model, its gradient and head models, a helper graph such as CEM's
autoencoder, the graph helpers' runner) comes from :func:`create_session`, so that the caller's providers are
honoured everywhere. onnxruntime is imported in this module only, lazily (when a session is first made).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from typing import Any, Sequence

from ..errors import ModelError
from .diagnose import explain_error

ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}
"""onnxruntime's element type names to numpy's, for the types a model input can have."""

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def resolve_providers(providers: str | Sequence[str | tuple[str, dict[str, str]]] | None) -> list[Any]:
    """The onnxruntime provider list for ``providers``.

    None or "cpu": the CPU provider. "cuda": the CUDA provider in exact float32 (``use_tf32: 0``, see
    :class:`~blackbox_xai.model.OnnxModel`), then the CPU. A list is checked against the providers this
    onnxruntime has. Raises :class:`~blackbox_xai.errors.ModelError` for an unknown or unavailable provider.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is None or providers == "cpu":
        return [CPU]
    if providers == "cuda":
        if CUDA not in available:
            raise ModelError(
                "the CUDA provider is not available in this onnxruntime; install the GPU build with "
                "pip install 'blackbox-xai[gpu]' (onnxruntime-gpu) or use --provider cpu"
            )
        return [(CUDA, {"use_tf32": "0"}), CPU]
    if isinstance(providers, str):
        raise ModelError(f"unknown provider {providers!r}: use cpu, cuda or a list of onnxruntime provider names")
    chosen = list(providers)
    names = [p if isinstance(p, str) else p[0] for p in chosen]
    missing = [p for p in names if p not in available]
    if missing:
        raise ModelError(f"onnxruntime providers not available here: {missing}; available: {available}")
    return chosen


def session_options(optimize: bool = True, threads: int | None = None, memory_arena: bool = True) -> Any:
    """``onnxruntime.SessionOptions``: quiet logging; graph optimisations on unless ``optimize`` is False (turn
    them off for exact numerical comparisons); ``threads`` intra-op threads (default: onnxruntime's choice);
    ``memory_arena`` False returns large temporary buffers after each run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not memory_arena:
        options.enable_cpu_mem_arena = False
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


def create_session(
    source: str | bytes | Any,
    name: str = "model",
    providers: str | Sequence[str | tuple[str, dict[str, str]]] | None = None,
    optimize: bool = True,
    threads: int | None = None,
    memory_arena: bool = True,
    built: bool = False,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``source`` (a path, serialised bytes or an ``onnx.ModelProto``).

    ``providers`` as :func:`resolve_providers` takes them (default CPU); ``optimize``, ``threads`` and
    ``memory_arena`` as :func:`session_options`. ``name`` names the model in error messages; ``built`` (default
    False) says that blackbox-xai built the graph from a model (a gradient or head graph), so that a failure to load
    it is reported as blackbox-xai's fault. Raises :class:`~blackbox_xai.errors.ModelError` when onnxruntime cannot
    load the model (one line: onnxruntime's first line, then the cause, the remedy and whose fault it is, see
    :func:`~blackbox_xai.model.diagnose.explain_error`), and when "cuda" was asked for and the CUDA provider did not
    start (onnxruntime would otherwise fall back to the CPU silently).
    """
    import onnxruntime as ort

    if not isinstance(source, (str, bytes)):
        source = source.SerializeToString()
    chosen = resolve_providers(providers)
    options = session_options(optimize, threads, memory_arena)
    printed = io.StringIO()
    try:
        # When a provider fails to start, onnxruntime prints a long "EP Error" block and retries without it.
        with contextlib.redirect_stdout(printed):
            session = ort.InferenceSession(source, sess_options=options, providers=chosen)
    except Exception as error:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load {name}: {explain_error(error, 'load', built)}") from None
    if providers == "cuda" and CUDA not in session.get_providers():
        found = re.search(r"CUDA failure \d+: [^;\n]*", printed.getvalue())
        reason = (found.group(0).strip() if found
                  else "no usable GPU, or missing CUDA runtime, cuBLAS or cuDNN libraries")
        raise ModelError(
            f"onnxruntime-gpu {ort.__version__} is installed but its CUDA provider did not start ({reason}): check "
            "that a GPU is visible (nvidia-smi, CUDA_VISIBLE_DEVICES) and that the CUDA and cuDNN versions it was "
            "built for are installed (pip install 'onnxruntime-gpu[cuda,cudnn]'), or use --provider cpu")
    if printed.getvalue():
        sys.stdout.write(printed.getvalue())
    return session


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (onnxruntime's run a page long), or its type's name."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
