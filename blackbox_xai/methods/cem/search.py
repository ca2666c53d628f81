"""FISTA with a binary search on the constant ``c``: one CEM search (PP or PN) within a pass budget."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...model.base import Model
from .autoencoder import Autoencoder, autoencoder_gradient
from .jacobian import hinge_gradient_exact, logit_jacobian_fd, logits_of
from .problem import Problem

logger = logging.getLogger(__name__)

C_UPPER = 1e10  # Alibi's "no upper bound yet" value for c


@dataclass(frozen=True)
class Schedule:
    """The hyperparameters one search uses (see :class:`~blackbox_xai.methods.cem.CEM` for their meaning)."""

    beta: float
    c_init: float
    c_steps: int
    iterations: int
    learning_rate_init: float
    fd_step: float
    gamma: float


class Search:
    """One search: FISTA iterations in rounds of the binary search on ``c``; :meth:`run` returns the best solution.

    ``exact``: hinge gradients by the model's backward graph (else central differences); ``limit``: the model's
    ``forward_passes`` count not to exceed (None: no cap); ``step(n)``: called with the iterations done (or skipped).
    """

    def __init__(self, schedule: Schedule, model: Model, problem: Problem, exact: bool,
                 autoencoder: Autoencoder | None, limit: int | None, step: Callable[[int], None]) -> None:
        self.schedule, self.model, self.problem, self.exact = schedule, model, problem, exact
        self.autoencoder, self.limit, self.step = autoencoder, limit, step
        self.budget_reached = False

    def affordable(self) -> bool:
        """Whether one more iteration fits in the pass budget (worst case)."""
        if self.limit is None:
            return True
        cost = 3 if self.exact else 2 + 2 * self.problem.n_features * self.problem.channels
        return self.model.forward_passes + cost <= self.limit

    def gradients(self, y: np.ndarray, rival: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """At ``y``, preconditioned (divided by the areas): (gradient of the hinge, zero where it is inactive;
        gradient of gamma * AE, zero without autoencoder; the hinge's seed)."""
        problem, schedule = self.problem, self.schedule
        if self.exact:
            logits, value, grad = hinge_gradient_exact(self.model, problem, y, rival)
            _, seed = problem.seed(logits)
        else:
            logits, jacobian = logit_jacobian_fd(self.model, problem, y, schedule.fd_step)
            value, seed = problem.seed(logits)
            grad = np.tensordot(seed, jacobian, axes=1)
        hinge = grad / problem.areas if value > 0 else np.zeros(problem.shape)
        extra = np.zeros(problem.shape)
        if self.autoencoder is not None:
            extra = (schedule.gamma * autoencoder_gradient(self.autoencoder, problem, y, schedule.fd_step)
                     / problem.areas)
        return hinge, extra, seed

    def run(self) -> dict[str, Any]:
        schedule, problem = self.schedule, self.problem
        lower, upper, c = 0.0, C_UPPER, schedule.c_init
        best_norm, best_v, best_c = math.inf, None, None
        iterations = 0
        rival: np.ndarray | None = None
        for _ in range(schedule.c_steps):
            x = problem.start()
            y = x.copy()
            found_here = False
            threshold = 0.0  # the c below which v = 0 is a fixed point, when the round stopped there
            for k in range(schedule.iterations):
                if not self.affordable():
                    self.budget_reached = True
                    break
                rate = schedule.learning_rate_init * (1.0 - k / schedule.iterations) ** 0.5
                hinge, extra, rival = self.gradients(y, rival)
                gradient = c * hinge + extra + 2.0 * y
                # Shrinkage-thresholding of beta * |v|_1 and projection on [0, 1] (the variable is never negative).
                x_next = np.clip(y - rate * gradient - rate * schedule.beta, 0.0, 1.0)
                y_next = np.clip(x_next + k / (k + 3.0) * (x_next - x), 0.0, 1.0)
                stationary = np.array_equal(x_next, x) and np.array_equal(y_next, y)
                x, y = x_next, y_next
                logits = logits_of(self.model, problem.image(x)[None])[0]
                iterations += 1
                self.step(1)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s c=%g k=%d hinge=%.4f net=%.4g max=%.3f passes=%d", problem.mode, c, k,
                                 problem.seed(logits)[0], problem.elastic_net(x, schedule.beta), float(x.max()),
                                 self.model.forward_passes)
                if problem.holds(logits):
                    found_here = True
                    norm = problem.elastic_net(x, schedule.beta)
                    if norm < best_norm:
                        best_norm, best_v, best_c = norm, x.copy(), c
                if stationary:
                    # A fixed point of the proximal-gradient map (for one step size, so for all): the iterates
                    # would repeat exactly. At v = 0 this happens while c * hinge_f + extra_f + beta >= 0 for every
                    # f, i.e. for c <= min over descent directions of (beta + extra_f) / -hinge_f.
                    if k == 0 and not found_here and not x.any():
                        descent = hinge < 0
                        threshold = (float(np.min((schedule.beta + extra[descent]) / -hinge[descent]))
                                     if descent.any() else math.inf)
                    self.step(schedule.iterations - k - 1)
                    break
            if self.budget_reached or threshold == math.inf:  # no c can leave v = 0: nothing to search
                break
            if found_here:
                upper = min(upper, c)
                c = (lower + upper) / 2.0
            else:
                lower = max(lower, c, threshold)
                c = (lower + upper) / 2.0 if upper < 1e9 else lower * 10.0
        return self.result(best_v, best_c, best_norm, iterations)

    def result(self, best_v: np.ndarray | None, best_c: float | None, best_norm: float,
               iterations: int) -> dict[str, Any]:
        problem = self.problem
        found = best_v is not None
        if not found:  # the trivial answers: the whole image (PP), no addition (PN)
            best_v = np.ones(problem.shape) if problem.mode == "pp" else problem.start()
        image = problem.image(best_v).astype(np.float32)
        if problem.mode == "pn":
            delta = image - problem.x0
            amount = np.sum(delta, axis=2)
        else:
            delta = problem.x0 - image
            amount = np.mean(problem.lift(best_v), axis=2)
        return {
            "image": image,
            "delta": delta.astype(np.float32),
            "map": amount.astype(np.float32),
            "variable": best_v.astype(np.float32),
            "found": bool(found),
            "c": None if best_c is None else float(best_c),
            "norm": float(best_norm) if found else None,
            "iterations": int(iterations),
            "budget_reached": self.budget_reached,
        }

