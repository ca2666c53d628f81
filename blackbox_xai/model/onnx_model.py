"""OnnxModel: one onnxruntime session behind the pixel-batch interface."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import AssumedSpecWarning, GradientUnavailableError, ModelError, SpecError
from . import capabilities
from .base import Model
from .diagnose import check_model_file, explain_error
from .gradients import PIXELS, _GradientModel, exact_gradient, gradient_model
from .limits import check_input_size, chunk_size, input_pixel_budget
from .resolve import assumption_line, complete_sources, metadata_labels, resolve_spec
from .session import ORT_DTYPES, create_session, first_line
from .spec import GraphInput, InputSpec

if TYPE_CHECKING:  # pragma: no cover
    from .layer_model import LayerModel

__all__ = ["GradientUnavailableError", "OnnxModel", "PIXELS"]
ONNX_ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


class OnnxModel(Model):
    """An ONNX classifier run by onnxruntime, taking pixel batches.

    Parameters
    ----------
    path : the .onnx file (external data next to it is found by onnxruntime), or an in-memory
        ``onnx.ModelProto`` (e.g. an edited graph).
    spec : what the graph does not say (mean/std, value range, channel order...); the rest is inferred. Fields the
        spec does not give explicitly come from the spec file beside the model (``<model>.spec.json``), then the
        model's ``metadata_props``, then the graph, then defaults (:mod:`blackbox_xai.model.resolve`);
        ``spec_source`` says where each came from.
    providers : "cpu" (default), "cuda", or a list of onnxruntime providers: names, or (name, options) pairs.
        "cuda" runs the CUDA provider in exact float32, TF32 off (``use_tf32: 0``): with TF32, measured on an
        H100 with EfficientNet-Lite0, logits differ from the CPU's by 1% of their standard deviation and input
        gradients by up to 22% of their largest value (cosine 0.990), for about 9% less onnxruntime time. To
        accept that, pass ``[("CUDAExecutionProvider", {"use_tf32": "1"}), "CPUExecutionProvider"]``.
    batch_size : images per onnxruntime call (default 32), lowered so that one call's input stays within
        :data:`~blackbox_xai.model.limits.CHUNK_BYTES`. Models exported with a fixed batch of 1 are run one image at
        a time whatever this says.
    labels : class names (a list or a text file, one per line); default: the spec's ``labels``.
    optimize : onnxruntime graph optimisations (default True; turn off for exact numerical comparisons).
    threads : intra-op threads (default: onnxruntime's choice, all cores).
    output_kind : "logits" or "probabilities" to override detection.
    dynamic_batch : for a model exported with a fixed batch of 1, rewrite the graph so that it takes any batch
        (:func:`blackbox_xai.graph.dynamic_batch`), kept only when a 2-image batch matches per-image runs; else
        the images are run one at a time (default True). ``batch_rewrite`` says what happened.
    spec_file : True (default) reads ``<model>.spec.json`` beside the model when it exists; False ignores it; a
        path reads that file instead.
    max_input_pixels : the largest model input (height x width) accepted, checked before anything is allocated
        (default: ``$BLACKBOX_XAI_MAX_INPUT_PIXELS``, else 4096 x 4096; :mod:`blackbox_xai.model.limits`).

    Attributes set at load: ``spec`` (the resolved spec), ``spec_source`` (field -> "caller", "spec file PATH",
    "metadata KEY", "graph", "default", "uint8 input" or "assumed"), ``assumptions`` (one line when the
    normalisation was assumed, also emitted once as an :class:`~blackbox_xai.errors.AssumedSpecWarning`).
    Loading refuses, in one line naming the cause, the remedy and whose fault it is: custom-domain ops, external
    data missing or outside the model's folder, an input above ``max_input_pixels``, a spec dtype that contradicts
    the graph, and a score output that is not float scores (a class index from ArgMax, a map or a sequence).

    Exact gradients (:meth:`gradient`) come from a backward graph of ordinary ONNX ops run by the same onnxruntime;
    ``backward_passes`` counts the images whose gradient was computed (each also counts as a forward pass) and
    ``backward_seconds`` the time of those combined forward-backward runs.
    """

    def __init__(
        self,
        path: str | Path | Any,
        spec: InputSpec | None = None,
        providers: str | Sequence[str | tuple[str, dict[str, str]]] | None = None,
        batch_size: int = 32,
        labels: Sequence[str] | str | Path | None = None,
        optimize: bool = True,
        threads: int | None = None,
        output_kind: str | None = None,
        dynamic_batch: bool = True,
        spec_file: bool | str | Path = True,
        max_input_pixels: int | None = None,
    ) -> None:
        if isinstance(path, (str, Path)):
            self.path: Path | None = Path(path)
            proto = _load_proto(self.path)
            source: str | bytes = str(self.path)
        else:
            self.path, proto = None, path
            source = proto.SerializeToString()
        self._source = source
        name = str(self.path or "model")
        self._graph_summary = _graph_summary(proto, name)
        check_model_file(proto, self.path, name)
        props = {prop.key: prop.value for prop in proto.metadata_props}
        del proto
        spec, sources = resolve_spec(spec or InputSpec(), self.path, props, spec_file)
        self._session_settings = (providers, optimize, threads)
        self.session = self.make_session(source, built=False)
        graph_input = self._choose_input(spec)
        spec = spec.merged_with_graph(graph_input)
        check_input_size(spec.size, spec.channels, name, input_pixel_budget(max_input_pixels))
        self.output_name = self._choose_output(spec.output)
        super().__init__(spec, chunk_size(int(batch_size), spec.size, spec.channels), labels)
        self.spec_source: dict[str, str] = complete_sources(spec, sources)
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
        named = metadata_labels(props) if self.labels is None else None
        if named is not None and len(named) == self.n_classes:  # names for another head (a detector's) are ignored
            self.labels, self.spec_source["labels"] = named, "metadata names"
        assumed = assumption_line(spec, self.spec_source, self.path)
        self.assumptions = [assumed] if assumed else []
        for line in self.assumptions:
            warnings.warn(line, AssumedSpecWarning, stacklevel=2)

    def make_session(self, source: str | bytes | Any, built: bool = True) -> Any:
        """An onnxruntime session for ``source`` (a path, serialised bytes or a ModelProto) with this model's
        providers, optimisation level and threads. ``built`` (default True): a graph blackbox-xai built from the
        model (gradient, head...), whose load failures are blackbox-xai's fault; False for the model itself."""
        providers, optimize, threads = self._session_settings
        return create_session(source, str(self.path or "model"), providers, optimize, threads, built=built)

    def capability_gap(self, capability: str) -> str | None:
        """Scores and layers always; attention when the graph has attention probabilities over a token grid
        (:func:`blackbox_xai.model.tensors.attention_gap`); exact gradients when the input is float and every op
        on the path from the input to the logits has a backward rule (checked once by building the backward graph,
        then cached)."""
        if capability == capabilities.ATTENTION:
            from .tensors import attention_gap

            return attention_gap(self)
        if capability not in capabilities.GRADIENTS:
            return None if capability in capabilities.CAPABILITIES else super().capability_gap(capability)
        gaps = self.__dict__.setdefault("_capability_gaps", {})
        if capability not in gaps:
            if self.spec.dtype == "uint8":
                gaps[capability] = "the model takes uint8 pixels, and rounding to integers has no gradient"
            else:
                try:
                    self._gradient_model((self.spec.input,), "gradient", {})
                    gaps[capability] = None
                except GradientUnavailableError as error:
                    gaps[capability] = str(error)
        return gaps[capability]

    def layer_model(self, layer: str | None = None) -> LayerModel:
        """The model split at ``layer`` (default: the last spatial layer before global pooling), built once and
        cached: a :class:`~blackbox_xai.model.layer_model.LayerModel`."""
        from .layer_model import LayerModel

        cache = self.__dict__.setdefault("_layer_models", {})
        if layer not in cache:
            built = LayerModel(self, layer)
            cache[layer] = cache[built.layer.tensor] = built
        return cache[layer]

    def gradient(self, pixels: np.ndarray, weights: np.ndarray, wrt: Sequence[str] | None = None,
                 rules: str = "gradient", **rule_params: Any) -> tuple[np.ndarray, Any]:
        """Exact gradients of ``weights @ logits`` by a backward graph run in onnxruntime.

        The backward graph is built from ordinary ONNX ops by :func:`blackbox_xai.autodiff.build_gradient_model`
        (stock onnxruntime has no gradient ops), once per (``wrt``, ``rules``, rule parameters), and its session is
        cached on the model. Images go through in chunks of ``batch_size``; each counts as one forward pass and one
        backward pass (``forward_passes``, ``backward_passes``; the time of the combined runs is ``backward_seconds``).

        Parameters
        ----------
        pixels : (N, H, W, 3) or (H, W, 3), float in [0, 255], RGB, at the model size (resizing is not
            differentiated: resize first with :func:`blackbox_xai.image.resize_pixels`).
        weights : (C,) or (N, C): the seed over the logits; the differentiated score of image n is
            ``weights[n] @ logits[n]`` (a target's ``weights``; (1, -1) for a contrast y_p - y_q). When the model's
            output is a Softmax, its input (the logits) is differentiated.
        wrt : None for the gradient with respect to the pixels, or a list of names: ``"pixels"`` (pixel space) and
            tensors of the graph (the model input's own name gives the gradient in the model's input layout and
            units; an intermediate tensor its gradient, with the batch first).
        rules : "gradient" (default), "guided" (guided backpropagation), "deconvnet", "lrp-epsilon" or
            "lrp-alphabeta"; see ``blackbox_xai.autodiff.RULE_SETS``. For the LRP rules the result is the relevance,
            not a gradient: relevance at the output is ``weights * logits``, and in pixel space each input element's
            relevance goes to its pixel (no chain rule; a luma input's relevance is split over R, G, B in proportion
            to their contributions).
        rule_params : ``epsilon``, ``alpha``, ``beta`` for the LRP rules, and ``input_bounds``: the box
            (lowest, highest) of the model input for the z^B rule at the first layer. For the LRP rules it defaults
            to the exact per-channel range of the normalised input (what pixels 0 and 255 become: the gradient
            model then takes the pixels and normalises them inside the graph, so the bounds reach the first layer);
            ``input_bounds=False`` means no z^B rule.

        Returns
        -------
        (logits, gradients): logits (N, C) float32, the differentiated tensor; gradients (N, H, W, 3) float32 in
        pixel space when ``wrt`` is None, else a dict name -> array.

        Chain rule through the preprocessing (:meth:`~blackbox_xai.model.preprocess.Preprocessor.vjp`): the model
        input is ``(pixel[order] * value_range[1] / 255 - mean) / std`` in the model's layout, so ``d/d pixel_c =
        d/d x_c * value_range[1] / (255 std_c)`` with the channel order and layout undone; a 1-channel model reads
        ``luma = 0.299 R + 0.587 G + 0.114 B``, so ``d/d R = 0.299 d/d x``. The work is done by
        :func:`blackbox_xai.model.gradients.exact_gradient`.
        """
        return exact_gradient(self, pixels, weights, wrt, rules, rule_params)

    def _gradient_model(self, tensors: tuple[str, ...], rules: str, params: dict[str, Any],
                        pixel_box: bool = False) -> _GradientModel:
        """The cached gradient model for (``tensors``, ``rules``, ``params``): see
        :func:`blackbox_xai.model.gradients.gradient_model`."""
        return gradient_model(self, tensors, rules, params, pixel_box)

    def _make_batch_dynamic(self) -> None:
        from .. import graph

        proto = self.proto()
        size = self.spec.size or (32, 32)
        probe = np.random.default_rng(0).uniform(0, 255, (2, size[0], size[1], 3)).astype(np.float32)
        from .runner import onnxruntime_runner

        rewritten, check = graph.dynamic_batch(proto, {self.spec.input: self.preprocessor.forward(probe)},
                                               onnxruntime_runner(), input_name=self.spec.input)
        self.batch_rewrite = check.message
        if check.ok:
            self._source = rewritten.SerializeToString()
            self.session = self.make_session(self._source)
            self.fixed_batch = None

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        return self.run_inputs(self.preprocessor.forward(pixels))

    def run_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Raw outputs for already-preprocessed model inputs (``model.preprocessor.forward(pixels)``), run through
        the session as they are (one at a time for a fixed-batch-1 model; no other chunking, no score checks, no
        pass counting). The time inside ``session.run`` is added to ``session_seconds``."""
        if self.fixed_batch == 1 and len(inputs) > 1:
            return np.concatenate([self._session_run(inputs[i:i + 1]) for i in range(len(inputs))])
        return self._session_run(inputs)

    def _session_run(self, inputs: np.ndarray) -> np.ndarray:
        began = time.perf_counter()
        try:
            return self.session.run([self.output_name], {self.spec.input: inputs})[0]
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime failed to run the model: {explain_error(error, 'run')}") from None
        finally:
            self.session_seconds += time.perf_counter() - began

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
            self._refuse_non_scores(names[index])
            return names[index]
        if output not in names:
            raise SpecError(f"model has no output {output!r}; its outputs are {names}")
        self._refuse_non_scores(output)
        return output

    def _refuse_non_scores(self, name: str) -> None:
        """Refuse an output that is not float class scores: a class index (int64/int32, e.g. from ArgMax), or a
        sequence or map (e.g. a ZipMap of probabilities)."""
        outputs = {o.name: o.type for o in self.session.get_outputs()}
        kind = outputs[name]
        if kind.startswith("tensor(") and "int" not in kind and kind not in ("tensor(bool)", "tensor(string)"):
            return
        floats = [n for n, t in outputs.items() if t in ("tensor(float)", "tensor(float16)", "tensor(double)")]
        hint = (f"choose a score output with the spec key 'output' (this model's float outputs: "
                f"{', '.join(floats)})" if floats else "this model has no float output to explain")
        what = ("a class index (e.g. from ArgMax), not a score: a method that measures how a score changes "
                "sees nothing in an index" if "int" in kind else "not a tensor of class scores")
        raise ModelError(f"output {name!r} is {kind.replace('tensor(', '').rstrip(')')}: {what}; {hint}")

    def proto(self) -> Any:
        """The model's graph as a fresh ``onnx.ModelProto`` (edit it freely: the session is not affected)."""
        import onnx

        if isinstance(self._source, bytes):
            return onnx.load_model_from_string(self._source)
        return onnx.load(self._source)

    def info(self) -> dict[str, Any]:
        """Inputs, outputs, opset, producer, op histogram, the resolved input spec, where each of its values came
        from and what was assumed (see :func:`blackbox_xai.model.describe` for any ONNX file)."""
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
            "spec_source": dict(self.spec_source),
            "assumptions": list(self.assumptions),
        }


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
        raise ModelError(f"{path} is not a valid ONNX model (truncated or corrupt?): {first_line(error)}") from None
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
