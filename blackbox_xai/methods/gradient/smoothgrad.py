"""SmoothGrad (Smilkov, Thorat, Kim, Viégas and Wattenberg, "SmoothGrad: removing noise by adding noise",
ICML workshop 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import ParameterError
from ...model.onnx_model import OnnxModel
from ...targets import Target
from ..base import Progress, chunks
from .base import GradientMethod, check_reduce, input_gradients


class SmoothGrad(GradientMethod):
    """The gradient averaged over ``n_samples`` noisy copies ``pixels + N(0, sigma^2)``,
    ``sigma = noise * (max(pixels) - min(pixels))`` (the paper's noise level, 10-20 %; its reference code).

    The noisy copies are drawn from ``numpy.random.default_rng(seed)`` and evaluated in batches of the model's
    batch size (n_samples forward-backward passes); noisy pixels are not clipped, as in the reference code. The
    average of the signed gradients (or of their squares with ``magnitude=True``, the reference code's option) is
    ``extras["attribution"]``; the map is its "abs-max" channel reduction by default, as for :class:`Saliency`.

    Parameters
    ----------
    n_samples : number of noisy copies (default 50, the paper's).
    noise : sigma as a fraction of the image's value range (default 0.15).
    magnitude : average the squared gradients instead of the gradients (default False).
    reduce : channel reduction, "abs-max" (default), "abs-sum" or "sum".
    seed : random seed (default 0); the same seed gives the same map.
    """

    name = "smoothgrad"

    def __init__(self, n_samples: int = 50, noise: float = 0.15, magnitude: bool = False, reduce: str = "abs-max",
                 seed: int = 0) -> None:
        if int(n_samples) < 1:
            raise ParameterError(f"n_samples must be at least 1, got {n_samples}")
        if not float(noise) >= 0:
            raise ParameterError(f"noise must be non-negative (a fraction of the value range), got {noise}")
        self.n_samples = int(n_samples)
        self.noise = float(noise)
        self.magnitude = bool(magnitude)
        self.reduce = check_reduce(reduce)
        self.seed = int(seed)

    def attribution(self, model: OnnxModel, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                    progress: Progress) -> tuple[np.ndarray, dict[str, Any]]:
        sigma = self.noise * float(pixels.max() - pixels.min())
        rng = np.random.default_rng(self.seed)
        total = np.zeros(pixels.shape, dtype=np.float64)
        for start, stop in chunks(self.n_samples, model.batch_size):
            noise = rng.standard_normal((stop - start, *pixels.shape), dtype=np.float32)
            batch = pixels[None] + np.float32(sigma) * noise
            _, grads = input_gradients(model, batch, target)
            grads = grads.astype(np.float64)
            total += (grads * grads if self.magnitude else grads).sum(axis=0)
            progress(stop, self.n_samples)
        return total / self.n_samples, {"sigma": sigma}
