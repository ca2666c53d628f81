"""Gradients of CEM's hinge term with respect to the feature variable: exact (the model's backward graph chained
through :meth:`Problem.pullback`) or by central differences on the logits (the black-box path)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from ...model.base import Model
from ..base import chunks
from .problem import Problem


def logits_of(model: Model, images: np.ndarray) -> np.ndarray:
    """Logits (n, C) float64 of images (n, h, w, 3), in chunks of the model's batch size."""
    return np.asarray(model.convert(model.predict(images), "logit"), dtype=np.float64)


def hinge_gradient_requests(problem: Problem, v: np.ndarray, rival_guess: np.ndarray | None = None
                            ) -> Generator[tuple, Any, tuple[np.ndarray, float, np.ndarray]]:
    """:func:`hinge_gradient_exact` as a generator that asks for what it needs from the model instead of running
    it: it yields ``("logits", image)`` (answer: the logits (C,) float64) and ``("gradient", image, seed)``
    (answer: the logits and the pixel gradient (h, w, 3) of ``seed . logits``), and returns the same triple, so
    that a driver can run several of them in one model call (:func:`~blackbox_xai.methods.cem.search.run_searches`).
    """
    image = problem.image(v)
    seed = rival_guess
    if seed is None:
        _, seed = problem.seed((yield ("logits", image)))
    logits, pixel_gradient = yield ("gradient", image, seed)
    value, actual = problem.seed(logits)
    if not np.array_equal(actual, seed):
        logits, pixel_gradient = yield ("gradient", image, actual)
        value, actual = problem.seed(logits)
    return logits, value, problem.pullback(v, pixel_gradient)


def answer(model: Model, request: tuple) -> Any:
    """Run one request of :func:`hinge_gradient_requests` through ``model``."""
    if request[0] == "logits":
        return logits_of(model, request[1][None])[0]
    logits, pixel_gradient = model.gradient(request[1][None], request[2].astype(np.float32))
    return np.asarray(logits[0], np.float64), pixel_gradient[0]


def hinge_gradient_exact(model: Model, problem: Problem, v: np.ndarray,
                         rival_guess: np.ndarray | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """(logits at v, hinge before max(0, .), d(seed . logits)/dv (F, k)) by the model's backward graph.

    The seed is the hinge's logit vector at ``v``; ``rival_guess`` (a seed) saves the pass that would find it:
    when the logits the gradient run returns give another seed, the gradient is run again with the right one.
    """
    steps = hinge_gradient_requests(problem, v, rival_guess)
    request = next(steps)
    while True:
        try:
            request = steps.send(answer(model, request))
        except StopIteration as stop:
            return stop.value


def logit_jacobian_fd(model: Model, problem: Problem, v: np.ndarray, step: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(logits at v (C,), central-difference Jacobian of the logits w.r.t. v, (C, F, k)).

    ``1 + 2 * F * k`` images, built and evaluated in chunks of the model's batch size.
    """
    count = problem.n_features * problem.channels
    center = logits_of(model, problem.image(v)[None])[0]
    jacobian = np.empty((len(center), count), dtype=np.float64)
    half = max(1, model.batch_size // 2)
    for start, stop in chunks(count, half):
        elements = np.arange(start, stop)
        batch = np.concatenate([problem.perturbed(v, elements, step), problem.perturbed(v, elements, -step)])
        out = logits_of(model, batch)
        jacobian[:, start:stop] = ((out[:stop - start] - out[stop - start:]) / (2.0 * step)).T
    return center, jacobian.reshape(len(center), problem.n_features, problem.channels)

