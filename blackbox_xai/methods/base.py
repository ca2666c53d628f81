"""The base class of all explanation methods: one ``explain(model, image, target)`` entry point.

A subclass sets ``name``, takes its hyperparameters in ``__init__`` (stored under the same names, scikit-learn
style, validated once) and implements :meth:`Method.attribute`, which works at the model's resolution. The base
class owns what every method shares: reading the image, resizing to the model and back, resolving the target,
scoring, timing, progress reporting, and building the :class:`~blackbox_xai.Explanation`.
"""

from __future__ import annotations

import inspect
import time
import warnings
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from ..explanation import Explanation
from ..image import ImageSource, load_image, resize_map, resize_pixels
from ..model.base import SCORE_KINDS, Model
from ..model.capabilities import SCORES, check_requirements
from ..errors import ConstantMapWarning, ParameterError
from ..targets import Target, TargetLike, resolve_target

Progress = Callable[[int, int], None]


class Method(ABC):
    """Base class: subclasses implement :meth:`attribute` and declare their hyperparameters in ``__init__``."""

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = (SCORES,)
    """What the model must offer (:mod:`blackbox_xai.model.capabilities`), checked once before any work."""

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters given to ``__init__``, by name (scikit-learn convention)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

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
        passes_before, seconds_before = model.forward_passes, model.forward_seconds
        original = load_image(image)
        size = model.input_size or original.shape[:2]
        pixels = resize_pixels(original, size)
        clean_outputs = model.predict(pixels)[0]
        resolved = resolve_target(target, clean_outputs)
        saliency, extras = self.attribute(model, pixels, resolved, clean_outputs, progress or _no_progress)
        saliency = np.asarray(saliency, dtype=np.float32)
        if saliency.size and not np.ptp(saliency) > 0:
            warnings.warn(ConstantMapWarning(
                f"{self.name}: the map is constant ({float(saliency.flat[0]):g} everywhere), so it shows no "
                f"evidence: {self.constant_map_reason(extras)}."), stacklevel=2)
        saliency = resize_map(saliency, original.shape[:2])
        # A method may resolve defaults ("auto", None) to what it used: recorded so the call can be repeated.
        params = {**self.get_params(), **extras.pop("resolved_params", {})}
        timing = {
            "seconds": time.perf_counter() - began,
            "forward_passes": model.forward_passes - passes_before,
            "forward_seconds": model.forward_seconds - seconds_before,
            "batch_size": model.batch_size,
        }
        return Explanation(
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
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Return the saliency map (h, w) at the model resolution of ``pixels`` (h, w, 3), and extras.

        ``clean_outputs`` are the model's raw outputs (C,) on ``pixels``, already computed.
        """


def target_scores(model: Model, batch: np.ndarray, target: Target, kind: str) -> np.ndarray:
    """The explained score of each image of ``batch`` (n, h, w, 3) -> (n,)."""
    return target.score(model.convert(model.predict(batch), kind))


def check_score_kind(kind: str) -> str:
    if kind not in SCORE_KINDS:
        raise ParameterError(f"score must be one of {SCORE_KINDS}, got {kind!r}")
    return kind


def chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) pairs covering range(total) in steps of ``size``."""
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _no_progress(done: int, total: int) -> None:
    return None
