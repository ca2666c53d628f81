"""OnnxModel: one onnxruntime session behind the pixel-batch interface."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import GradientUnavailableError, ModelError, ParameterError, ScoreError, SpecError
from . import capabilities
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
    providers : "cpu" (default), "cuda", or a list of onnxruntime providers: names, or (name, options) pairs.
        "cuda" runs the CUDA provider in exact float32, TF32 off (``use_tf32: 0``): with TF32, measured on an
        H100 with EfficientNet-Lite0, logits differ from the CPU's by 1% of their standard deviation and input
        gradients by up to 22% of their largest value (cosine 0.990), for about 9% less onnxruntime time. To
        accept that, pass ``[("CUDAExecutionProvider", {"use_tf32": "1"}), "CPUExecutionProvider"]``.
    batch_size : images per onnxruntime call (default 32). Models exported with a fixed batch of 1 are run one
        image at a time whatever this says.
    labels : class names (a list or a text file, one per line); default: the spec's ``labels``.
    optimize : onnxruntime graph optimisations (default True; turn off for exact numerical comparisons).
    threads : intra-op threads (default: onnxruntime's choice, all cores).
    output_kind : "logits" or "probabilities" to override detection.
    dynamic_batch : for a model exported with a fixed batch of 1, rewrite the graph so that it takes any batch
        (:func:`blackbox_xai.graph.dynamic_batch`), kept only when a 2-image batch matches per-image runs; else
        the images are run one at a time (default True). ``batch_rewrite`` says what happened.

    Exact gradients (:meth:`gradient`) come from a backward graph of ordinary ONNX ops run by the same onnxruntime;
    ``backward_passes`` counts the images whose gradient was computed (each also counts as a forward pass) and
    ``backward_seconds`` the time of those combined forward-backward runs.
    """

    backward_passes = 0
    backward_seconds = 0.0

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

    def capability_gap(self, capability: str) -> str | None:
        """Scores and layers always; exact gradients when the input is float and every op on the path from the
        input to the logits has a backward rule (checked once by building the backward graph, then cached)."""
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

    def layer_model(self, layer: str | None = None) -> Any:
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

        Chain rule through the preprocessing: the model input is ``(pixel[order] * value_range[1] / 255 - mean) /
        std`` in the model's layout, so ``d/d pixel_c = d/d x_c * value_range[1] / (255 std_c)`` with the channel
        order and layout undone; a 1-channel model reads ``luma = 0.299 R + 0.587 G + 0.114 B``, so
        ``d/d R = 0.299 d/d x``.
        """
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.ndim == 3:
            pixels = pixels[None]
        if pixels.ndim != 4 or pixels.shape[3] != 3:
            raise ParameterError(f"pixels must be (N, H, W, 3) or (H, W, 3), got {list(pixels.shape)}")
        if self.spec.size is not None and pixels.shape[1:3] != tuple(self.spec.size):
            raise ParameterError(f"pixels are {pixels.shape[1]}x{pixels.shape[2]} but the model takes "
                                 f"{self.spec.size[0]}x{self.spec.size[1]}: resizing is not differentiated, resize "
                                 "first (blackbox_xai.image.resize_pixels)")
        if self.spec.dtype == "uint8":
            raise ModelError("the model takes uint8 pixels: rounding to integers has no gradient; gradient methods "
                             "need a float input (use rise, occlusion or the CAM family)")
        count = len(pixels)
        weights = np.asarray(weights, dtype=np.float32)
        if weights.ndim == 1:
            weights = np.broadcast_to(weights, (count, len(weights)))
        if weights.ndim != 2 or weights.shape[0] != count or weights.shape[1] != self.n_classes:
            raise ParameterError(f"weights must be (C,) or (N, C) with C = {self.n_classes} classes and N = {count} "
                                 f"images, got {list(weights.shape)}")
        names = [PIXELS] if wrt is None else ([wrt] if isinstance(wrt, str) else list(wrt))
        if not names:
            raise ParameterError("wrt is an empty list: name 'pixels' or tensors of the graph")
        tensors = tuple(dict.fromkeys(self.spec.input if name == PIXELS else name for name in names))
        relevance = rules.startswith("lrp")
        params = dict(rule_params)
        bounds = params.pop("input_bounds", None)
        pixel_box = relevance and bounds is None  # the exact per-channel box, through a pixel input
        if bounds is not False and bounds is not None:
            params["input_bounds"] = tuple(float(b) for b in bounds)
        entry = self._gradient_model(tensors, rules, params, pixel_box)
        chunk = 1 if self.fixed_batch == 1 else self.batch_size
        logits, results = [], {name: [] for name in tensors}
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            inputs = entry.prepare(pixels[start:stop])
            began = time.perf_counter()
            values = entry.run(inputs, weights[start:stop])
            self.backward_seconds += time.perf_counter() - began
            self.forward_passes += stop - start
            self.backward_passes += stop - start
            logits.append(np.asarray(values[0], dtype=np.float32).reshape(stop - start, -1))
            for name, value in zip(tensors, values[1:]):
                results[name].append(np.asarray(value, dtype=np.float32))
        scores = np.concatenate(logits)
        if not np.all(np.isfinite(scores)):
            raise ScoreError("the model returned NaN or infinite logits in the gradient run; check the input spec")
        gathered = {name: np.concatenate(parts) for name, parts in results.items()}
        out: dict[str, np.ndarray] = {}
        for name in names:
            if name == PIXELS:
                out[name] = pixel_gradient(gathered[self.spec.input], self.spec, relevance=relevance, pixels=pixels)
            else:
                out[name] = gathered[name]
        return scores, (out[PIXELS] if wrt is None else out)

    def _gradient_model(self, tensors: tuple[str, ...], rules: str, params: dict[str, Any],
                        pixel_box: bool = False) -> _GradientModel:
        """The gradient model for (``tensors``, ``rules``, ``params``), built once and cached with its session.

        ``pixel_box``: feed pixels (:func:`_ordered_pixels`) and normalise them in the graph, so that the LRP
        z^B rule gets the box [0, 255] carried to the first layer's per-channel bounds."""
        cache = self.__dict__.setdefault("_gradient_models", {})
        key = (tensors, rules, tuple(sorted((k, _hashable(v)) for k, v in params.items())), pixel_box)
        if key in cache:
            return cache[key]
        from .. import graph
        from .layer_model import _logits_tensor

        try:
            from ..autodiff import RULE_SETS, UnsupportedOpError, build_gradient_model
        except ImportError as error:  # pragma: no cover - the autodiff ships with the package
            raise ModelError(f"exact gradients are not available: {error}") from None
        if rules not in RULE_SETS:
            raise ParameterError(f"rules must be one of {sorted(RULE_SETS)}, got {rules!r}")
        proto = graph.move_initializers_out_of_inputs(self.proto())
        output, _ = _logits_tensor(proto, self.output_name)
        known = set(graph.analysis.all_tensor_names(proto))
        unknown = [name for name in tensors if name not in known]
        if unknown:
            raise ParameterError(f"no tensor {unknown[0]!r} in the model's graph (wrt takes 'pixels' or tensor "
                                 "names; list spatial layers with: blackbox-xai layers MODEL)")
        feed, spec = self.spec.input, self.spec
        prepare: Callable[[np.ndarray], np.ndarray] = lambda pixels: to_model_input(pixels, spec)
        wrt = list(tensors)
        if pixel_box:
            proto = _with_pixel_input(proto, spec)
            feed, wrt = PIXEL_FEED, [PIXEL_FEED, *tensors]
            params = {**params, "input_bounds": (0.0, 255.0)}
            prepare = lambda pixels: _ordered_pixels(pixels, spec)
        try:
            built = build_gradient_model(proto, output, wrt=wrt, rules=rules, **params)
        except UnsupportedOpError as error:
            raise GradientUnavailableError(str(error)) from None
        entry = _GradientModel(self.make_session(built), output, tensors, feed, prepare)
        cache[key] = entry
        return entry

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
    source: str | bytes,
    name: str,
    providers: str | Sequence[str | tuple[str, dict[str, str]]] | None,
    optimize: bool,
    threads: int | None,
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
        chosen = [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    elif isinstance(providers, str):
        raise ModelError(f"unknown provider {providers!r}: use cpu, cuda or a list of onnxruntime provider names")
    else:
        chosen = list(providers)
        names = [p if isinstance(p, str) else p[0] for p in chosen]
        missing = [p for p in names if p not in available]
        if missing:
            raise ModelError(f"onnxruntime providers not available here: {missing}; available: {available}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    printed = io.StringIO()
    try:
        # When a provider fails to start, onnxruntime prints a long "EP Error" block and retries without it.
        with contextlib.redirect_stdout(printed):
            session = ort.InferenceSession(source, sess_options=options, providers=chosen)
    except Exception as error:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load {name}: {_first_line(error)}") from None
    if providers == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
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


# ---------------------------------------------------------------------------------------------------------------
# Exact gradients: a backward graph of ordinary ONNX ops (blackbox_xai.autodiff) run by onnxruntime
# ---------------------------------------------------------------------------------------------------------------

PIXELS = "pixels"  # the name that asks OnnxModel.gradient for the gradient in pixel space


class _GradientModel:
    """One built gradient model: its session and how to feed it.

    ``feed`` is the graph input that takes the images and ``prepare`` turns pixels into it: the model input
    (:func:`~blackbox_xai.model.preprocess.to_model_input`), or, for LRP with the automatic z^B bounds, the pixels
    in the model's channel order and layout (the normalisation then runs inside the graph, see
    :func:`_with_pixel_input`).
    """

    def __init__(self, session: Any, output: str, wrt: tuple[str, ...], feed: str,
                 prepare: Callable[[np.ndarray], np.ndarray]) -> None:
        self.session = session
        self.output = output
        self.wrt = wrt
        self.feed = feed
        self.prepare = prepare
        seed = next(value for value in session.get_inputs() if value.name == "seed")
        self.seed_dtype = np.dtype(ORT_DTYPES.get(seed.type, "float32"))
        # trailing dimensions of the seed beyond (batch, classes), e.g. (N, C, 1, 1) logits
        self.seed_tail = tuple(d if isinstance(d, int) and d > 0 else 1 for d in seed.shape[2:])
        self.outputs = [output, *("grad:" + name for name in wrt)]

    def run(self, inputs: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
        """Run already-prepared ``inputs`` with the seed ``weights`` (n, C): [output, gradients...]."""
        seed = weights.reshape(len(weights), weights.shape[1], *self.seed_tail).astype(self.seed_dtype)
        try:
            return self.session.run(self.outputs, {self.feed: inputs, "seed": seed})
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime failed to run the gradient model: {_first_line(error)}") from None


PIXEL_FEED = "blackbox_xai/pixels"


def _ordered_pixels(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Pixels in [0, 255] as the model orders them (luma, or channel order, and layout), before normalisation."""
    from .preprocess import LUMA

    x = pixels.astype(np.float32, copy=False)
    if spec.channels == 1:
        x = (x @ LUMA)[..., None]
    elif spec.channel_order == "BGR":
        x = x[..., ::-1]
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    dtype = {"float16": np.float16}.get(spec.dtype or "float32", np.float32)
    return np.ascontiguousarray(x, dtype=dtype)


def _with_pixel_input(proto: Any, spec: InputSpec) -> Any:
    """``proto`` with a new input :data:`PIXEL_FEED` (:func:`_ordered_pixels`, values in [0, 255]) normalised in
    the graph, ``x = pixels * factor - offset`` with the constants of
    :func:`~blackbox_xai.model.preprocess.to_model_input` (the same float32 operations, so the same values), into
    the model input. The LRP builder carries the z^B box [0, 255] through that Mul and Sub to the first layer,
    which so gets the exact per-channel bounds of the normalised input."""
    from onnx import helper, numpy_helper

    channels = spec.channels
    scale = spec.value_range[1] / 255.0
    std = np.asarray(spec.std[:channels], dtype=np.float32)
    mean = np.asarray(spec.mean[:channels], dtype=np.float32)
    factor, offset = scale / std, mean / std
    shape = (1, channels, 1, 1) if spec.layout == "NCHW" else (1, 1, 1, channels)
    original = next(value for value in proto.graph.input if value.name == spec.input)
    dtype = {"float16": np.float16}.get(spec.dtype or "float32", np.float32)
    feed = type(original)()
    feed.CopyFrom(original)
    feed.name = PIXEL_FEED
    kept = [value for value in proto.graph.input if value.name != spec.input]
    del proto.graph.input[:]
    proto.graph.input.extend([feed, *kept])
    proto.graph.initializer.extend([
        numpy_helper.from_array(factor.reshape(shape).astype(dtype), PIXEL_FEED + "/factor"),
        numpy_helper.from_array(offset.reshape(shape).astype(dtype), PIXEL_FEED + "/offset")])
    nodes = [helper.make_node("Mul", [PIXEL_FEED, PIXEL_FEED + "/factor"], [PIXEL_FEED + "/scaled"]),
             helper.make_node("Sub", [PIXEL_FEED + "/scaled", PIXEL_FEED + "/offset"], [spec.input])]
    for node in reversed(nodes):
        proto.graph.node.insert(0, node)
    return proto


def pixel_gradient(grad: np.ndarray, spec: InputSpec, relevance: bool = False,
                   pixels: np.ndarray | None = None) -> np.ndarray:
    """A gradient (or LRP relevance) with respect to the model input (N, ...) in the model's layout, brought to
    pixel space (N, H, W, 3) RGB: the chain rule through :func:`~blackbox_xai.model.preprocess.to_model_input`.

    For a gradient each channel is multiplied by ``value_range[1] / (255 std_c)`` (the mean does not matter), the
    channel order and layout are undone and a luma input is spread by the luma weights. A relevance is conserved
    instead: it is only moved back to its pixel, and a luma input's relevance is split over R, G, B in proportion
    to ``luma_weight_c * pixel_c`` (equally weighted by the luma weights where the pixel is black).
    """
    from .preprocess import LUMA

    g = np.asarray(grad, dtype=np.float32)
    if g.ndim != 4:
        raise ModelError(f"the model input's gradient has shape {list(g.shape)}; expected a 4-D image batch")
    if spec.layout == "NCHW":
        g = g.transpose(0, 2, 3, 1)
    channels = spec.channels
    if not relevance:
        factor = (spec.value_range[1] / 255.0) / np.asarray(spec.std[:channels], dtype=np.float32)
        g = g * factor.astype(np.float32)
    if channels == 1:
        if relevance and pixels is not None:
            share = np.asarray(pixels, np.float32) * LUMA
            total = share.sum(axis=-1, keepdims=True)
            share = np.where(total > 0, share / np.where(total > 0, total, 1.0), LUMA)
            g = g * share
        else:
            g = g * LUMA
    elif spec.channel_order == "BGR":
        g = g[..., ::-1]
    return np.ascontiguousarray(g, dtype=np.float32)


def _hashable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return (value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


