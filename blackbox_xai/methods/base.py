"""The base class of all explanation methods: one ``explain(model, image, target)`` entry point.

A subclass sets ``name`` (which registers it: :mod:`blackbox_xai.methods.registry`), ``family``, its ``aliases``,
``stochastic`` and ``requires``; takes its hyperparameters in ``__init__`` and stores them under the same names
through :meth:`Method._set_params`, which validates them once against the declared ``parameter_constraints``
(:mod:`blackbox_xai.methods.params`, scikit-learn style); and implements :meth:`Method.attribute`, which works at
the model's resolution and returns an :class:`Attribution`. The base class owns what every method shares: the
capability check, reading the image, resizing to the model and back, resolving the target, scoring, timing (the
same fields for every method, from the model's pass counters), progress reporting, and building the
:class:`~blackbox_xai.Explanation`.
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping

import numpy as np

from ..explanation import Explanation, record_provenance
from ..image import ImageSource, load_image, resize_map, resize_pixels
from ..model.base import Model
from ..model.capabilities import SCORES, check_requirements
from ..errors import ConstantMapWarning, ParameterError
from ..targets import Target, TargetLike, resolve_target
from . import params as P
from . import registry

Progress = Callable[[int, int], None]
ANNOUNCE_SECONDS = 30.0
"""Runs estimated to take longer than this log their planned passes and time before they start."""
log = logging.getLogger("blackbox_xai.plan")  # the CLI prints its INFO lines

TIMING_COUNTERS = ("forward_passes", "forward_seconds", "backward_passes", "backward_seconds", "head_passes",
                   "head_seconds")
"""The model's pass counters that every explanation's ``timing`` reports (as differences over the call), between
``seconds`` (the wall time of the whole call) and ``batch_size``."""


@dataclass
class Attribution:
    """What :meth:`Method.attribute` returns.

    saliency : the map (h, w) at the model's resolution.
    extras : method-specific values and arrays (they become ``Explanation.extras``).
    resolved_params : the hyperparameters as actually used where the method resolved a default ("auto", None),
        merged over :meth:`Method.get_params` into ``Explanation.params`` so that the call can be repeated.
    """

    saliency: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)
    resolved_params: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """Base class: subclasses implement :meth:`attribute` and declare their hyperparameters in ``__init__``."""

    name: ClassVar[str] = ""
    """The registered name (lower case); a class that sets one registers itself."""
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other names :func:`~blackbox_xai.methods.canonical_name` accepts (each class declares its own)."""
    family: ClassVar[str] = ""
    """One of :data:`blackbox_xai.methods.registry.FAMILIES` (the contract test requires one)."""
    stochastic: ClassVar[bool] = False
    """True when the map depends on random draws: the method then takes a ``seed``, and the same seed gives the
    same map."""
    requires: ClassVar[tuple[str, ...]] = (SCORES,)
    """What the model must offer (:mod:`blackbox_xai.model.capabilities`), checked once before any work."""
    parameter_constraints: ClassVar[dict[str, P.Constraint]] = {}
    """One :class:`~blackbox_xai.methods.params.Constraint` per ``__init__`` parameter."""

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register and vars(cls).get("name"):
            registry.register(cls)

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """The names of the ``__init__`` parameters, in order."""
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        parameters = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in parameters if p.name != "self" and p.kind not in variadic)

    def _set_params(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validate the ``__init__`` arguments (pass ``locals()``) against ``parameter_constraints``, store them
        converted under their names, and return them."""
        names = self.parameter_names()
        values = P.validate(self.name or type(self).__name__, self.parameter_constraints,
                            {name: arguments[name] for name in names})
        for name, value in values.items():
            setattr(self, name, value)
        return values

    def _refuse(self, parameter: str, value: Any, allowed: str) -> ParameterError:
        """The one-line :class:`ParameterError` for a value refused by a check that involves several
        parameters (``raise self._refuse(...)``)."""
        return P.parameter_error(self.name or type(self).__name__, parameter, value, allowed)

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters given to ``__init__``, by name (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self.parameter_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def explain(
        self,
        model: Model,
        image: ImageSource,
        target: TargetLike = "top1",
        progress: Progress | None = None,
    ) -> Explanation:
        """Explain ``model``'s ``target`` score on ``image``.

        Parameters
        ----------
        model : an :class:`~blackbox_xai.model.OnnxModel` or :class:`~blackbox_xai.model.CallableModel`.
        image : a file path or an array (any size; grayscale, RGBA and 16-bit are converted).
        target : a class index, "top1" (default), a list of classes, or (p, q) for "why p and not q".
        progress : called as ``progress(done, total)`` while the method runs.

        Returns
        -------
        Explanation with ``saliency`` at the image's original resolution.
        """
        check_requirements(model, self.requires, self.name)
        began = time.perf_counter()
        counters_before = {name: getattr(model, name, 0) for name in TIMING_COUNTERS}
        original = load_image(image)
        size = model.input_size or original.shape[:2]
        pixels = resize_pixels(original, size)
        clean_began = time.perf_counter()
        clean_outputs = model.predict(pixels)[0]
        self._announce(pixels.shape[:2], time.perf_counter() - clean_began)
        resolved = resolve_target(target, clean_outputs, labels=model.labels)
        result = self.attribute(model, pixels, resolved, clean_outputs, progress or _no_progress)
        saliency, extras = np.asarray(result.saliency, dtype=np.float32), result.extras
        if saliency.size and not np.ptp(saliency) > 0:
            warnings.warn(ConstantMapWarning(
                f"{self.name}: the map is constant ({float(saliency.flat[0]):g} everywhere), so it shows no "
                f"evidence: {self.constant_map_reason(extras)}."), stacklevel=2)
        saliency = resize_map(saliency, original.shape[:2])
        # A method may resolve defaults ("auto", None) to what it used: recorded so the call can be repeated.
        params = {**self.get_params(), **result.resolved_params}
        timing: dict[str, Any] = {"seconds": time.perf_counter() - began}
        timing.update({name: getattr(model, name, 0) - before for name, before in counters_before.items()})
        timing["batch_size"] = model.batch_size
        explanation = Explanation(
            saliency=saliency,
            target=resolved.to_json(),
            method=self.name,
            params=params,
            scores=clean_outputs,
            extras=extras,
            timing=timing,
            image=original,
            labels={str(c): model.class_name(c) for c in resolved.classes},
        )
        # where it came from: the image (path or array) and the model, by sha256, and the spec used
        return record_provenance(explanation, image=image, model=model)

    def planned_passes(self, size: tuple[int, int]) -> int | None:
        """The forward (or forward-backward) passes this method will make on an image of ``size`` at the model
        resolution, when known in advance (None otherwise). Used for the estimate logged before long runs."""
        return None

    def _announce(self, size: tuple[int, int], clean_seconds: float) -> None:
        """Log, before a run estimated to take more than :data:`ANNOUNCE_SECONDS`, how many passes it plans and
        about how long they take (from the clean image's own pass: one image at a time, so an upper bound for
        batched passes). The command line prints it as one line."""
        planned = self.planned_passes(size)
        if planned is None or clean_seconds <= 0:
            return
        estimate = planned * clean_seconds
        if estimate > ANNOUNCE_SECONDS:
            minutes = f"{estimate / 60:.0f} min" if estimate >= 90 else f"{estimate:.0f} s"
            log.info("%s: %s passes planned, up to about %s (from the clean image's pass)", self.name,
                     f"{planned:,}", minutes)

    def constant_map_reason(self, extras: dict[str, Any]) -> str:
        """Why the map came out constant, for the :class:`~blackbox_xai.errors.ConstantMapWarning` (a method that
        knows better overrides this)."""
        reason = "nothing the method tried changed the explained score"
        if getattr(self, "score", None) == "probability":
            reason += (". If the model is saturated (a probability that rounds to 1), explain its logits: "
                       "score='logit' (--param score=logit)")
        return reason

    @abstractmethod
    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        """The saliency map (h, w) at the model resolution of ``pixels`` (h, w, 3), extras and resolved
        parameters.

        ``clean_outputs`` are the model's raw outputs (C,) on ``pixels``, already computed.
        """


def target_scores(model: Model, batch: np.ndarray, target: Target, kind: str) -> np.ndarray:
    """The explained score of each image of ``batch`` (n, h, w, 3) -> (n,)."""
    return target.score(model.convert(model.predict(batch), kind))


def chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) pairs covering range(total) in steps of ``size``."""
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _no_progress(done: int, total: int) -> None:
    return None
