"""CallableModel: any Python function from pixel batches to scores, the true black box."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import ModelError
from .base import Model
from .spec import InputSpec


class CallableModel(Model):
    """Wrap ``function(batch) -> scores`` behind the same interface as :class:`OnnxModel`.

    Parameters
    ----------
    function : called with a batch and returning scores (N, C) (or (N,) for one score).
    spec : ``size`` is the resolution the function expects (None = any: images are explained at their own size);
        with ``preprocess=True`` the rest of the spec (layout, mean/std, dtype...) is applied before the call.
    preprocess : False (default) passes pixels (N, H, W, 3), float32 in [0, 255], RGB; True passes the model input
        computed from ``spec``.
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
        self.function = function
        self.preprocess = preprocess
        super().__init__(spec, batch_size, labels)
        self._probe(output_kind)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        return self.run_inputs(self.preprocessor.forward(pixels) if self.preprocess else pixels)

    def run_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Raw outputs of the function for inputs as it takes them (the model input with ``preprocess=True``,
        else pixels): no chunking, no score checks, no pass counting."""
        return np.asarray(self.function(inputs))
