"""Targets: which score an explanation explains.

A target is one of

- a class index (``3``) or, when the model's class names are known, a class **name** (``"Egyptian cat"``):
  names match case-insensitively, with surrounding whitespace ignored and inner runs of whitespace read as one
  space; where two labels differ only in case (ImageNet's "Cardigan" the dog and "cardigan" the sweater), the
  exact spelling decides. A name that is also an integer (``"3"``) is read as the index: the index wins;
- ``"top1"``: the highest-scoring class on the clean image, or ``"topK"`` (``"top5"``): the K highest classes,
  a ``"classes"`` target whose score is their sum (K between 1 and the number of classes);
- a list of classes (indices or names; their scores summed: "any of these");
- a pair ``(p, q)`` for the contrast "why p and not q" (score of p minus score of q).

On the command line a list is written ``A,B,...`` and a contrast ``P:Q``. A label that itself contains a comma or
a colon is matched only when it is the WHOLE target text (and the labels are known when the text is read); inside
a list or a contrast such a class must be given by its index. ``topK`` cannot be part of a list or a contrast.

Every target becomes a weight vector ``w`` over the classes, and the explained score of an output row ``s`` is
``s @ w``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from .errors import TargetError

TargetLike = Union[int, str, Sequence[Union[int, str]], tuple]

_TOP_K = re.compile(r"top\s*([+-]?\d+)", re.IGNORECASE)
_SYNTAX = "use top1, topK, a class index or name, A,B,... (several classes) or P:Q (contrast)"


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


def parse_target(text: str, labels: Sequence[str] | None = None) -> TargetLike:
    """Parse a target written as text (the CLI's ``--target``).

    Accepts ``top1`` / ``topK`` (returned as ``"topK"``), ``INDEX`` (an int), ``A,B,...`` (a list) and ``P:Q``
    (a tuple), where each item is an index or a class name. With ``labels`` (default None: unknown), names are
    turned into indices here and an unknown name is a :class:`TargetError`; without, names are returned as
    stripped strings for :func:`resolve_target` to look up. With labels, a text equal to a whole label is that
    class even when the label contains ``,`` or ``:``.
    """
    if not isinstance(text, str):
        raise TargetError(f"cannot read target {text!r}: {_SYNTAX}")
    stripped = text.strip()
    if not stripped:
        raise TargetError(f"cannot read target {text!r}: it is empty; {_SYNTAX}")
    top_k = _top_k(stripped)
    if top_k is not None:
        return f"top{top_k}"
    number = _integer(stripped)
    if number is not None:
        return number
    if labels is not None and _name_key(stripped) in _label_table(labels):
        return _name_index(stripped, labels)  # a whole label, even one with "," or ":" in it
    if ":" in stripped:
        parts = stripped.split(":")
        if len(parts) != 2:
            raise TargetError(f"cannot read target {text!r}: a contrast is P:Q with exactly one ':'")
        p, q = (_parse_item(part, text, labels) for part in parts)
        return (p, q)
    if "," in stripped:
        items = [_parse_item(part, text, labels) for part in stripped.split(",") if part.strip()]
        if not items:
            raise TargetError(f"cannot read target {text!r}: the list of classes is empty; {_SYNTAX}")
        return items
    return _parse_item(stripped, text, labels)


def resolve_target(target: TargetLike, clean_scores: np.ndarray, labels: Sequence[str] | None = None) -> Target:
    """Resolve ``target`` against the model's output on the clean image (1-D array of C scores).

    ``labels`` (default None) are the model's class names, needed for targets given by name. A string target
    is first read by :func:`parse_target` (so ``"3"``, ``"top5"``, ``"1,2"`` and ``"cat:dog"`` all work).
    ``topK`` takes the K highest clean scores (ties: the lower index first, as ``np.argmax`` does for top1).
    """
    scores = np.asarray(clean_scores)
    n_classes = scores.shape[0]
    if isinstance(target, (str, np.str_)):
        target = parse_target(str(target), labels)
    if isinstance(target, str):
        top_k = _top_k(target)
        if top_k is None:  # a class name (parse_target had no labels to look it up)
            return _make("class", (_name_index(target, labels),), (1.0,), n_classes)
        if top_k > n_classes:
            raise TargetError(f"target top{top_k} asks for more classes than the model has ({n_classes}): "
                              f"use top1 to top{n_classes}")
        if top_k == 1:
            return _make("class", (int(np.argmax(scores)),), (1.0,), n_classes)
        best = np.argsort(-scores.astype(np.float64), kind="stable")[:top_k]
        return _make("classes", tuple(int(i) for i in best), (1.0,) * top_k, n_classes)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return _make("class", (int(target),), (1.0,), n_classes)
    if isinstance(target, tuple):
        if len(target) != 2:
            raise TargetError(f"a contrastive target is a pair (p, q), got {target!r}")
        p, q = (_as_index(t, labels) for t in target)
        if p == q:
            raise TargetError(f"a contrastive target needs two different classes, got ({p}, {q})")
        return _make("contrast", (p, q), (1.0, -1.0), n_classes)
    if isinstance(target, (list, np.ndarray)):
        classes = tuple(dict.fromkeys(_as_index(t, labels) for t in target))
        if not classes:
            raise TargetError("an empty list of target classes")
        return _make("classes", classes, (1.0,) * len(classes), n_classes)
    raise TargetError(f"unsupported target {target!r}: use a class index or name, 'top1', 'topK', a list of "
                      "classes or (p, q)")


def _top_k(text: str) -> int | None:
    """K for a ``topK`` text (None for any other text); K < 1 is an error."""
    match = _TOP_K.fullmatch(text.strip())
    if match is None:
        return None
    k = int(match.group(1))
    if k < 1:
        raise TargetError(f"cannot read target {text.strip()!r}: topK needs K >= 1 (top1 is the best class)")
    return k


def _integer(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _parse_item(part: str, text: str, labels: Sequence[str] | None) -> int | str:
    """One item of a list or contrast: an index, or a name (looked up when ``labels`` are given)."""
    item = part.strip()
    if not item:
        raise TargetError(f"cannot read target {text!r}: an empty class in a list or contrast; {_SYNTAX}")
    if _top_k(item) is not None:
        raise TargetError(f"cannot read target {text!r}: topK cannot be part of a list or a contrast")
    number = _integer(item)
    if number is not None:
        return number
    return item if labels is None else _name_index(item, labels)


def _as_index(value: Any, labels: Sequence[str] | None) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (str, np.str_)):
        item = _parse_item(str(value), str(value), labels)
        return item if isinstance(item, int) else _name_index(item, labels)
    raise TargetError(f"a target class must be an integer index or a class name, got {value!r}")


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _label_table(labels: Sequence[str]) -> dict[str, list[int]]:
    table: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        table.setdefault(_name_key(str(label)), []).append(index)
    return table


def _name_index(name: str, labels: Sequence[str] | None) -> int:
    """The index of the class called ``name``: one :class:`TargetError` line when there is none or several."""
    if labels is None:
        raise TargetError(f"cannot read target {name!r}: class names need the model's labels (--labels FILE, or "
                          f"labels=... in Python); otherwise {_SYNTAX.replace(' or name', '')}")
    table = _label_table(labels)
    found = table.get(_name_key(name))
    if found is None:
        close = difflib.get_close_matches(_name_key(name), list(table), n=3)
        if close:
            hints = ", ".join(f"{labels[table[key][0]]!r} ({table[key][0]})" for key in close)
            raise TargetError(f"unknown class name {name!r}: did you mean {hints}?")
        raise TargetError(f"unknown class name {name!r}: no label of the model's {len(labels)} is close; "
                          "give a class index or a name from the labels file")
    if len(found) > 1:  # names that differ only in case ("Cardigan" the dog, "cardigan" the sweater)
        exact = [index for index in found if " ".join(str(labels[index]).split()) == " ".join(name.split())]
        if len(exact) == 1:
            return exact[0]
        indices = ", ".join(str(i) for i in found)
        raise TargetError(f"class name {name!r} is ambiguous: classes {indices} all have it; give the index "
                          "or the exact spelling")
    return found[0]


def _make(kind: str, classes: tuple[int, ...], weights: tuple[float, ...], n_classes: int) -> Target:
    for index in classes:
        if not 0 <= index < n_classes:
            raise TargetError(f"target class {index} is out of range: the model has {n_classes} classes (0-{n_classes - 1})")
    vector = np.zeros(n_classes, dtype=np.float32)
    for index, weight in zip(classes, weights):
        vector[index] = weight
    return Target(kind, classes, vector)
