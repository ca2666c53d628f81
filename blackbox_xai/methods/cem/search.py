"""FISTA with a binary search on the constant ``c``: CEM's searches (PP and PN) within a pass budget.

A search is a generator (:meth:`Search.steps`) that asks for what it needs from the explained model: the logits
of an image, or the logits and the gradient of a seed's score at an image, and whether a number of passes is
still affordable. :func:`run_searches` answers; with ``together=True`` it answers the PP's and the PN's requests
of the same kind in one model call (two images per backward run instead of one), with the same budget rule as
one search after the other: the first search may use ``(left - n) // n`` passes, the next everything the first
left unused, so a later search that would go past what an earlier one might still use waits for it to end.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...model.base import Model
from .autoencoder import Autoencoder, autoencoder_gradient
from .jacobian import hinge_gradient_requests, logit_jacobian_fd, logits_of
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


Request = tuple  # ("afford", cost) -> bool; ("logits", image) -> logits; ("gradient", image, seed) -> (logits, grad)
Steps = Generator[Request, Any, dict[str, Any]]


class Search:
    """One search: FISTA iterations in rounds of the binary search on ``c``; :meth:`steps` yields its requests
    to :func:`run_searches` and returns the best solution.

    ``exact``: hinge gradients by the model's backward graph (else central differences); ``step(n)``: called with
    the iterations done (or skipped). ``passes`` counts this search's forward passes (gradient runs included).
    """

    def __init__(self, schedule: Schedule, model: Model, problem: Problem, exact: bool,
                 autoencoder: Autoencoder | None, step: Callable[[int], None]) -> None:
        self.schedule, self.model, self.problem, self.exact = schedule, model, problem, exact
        self.autoencoder, self.step = autoencoder, step
        self.budget_reached = False
        self.passes = 0

    def cost(self) -> int:
        """The passes of one more iteration, in the worst case."""
        return 3 if self.exact else 2 + 2 * self.problem.n_features * self.problem.channels

    def gradients(self, y: np.ndarray, rival: np.ndarray | None) -> Generator[Request, Any, tuple]:
        """At ``y``, preconditioned (divided by the areas): (gradient of the hinge, zero where it is inactive;
        gradient of gamma * AE, zero without autoencoder; the hinge's seed)."""
        problem, schedule = self.problem, self.schedule
        if self.exact:
            logits, value, grad = yield from hinge_gradient_requests(problem, y, rival)
            _, seed = problem.seed(logits)
        else:
            before = self.model.forward_passes
            logits, jacobian = logit_jacobian_fd(self.model, problem, y, schedule.fd_step)
            self.passes += self.model.forward_passes - before
            value, seed = problem.seed(logits)
            grad = np.tensordot(seed, jacobian, axes=1)
        hinge = grad / problem.areas if value > 0 else np.zeros(problem.shape)
        extra = np.zeros(problem.shape)
        if self.autoencoder is not None:
            before = self.model.forward_passes
            extra = (schedule.gamma * autoencoder_gradient(self.autoencoder, problem, y, schedule.fd_step)
                     / problem.areas)
            self.passes += self.model.forward_passes - before
        return hinge, extra, seed

    def steps(self) -> Steps:
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
                if not (yield ("afford", self.cost())):
                    self.budget_reached = True
                    break
                rate = schedule.learning_rate_init * (1.0 - k / schedule.iterations) ** 0.5
                hinge, extra, rival = yield from self.gradients(y, rival)
                gradient = c * hinge + extra + 2.0 * y
                # Shrinkage-thresholding of beta * |v|_1 and projection on [0, 1] (the variable is never negative).
                x_next = np.clip(y - rate * gradient - rate * schedule.beta, 0.0, 1.0)
                y_next = np.clip(x_next + k / (k + 3.0) * (x_next - x), 0.0, 1.0)
                stationary = np.array_equal(x_next, x) and np.array_equal(y_next, y)
                x, y = x_next, y_next
                logits = yield ("logits", problem.image(x))
                iterations += 1
                self.step(1)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s c=%g k=%d hinge=%.4f net=%.4g max=%.3f passes=%d", problem.mode, c, k,
                                 problem.seed(logits)[0], problem.elastic_net(x, schedule.beta), float(x.max()),
                                 self.passes)
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



def run_searches(searches: list[Search], model: Model, budget: int | None, together: bool) -> list[dict[str, Any]]:
    """Run the searches and return their results, in order.

    ``budget``: the forward passes they may use between them, one verification pass per search set aside
    (None: no cap). Search i may use ``(budget - used before it - (n - i)) // (n - i)`` passes, ``used before it``
    being what the searches before it used once they are done. ``together``: the searches' requests of the same
    kind go through the model in one call; otherwise each search runs to its end before the next starts.
    """
    n = len(searches)
    done = [False] * n
    results: list[dict[str, Any] | None] = [None] * n

    def allowance(i: int, earlier_use: Callable[[int], int]) -> int | None:
        if budget is None:
            return None
        used = sum(searches[j].passes if done[j] else earlier_use(j) for j in range(i))
        return max(0, (budget - used - (n - i)) // (n - i))

    def most(j: int) -> int:  # the most search j can still end up using
        limit = allowance(j, lambda k: searches[k].passes)
        return searches[j].passes if limit is None else max(searches[j].passes, limit)

    generators = [search.steps() for search in searches]
    requests: dict[int, Request] = {}

    def advance(i: int, answer: Any) -> None:
        try:
            requests[i] = generators[i].send(answer) if i in requests else next(generators[i])
        except StopIteration as stop:
            results[i], done[i] = stop.value, True
            requests.pop(i, None)

    started = 0
    while not all(done):
        while started < n and (together or all(done[:started])):
            advance(started, None)
            started += 1
        answers: dict[int, Any] = {}
        for i, request in list(requests.items()):
            if request[0] == "afford":
                limit = allowance(i, most)
                affordable = limit is None or searches[i].passes + request[1] <= limit
                if affordable or all(done[:i]):  # else wait: an earlier search may leave passes unused
                    answers[i] = affordable
        asking = [i for i, request in requests.items() if request[0] == "logits"]
        if asking:
            logits = logits_of(model, np.stack([requests[i][1] for i in asking]))
            for i, row in zip(asking, logits):
                answers[i] = row
                searches[i].passes += 1
        asking = [i for i, request in requests.items() if request[0] == "gradient"]
        if asking:
            images = np.stack([requests[i][1] for i in asking])
            seeds = np.stack([requests[i][2] for i in asking]).astype(np.float32)
            logits, grads = model.gradient(images, seeds)
            for i, row, grad in zip(asking, np.asarray(logits, np.float64), grads):
                answers[i] = (row, grad)
                searches[i].passes += 1
        if not answers:
            raise RuntimeError("CEM's searches wait on each other")  # cannot happen: the first never waits
        for i, answer in answers.items():
            advance(i, answer)
    return results  # type: ignore[return-value]
