"""OnnxModel: one onnxruntime session behind the pixel-batch interface."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError, SpecError
from .base import Model
from .preprocess import to_model_input
from .spec import GraphInput, InputSpec

ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}
ONNX_ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


class OnnxModel(Model):
    """An ONNX classifier run by onnxruntime, taking pixel batches.

    Parameters
    ----------
    path : the .onnx file (external data next to it is found by onnxruntime), or an in-memory
        ``onnx.ModelProto`` (e.g. an edited graph).
    spec : what the graph does not say (mean/std, value range, channel order...); the rest is inferred.
    providers : "cpu" (default), "cuda", or a list of onnxruntime provider names.
    batch_size : images per onnxruntime call (default 32). Models exported with a fixed batch of 1 are run one
        image at a time whatever this says.
    labels : class names (a list or a text file, one per line); default: the spec's ``labels``.
    optimize : onnxruntime graph optimisations (default True; turn off for exact numerical comparisons).
    threads : intra-op threads (default: onnxruntime's choice, all cores).
    output_kind : "logits" or "probabilities" to override detection.
    dynamic_batch : for a model exported with a fixed batch of 1, rewrite the graph so that it takes any batch
        (:func:`blackbox_xai.graph.dynamic_batch`), kept only when a 2-image batch matches per-image runs; else
        the images are run one at a time (default True). ``batch_rewrite`` says what happened.
    """

    def __init__(
        self,
        path: str | Path | Any,
        spec: InputSpec | None = None,
        providers: str | Sequence[str] | None = None,
        batch_size: int = 32,
        labels: Sequence[str] | str | Path | None = None,
        optimize: bool = True,
        threads: int | None = None,
        output_kind: str | None = None,
        dynamic_batch: bool = True,
    ) -> None:
        if isinstance(path, (str, Path)):
            self.path: Path | None = Path(path)
            proto = _load_proto(self.path)
            source: str | bytes = str(self.path)
        else:
            self.path, proto = None, path
            source = proto.SerializeToString()
        self._source = source
        spec = spec or InputSpec()
        self._graph_summary = _graph_summary(proto, str(self.path or "model"))
        del proto
        self._session_settings = (providers, optimize, threads)
        self.session = self.make_session(source)
        graph_input = self._choose_input(spec)
        spec = spec.merged_with_graph(graph_input)
        self.output_name = self._choose_output(spec.output)
        super().__init__(spec, batch_size, labels)
        self.fixed_batch = graph_input.fixed_batch
        if self.fixed_batch not in (None, 1):
            raise ModelError(f"model input has a fixed batch of {self.fixed_batch}; only 1 or dynamic is supported")
        self._check_single_input(graph_input.name)
        self.batch_rewrite: str | None = None
        if self.fixed_batch == 1 and dynamic_batch:
            self._make_batch_dynamic()
        producer_op = self._graph_summary["output_producers"].get(self.output_name)
        declared = output_kind or ("probabilities" if producer_op == "Softmax" else None)
        self._probe(declared)

    def make_session(self, source: str | bytes | Any) -> Any:
        """An onnxruntime session for ``source`` (a path, serialised bytes or a ModelProto) with this model's
        providers, optimisation level and threads."""
        if not isinstance(source, (str, bytes)):
            source = source.SerializeToString()
        return _create_session(source, str(self.path or "model"), *self._session_settings)

    def layer_model(self, layer: str | None = None) -> Any:
        """The model split at ``layer`` (default: the last spatial layer before global pooling), built once and
        cached: a :class:`~blackbox_xai.model.layer_model.LayerModel`."""
        from .layer_model import LayerModel

        cache = self.__dict__.setdefault("_layer_models", {})
        if layer not in cache:
            built = LayerModel(self, layer)
            cache[layer] = cache[built.layer.tensor] = built
        return cache[layer]

    def _make_batch_dynamic(self) -> None:
        from .. import graph

        proto = self.proto()
        size = self.spec.size or (32, 32)
        probe = np.random.default_rng(0).uniform(0, 255, (2, size[0], size[1], 3)).astype(np.float32)
        rewritten, check = graph.dynamic_batch(proto, {self.spec.input: to_model_input(probe, self.spec)},
                                               graph.onnxruntime_runner(), input_name=self.spec.input)
        self.batch_rewrite = check.message
        if check.ok:
            self._source = rewritten.SerializeToString()
            self.session = self.make_session(self._source)
            self.fixed_batch = None

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        inputs = to_model_input(pixels, self.spec)
        if self.fixed_batch == 1 and len(inputs) > 1:
            return np.concatenate([self._session_run(inputs[i:i + 1]) for i in range(len(inputs))])
        return self._session_run(inputs)

    def _session_run(self, inputs: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output_name], {self.spec.input: inputs})[0]
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime failed to run the model: {_first_line(error)}") from None

    def run_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Run already-preprocessed model inputs through the session (no chunking; for benchmarks)."""
        return self._session_run(inputs)

    def _choose_input(self, spec: InputSpec) -> GraphInput:
        inputs = self.session.get_inputs()
        if not inputs:
            raise ModelError(f"{self.path} has no inputs: not an image classifier")
        by_name = {i.name: i for i in inputs}
        if spec.input is not None and "input" in spec.explicit:
            if spec.input not in by_name:
                raise SpecError(f"model has no input {spec.input!r}; its inputs are {sorted(by_name)}")
            chosen = by_name[spec.input]
        else:
            four_d = [i for i in inputs if len(i.shape) == 4]
            chosen = four_d[0] if four_d else inputs[0]
        dims = tuple(d if isinstance(d, int) else None for d in chosen.shape)
        dtype = ORT_DTYPES.get(chosen.type, chosen.type.replace("tensor(", "").rstrip(")"))
        return GraphInput(chosen.name, dims, dtype)

    def _check_single_input(self, image_input: str) -> None:
        others = [i.name for i in self.session.get_inputs() if i.name != image_input]
        if others:
            raise SpecError(
                f"model has inputs besides the image ({', '.join(others)}); blackbox-xai explains single-input "
                "image models"
            )

    def _choose_output(self, output: str | int) -> str:
        names = [o.name for o in self.session.get_outputs()]
        if isinstance(output, int) or (isinstance(output, str) and output.isdigit()):
            index = int(output)
            if not 0 <= index < len(names):
                raise SpecError(f"model has {len(names)} outputs; output index {index} is out of range")
            return names[index]
        if output not in names:
            raise SpecError(f"model has no output {output!r}; its outputs are {names}")
        return output

    def proto(self) -> Any:
        """The model's graph as a fresh ``onnx.ModelProto`` (edit it freely: the session is not affected)."""
        import onnx

        if isinstance(self._source, bytes):
            return onnx.load_model_from_string(self._source)
        return onnx.load(self._source)

    def info(self) -> dict[str, Any]:
        """Inputs, outputs, opset, producer, op histogram and the resolved input spec."""
        summary = dict(self._graph_summary)
        summary.pop("output_producers")
        return {
            "path": str(self.path) if self.path else None,
            **summary,
            "providers": self.providers,
            "fixed_batch": self.fixed_batch,
            "classes": self.n_classes,
            "output_kind": self.output_kind,
            "spec": self.spec.to_dict(),
        }


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _load_proto(path: Path) -> Any:
    """Parse the ONNX file, leaving external weights on disk; refuse what is not an ONNX file."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"expected an .onnx file, got a folder: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as error:
        raise ModelError(f"{path} is not a valid ONNX model (truncated or corrupt?): {_first_line(error)}") from None
    except OSError as error:
        raise ModelError(f"cannot read model {path}: {error.strerror or error}") from None
    return proto


def _graph_summary(proto: Any, name: str) -> dict[str, Any]:
    """Inputs, outputs, opset, producer and op histogram of a model; refuse a model without a graph."""
    graph = proto.graph
    if not graph.node or not graph.output:
        raise ModelError(f"{name} is not an ONNX model with a graph (no nodes or no outputs)")
    initializers = {init.name for init in graph.initializer}

    def describe(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        return {"name": value.name, "shape": dims, "dtype": ONNX_ELEM_TYPES.get(tensor.elem_type, str(tensor.elem_type))}

    producers = {out: node.op_type for node in graph.node for out in node.output}
    return {
        "inputs": [describe(v) for v in graph.input if v.name not in initializers],
        "outputs": [describe(v) for v in graph.output],
        "opset": {imp.domain or "ai.onnx": imp.version for imp in proto.opset_import},
        "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "nodes": len(graph.node),
        "ops": dict(Counter(node.op_type for node in graph.node).most_common()),
        "output_producers": {o.name: producers.get(o.name) for o in graph.output},
    }


def _create_session(
    source: str | bytes, name: str, providers: str | Sequence[str] | None, optimize: bool, threads: int | None
):
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is None or providers == "cpu":
        chosen = ["CPUExecutionProvider"]
    elif providers == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelError(
                "the CUDA provider is not available in this onnxruntime; install the GPU build with "
                "pip install 'blackbox-xai[gpu]' (onnxruntime-gpu) or use --provider cpu"
            )
        chosen = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif isinstance(providers, str):
        raise ModelError(f"unknown provider {providers!r}: use cpu, cuda or a list of onnxruntime provider names")
    else:
        chosen = list(providers)
        missing = [p for p in chosen if p not in available]
        if missing:
            raise ModelError(f"onnxruntime providers not available here: {missing}; available: {available}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=chosen)
    except Exception as error:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load {name}: {_first_line(error)}") from None
