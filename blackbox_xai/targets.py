"""Targets: which score an explanation explains.

A target is a class index, ``"top1"``, a list of class indices (their scores summed: "any of these"), or a
tuple ``(p, q)`` for the contrast "why p and not q" (score of p minus score of q). Every target becomes a weight
vector ``w`` over the classes, and the explained score of an output row ``s`` is ``s @ w``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from .errors import TargetError

TargetLike = Union[int, str, Sequence[int], tuple]


@dataclass(frozen=True)
class Target:
    """A resolved target: the classes involved, their weights, and a JSON-ready description."""

    kind: str  # "class", "classes" or "contrast"
    classes: tuple[int, ...]
    weights: np.ndarray

    def to_json(self) -> Any:
        if self.kind == "class":
            return self.classes[0]
        if self.kind == "contrast":
            return {"contrast": list(self.classes)}
        return list(self.classes)

    def score(self, scores: np.ndarray) -> np.ndarray:
        """Explained score of each row of ``scores`` (N, C) -> (N,)."""
        return scores @ self.weights


def parse_target(text: str) -> TargetLike:
    """Parse a CLI target: ``top1``, ``INDEX``, ``A,B,...`` (several classes) or ``P:Q`` (contrast)."""
    text = text.strip()
    try:
        if text.lower() == "top1":
            return "top1"
        if ":" in text:
            p, q = text.split(":")
            return (int(p), int(q))
        if "," in text:
            return [int(t) for t in text.split(",") if t.strip()]
        return int(text)
    except ValueError:
        raise TargetError(f"cannot read target {text!r}: use top1, a class index, A,B,... or P:Q") from None


def resolve_target(target: TargetLike, clean_scores: np.ndarray) -> Target:
    """Resolve ``target`` against the model's output on the clean image (1-D array of C scores)."""
    n_classes = clean_scores.shape[0]
    if isinstance(target, str):
        target = parse_target(target)
    if isinstance(target, str):  # "top1"
        return _make("class", (int(np.argmax(clean_scores)),), (1.0,), n_classes)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return _make("class", (int(target),), (1.0,), n_classes)
    if isinstance(target, tuple):
        if len(target) != 2:
            raise TargetError(f"a contrastive target is a pair (p, q), got {target!r}")
        p, q = (_as_index(t) for t in target)
        if p == q:
            raise TargetError(f"a contrastive target needs two different classes, got ({p}, {q})")
        return _make("contrast", (p, q), (1.0, -1.0), n_classes)
    if isinstance(target, (list, np.ndarray)):
        classes = tuple(dict.fromkeys(_as_index(t) for t in target))
        if not classes:
            raise TargetError("an empty list of target classes")
        return _make("classes", classes, (1.0,) * len(classes), n_classes)
    raise TargetError(f"unsupported target {target!r}: use a class index, 'top1', a list of classes or (p, q)")


def _as_index(value: Any) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise TargetError(f"a target class must be an integer index, got {value!r}")


def _make(kind: str, classes: tuple[int, ...], weights: tuple[float, ...], n_classes: int) -> Target:
    for index in classes:
        if not 0 <= index < n_classes:
            raise TargetError(f"target class {index} is out of range: the model has {n_classes} classes (0-{n_classes - 1})")
    vector = np.zeros(n_classes, dtype=np.float32)
    for index, weight in zip(classes, weights):
        vector[index] = weight
    return Target(kind, classes, vector)
