"""CallableModel: any Python function from pixel batches to scores, the true black box."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import AssumedSpecWarning, ModelError
from .base import Model
from .resolve import CALLER, assumption_line, complete_sources
from .spec import InputSpec


class CallableModel(Model):
    """Wrap ``function(batch) -> scores`` behind the same interface as :class:`OnnxModel`.

    Parameters
    ----------
    function : called with a batch of N images and returning scores: a numeric array (N, C), finite, with the
        same C on every call; (N,) is accepted only as one score per image (a model with one output, C = 1).
        Anything else (None, strings, an (N, 0), (N, C, 1) or (C,) array, a row count other than N, a class count
        that changes between calls) is a :class:`~blackbox_xai.errors.ModelError` that says what came back; NaN or
        infinite scores are a :class:`~blackbox_xai.errors.ScoreError`.
    spec : ``size`` is the resolution the function expects (None = any: images are explained at their own size);
        with ``preprocess=True`` the rest of the spec (layout, mean/std, dtype...) is applied before the call.
    preprocess : False (default) passes pixels (N, H, W, 3), float32 in [0, 255], RGB; True passes the model input
        computed from ``spec`` (a uint8 dtype takes 0..255 unless the spec says otherwise; a normalisation the
        spec does not give is recorded in ``assumptions`` and warned about once, as for an ONNX model).
    batch_size : images per call (default 64).
    labels : class names (a list or a text file).
    output_kind : "logits" or "probabilities"; None = detected from one probe call (rows that are non-negative
        and sum to 1 are probabilities).
    """

    def __init__(
        self,
        function: Callable[[np.ndarray], np.ndarray],
        spec: InputSpec | None = None,
        preprocess: bool = False,
        batch_size: int = 64,
        labels: Sequence[str] | str | Path | None = None,
        output_kind: str | None = None,
    ) -> None:
        if not callable(function):
            raise ModelError(f"CallableModel needs a callable, got {type(function).__name__}")
        spec = spec or InputSpec()
        if preprocess and spec.layout is None:
            spec = spec.replace(layout="NCHW")
        if preprocess and spec.dtype == "uint8" and "value_range" not in spec.explicit:
            spec = dataclasses.replace(spec, value_range=(0.0, 255.0))  # bytes, as for an ONNX uint8 input
        self.function = function
        self.preprocess = preprocess
        super().__init__(spec, batch_size, labels)
        self._probe(output_kind)
        # the normalisation matters only when this model applies it (preprocess=True)
        self.spec_source: dict[str, str] = complete_sources(spec, {name: CALLER for name in spec.explicit})
        assumed = assumption_line(spec, self.spec_source, None) if preprocess else None
        self.assumptions = [assumed] if assumed else []
        for line in self.assumptions:
            warnings.warn(line, AssumedSpecWarning, stacklevel=2)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        return self.run_inputs(self.preprocessor.forward(pixels) if self.preprocess else pixels)

    def run_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Raw outputs of the function for inputs as it takes them (the model input with ``preprocess=True``,
        else pixels): no chunking, no score checks, no pass counting."""
        returned = self.function(inputs)
        if returned is None:
            raise ModelError(f"the function returned None for a batch of {len(inputs)} image(s); it must return "
                             "scores, a numeric array (N, C) for N images")
        try:
            return np.asarray(returned)
        except (ValueError, TypeError) as error:  # ragged lists, objects numpy cannot read
            raise ModelError(f"the function returned a {type(returned).__name__} that is not an array of scores "
                             f"({error}); return a numeric array (N, C) for N images") from None

    def _check_outputs(self, raw: np.ndarray, expected: int) -> np.ndarray:
        """Scores (N, C) from what the function returned for ``expected`` images, or one clear ModelError."""
        shape = tuple(raw.shape)
        if raw.dtype == bool or not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
            kind = "strings" if raw.dtype.kind in "US" else f"values of type {raw.dtype}"
            raise ModelError(f"the function returned {kind} (shape {shape}); it must return numeric scores (N, C) "
                             f"for N images")
        known = self.__dict__.get("_n_classes")
        images = f"a batch of {expected} image{'s' if expected != 1 else ''}"
        if raw.ndim == 1:
            if len(raw) != expected:
                raise ModelError(f"the function returned shape {shape} for {images}: a 1-D output is read as one "
                                 f"score per image, so it must have {expected} values; return ({expected}, C) for "
                                 "C classes")
            if known is not None and known > 1:
                raise ModelError(f"the function returned shape {shape} for {images}, but it returned {known} "
                                 f"scores per image before: return ({expected}, {known})")
        elif raw.ndim == 2:
            if shape[0] != expected:
                raise ModelError(f"the function returned {shape[0]} rows for {images}: it must return one row of "
                                 f"scores per image, ({expected}, C)")
            if shape[1] == 0:
                raise ModelError(f"the function returned shape {shape}: no scores; return ({expected}, C) with C "
                                 ">= 1")
            if known is not None and shape[1] != known:
                raise ModelError(f"the function returned {shape[1]} scores per image, but {known} before: the "
                                 "number of classes must not change between calls")
        else:
            raise ModelError(f"the function returned shape {shape} for {images}: expected scores ({expected}, C) "
                             f"(or ({expected},) for one score per image)")
        return super()._check_outputs(raw, expected)
