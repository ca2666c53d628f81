"""Reference maps that use no evidence, to score real methods against: a random map and a centre prior."""

from __future__ import annotations

import numpy as np

from ..image import resize_map
from ..model.base import Model
from ..targets import Target
from . import params as P
from .base import Attribution, Method, Progress


class RandomMap(Method):
    """Uniform random saliency (seeded): the floor every faithful method must beat.

    By default the noise is drawn on a ``cells`` x ``cells`` grid and bilinearly upsampled, so that the random map
    is as smooth as a typical explanation: per-pixel white noise (``cells=0``) scores unfairly well on deletion,
    because deleting scattered pixels destroys any image quickly (an out-of-distribution artefact, not evidence).

    Parameters
    ----------
    cells : grid of the random values (default 7); 0 = one value per pixel.
    seed : random seed (default 0; None draws fresh entropy).
    """

    name = "random"
    family = "baseline"
    stochastic = True
    parameter_constraints = {"cells": P.Int(0), "seed": P.Seed()}

    def __init__(self, cells: int = 7, seed: int = 0) -> None:
        self._set_params(locals())

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        rng = np.random.default_rng(self.seed)
        height, width = pixels.shape[:2]
        if self.cells == 0:
            return Attribution(rng.random((height, width), dtype=np.float32))
        grid = rng.random((self.cells, self.cells), dtype=np.float32)
        return Attribution(resize_map(grid, (height, width)))


class CentreMap(Method):
    """A Gaussian centred on the image (sigma = ``sigma`` x the image size): the centre-bias baseline of the
    pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016).

    Parameters
    ----------
    sigma : standard deviation as a fraction of the image height and width (default 0.25).
    """

    name = "centre"
    aliases = ("center",)
    family = "baseline"
    parameter_constraints = {"sigma": P.Interval(0.0, None, closed="neither")}

    def __init__(self, sigma: float = 0.25) -> None:
        self._set_params(locals())

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        height, width = pixels.shape[:2]
        y = (np.arange(height) + 0.5 - height / 2) / (self.sigma * height)
        x = (np.arange(width) + 0.5 - width / 2) / (self.sigma * width)
        return Attribution(np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32))
