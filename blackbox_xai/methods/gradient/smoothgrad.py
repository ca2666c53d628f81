"""SmoothGrad (Smilkov, Thorat, Kim, Viégas and Wattenberg, "SmoothGrad: removing noise by adding noise",
ICML workshop 2017)."""

from __future__ import annotations


import numpy as np

from .. import params as P
from ...model.onnx_model import OnnxModel
from ...targets import Target
from ..base import Attribution, Progress, chunks
from .base import GradientMethod, input_gradients, reduction


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
    seed : random seed (default 0; None draws fresh entropy); the same seed gives the same map.
    """

    name = "smoothgrad"
    stochastic = True
    parameter_constraints = {"n_samples": P.Budget(), "noise": P.Interval(0.0, None), "magnitude": P.Boolean(),
                             "reduce": reduction(), "seed": P.Seed()}

    def __init__(self, n_samples: int = 50, noise: float = 0.15, magnitude: bool = False, reduce: str = "abs-max",
                 seed: int = 0) -> None:
        self._set_params(locals())  # noise: a fraction of the image's value range

    def attribution(self, model: OnnxModel, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray,
                    progress: Progress) -> Attribution:
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
        return Attribution(total / self.n_samples, {"sigma": sigma})
