"""Exact gradients of an ONNX model: a backward graph of ordinary ONNX ops (:mod:`blackbox_xai.autodiff`) run by
the model's own onnxruntime providers.

:func:`gradient_model` builds (once per model, ``wrt`` tensors, rule set and rule parameters) and caches the
gradient model with its session; :func:`exact_gradient` runs pixels through it in chunks and brings the model-input
gradient back to pixel space with the model's :class:`~blackbox_xai.model.preprocess.Preprocessor`. This is the
work behind :meth:`blackbox_xai.model.OnnxModel.gradient`, which documents the parameters.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import GradientUnavailableError, ModelError, ParameterError, ScoreError
from .base import Model  # an OnnxModel (its module imports this one)
from .preprocess import PIXEL_FEED
from .diagnose import explain_error
from .session import ORT_DTYPES


PIXELS = "pixels"  # the name that asks OnnxModel.gradient for the gradient in pixel space


class _GradientModel:
    """One built gradient model: its session and how to feed it.

    ``feed`` is the graph input that takes the images and ``prepare`` turns pixels into it: the model input
    (:meth:`~blackbox_xai.model.preprocess.Preprocessor.forward`), or, for LRP with the automatic z^B bounds, the
    pixels in the model's channel order and layout (the normalisation then runs inside the graph, see
    :meth:`~blackbox_xai.model.preprocess.Preprocessor.with_pixel_input`).
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
            raise ModelError(f"onnxruntime failed to run the gradient model: {explain_error(error, 'run', True)}") from None


def gradient_model(model: Model, tensors: tuple[str, ...], rules: str, params: dict[str, Any],
                   pixel_box: bool = False) -> _GradientModel:
    """The gradient model of ``model`` for (``tensors``, ``rules``, ``params``), built once and cached on the model
    (``model._gradient_models``) with its session.

    ``pixel_box``: feed the ordered pixels and normalise them in the graph
    (:meth:`~blackbox_xai.model.preprocess.Preprocessor.with_pixel_input`), so that the LRP z^B rule gets the box
    [0, 255] carried to the first layer's per-channel bounds. Raises :class:`GradientUnavailableError` when an op
    has no backward rule."""
    cache = model.__dict__.setdefault("_gradient_models", {})
    key = (tensors, rules, tuple(sorted((k, _hashable(v)) for k, v in params.items())), pixel_box)
    if key in cache:
        return cache[key]
    from .. import graph
    from ..graph.head import logits_tensor

    try:
        from ..autodiff import RULE_SETS, UnsupportedOpError, build_gradient_model
    except ImportError as error:  # pragma: no cover - the autodiff ships with the package
        raise ModelError(f"exact gradients are not available: {error}") from None
    if rules not in RULE_SETS:
        raise ParameterError(f"rules must be one of {sorted(RULE_SETS)}, got {rules!r}")
    proto = graph.move_initializers_out_of_inputs(model.proto())
    output, _ = logits_tensor(proto, model.output_name)
    known = set(graph.analysis.all_tensor_names(proto))
    unknown = [name for name in tensors if name not in known]
    if unknown:
        raise ParameterError(f"no tensor {unknown[0]!r} in the model's graph (wrt takes 'pixels' or tensor "
                             "names; list spatial layers with: blackbox-xai layers MODEL)")
    preprocessor = model.preprocessor
    feed: str = model.spec.input
    prepare: Callable[[np.ndarray], np.ndarray] = preprocessor.forward
    wrt = list(tensors)
    if pixel_box:
        proto = preprocessor.with_pixel_input(proto, PIXEL_FEED)
        feed, wrt = PIXEL_FEED, [PIXEL_FEED, *tensors]
        params = {**params, "input_bounds": (0.0, 255.0)}
        prepare = preprocessor.ordered_pixels
    try:
        built = build_gradient_model(proto, output, wrt=wrt, rules=rules, **params)
    except UnsupportedOpError as error:
        raise GradientUnavailableError(str(error)) from None
    entry = _GradientModel(model.make_session(built), output, tensors, feed, prepare)
    cache[key] = entry
    return entry


def exact_gradient(model: Model, pixels: np.ndarray, weights: np.ndarray, wrt: Sequence[str] | str | None,
                   rules: str, rule_params: dict[str, Any]) -> tuple[np.ndarray, Any]:
    """:meth:`blackbox_xai.model.OnnxModel.gradient` (see there): check the arguments, run the cached gradient
    model in chunks, count the passes, and bring the pixel gradient (or relevance) back to pixel space."""
    spec = model.spec
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[3] != 3:
        raise ParameterError(f"pixels must be (N, H, W, 3) or (H, W, 3), got {list(pixels.shape)}")
    if spec.size is not None and pixels.shape[1:3] != tuple(spec.size):
        raise ParameterError(f"pixels are {pixels.shape[1]}x{pixels.shape[2]} but the model takes "
                             f"{spec.size[0]}x{spec.size[1]}: resizing is not differentiated, resize "
                             "first (blackbox_xai.image.resize_pixels)")
    if spec.dtype == "uint8":
        raise ModelError("the model takes uint8 pixels: rounding to integers has no gradient; gradient methods "
                         "need a float input (use rise, occlusion or the CAM family)")
    count = len(pixels)
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim == 1:
        weights = np.broadcast_to(weights, (count, len(weights)))
    if weights.ndim != 2 or weights.shape[0] != count or weights.shape[1] != model.n_classes:
        raise ParameterError(f"weights must be (C,) or (N, C) with C = {model.n_classes} classes and N = {count} "
                             f"images, got {list(weights.shape)}")
    names = [PIXELS] if wrt is None else ([wrt] if isinstance(wrt, str) else list(wrt))
    if not names:
        raise ParameterError("wrt is an empty list: name 'pixels' or tensors of the graph")
    tensors = tuple(dict.fromkeys(spec.input if name == PIXELS else name for name in names))
    relevance = rules.startswith("lrp")
    params = dict(rule_params)
    bounds = params.pop("input_bounds", None)
    pixel_box = relevance and bounds is None  # the exact per-channel box, through a pixel input
    if bounds is not False and bounds is not None:
        params["input_bounds"] = tuple(float(b) for b in bounds)
    entry = gradient_model(model, tensors, rules, params, pixel_box)
    chunk = 1 if model.fixed_batch == 1 else model.batch_size
    logits, results = [], {name: [] for name in tensors}
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        inputs = entry.prepare(pixels[start:stop])
        began = time.perf_counter()
        values = entry.run(inputs, weights[start:stop])
        model.backward_seconds += time.perf_counter() - began
        model.forward_passes += stop - start
        model.backward_passes += stop - start
        logits.append(np.asarray(values[0], dtype=np.float32).reshape(stop - start, -1))
        for name, value in zip(tensors, values[1:]):
            results[name].append(np.asarray(value, dtype=np.float32))
    scores = np.concatenate(logits)
    if not np.all(np.isfinite(scores)):
        raise ScoreError("the model returned NaN or infinite logits in the gradient run; check the input spec")
    gathered = {name: np.concatenate(parts) for name, parts in results.items()}
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name != PIXELS:
            out[name] = gathered[name]
        elif relevance:
            out[name] = model.preprocessor.relevance(gathered[spec.input], pixels)
        else:
            out[name] = model.preprocessor.vjp(gathered[spec.input])
    return scores, (out[PIXELS] if wrt is None else out)


def _hashable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return (value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value
