"""Declared hyperparameter constraints and the one helper that checks them.

In the spirit of scikit-learn's ``utils/_param_validation.py``: every method declares, in
``parameter_constraints``, one small constraint object per ``__init__`` parameter; :func:`validate` checks the
given values against them once, converts them to their canonical type (``int``, ``float``, ``tuple``...), and
raises :class:`~blackbox_xai.errors.ParameterError` with one line naming the method, the parameter, what was given
and what is allowed. A parameter without a declared constraint is a programming error (``TypeError``), so a new
method cannot forget one.

Each constraint also offers :meth:`Constraint.invalid_examples`, values it refuses, which the contract test
(``tests/methods/test_method_contract.py``) feeds to every method.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import ParameterError
from ..limits import positive_limit
from ..model.base import SCORE_KINDS
from .fill import FILLS


class Constraint:
    """Base class: :meth:`convert` returns the canonical value or raises ``ValueError`` (refused)."""

    def convert(self, value: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        """What is allowed, as a phrase ("an integer >= 1")."""
        raise NotImplementedError

    def invalid_examples(self) -> list[Any]:
        """Values this constraint refuses (at least one)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"


def _is_integral(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, Integral):
        return True
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()


class Int(Constraint):
    """An integer in [``low``, ``high``] (None: unbounded). Whole floats (``10.0``) are accepted as integers;
    fractions, booleans and strings are refused."""

    def __init__(self, low: int | None = None, high: int | None = None) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any) -> int:
        if not _is_integral(value):
            raise ValueError
        number = int(value)
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise ValueError
        return number

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"an integer in [{self.low}, {self.high}]"
        if self.low is not None:
            return f"an integer >= {self.low}"
        if self.high is not None:
            return f"an integer <= {self.high}"
        return "an integer"

    def invalid_examples(self) -> list[Any]:
        examples: list[Any] = [True, (self.low if self.low is not None else 0) + 1.5, "1"]
        if self.low is not None:
            examples.append(self.low - 1)
        if self.high is not None:
            examples.append(self.high + 1)
        return examples


MAX_PASSES_ENV = "BLACKBOX_XAI_MAX_PASSES"
DEFAULT_MAX_PASSES = 1_000_000


def pass_limit() -> int:
    """The largest pass budget a method accepts: ``BLACKBOX_XAI_MAX_PASSES`` when set (a positive integer), else
    :data:`DEFAULT_MAX_PASSES` (a million forward passes: hours on a CPU for an ImageNet-sized model). A budget
    over it is refused before any work rather than left to run for days."""
    return positive_limit(None, "max_passes", MAX_PASSES_ENV, DEFAULT_MAX_PASSES, "passes")


class Budget(Int):
    """A pass budget (masks, samples, steps, iterations): an integer in [``low``, :func:`pass_limit`]. The upper
    bound is read when a value is checked, so ``BLACKBOX_XAI_MAX_PASSES`` raises it for a run that needs more."""

    def __init__(self, low: int = 1) -> None:
        super().__init__(low, None)

    def convert(self, value: Any) -> int:
        self.high = pass_limit()
        return super().convert(value)

    def describe(self) -> str:
        limit = pass_limit()
        return (f"an integer in [{self.low}, {limit:,}] (a pass budget; set {MAX_PASSES_ENV} to allow more than "
                f"{limit:,})")

    def invalid_examples(self) -> list[Any]:
        self.high = pass_limit()
        return super().invalid_examples()


class Interval(Constraint):
    """A real number in an interval; ``closed`` is "both", "left", "right" or "neither" (which ends belong to it;
    an end that is None is open and unbounded). NaN, infinities, booleans and strings are refused."""

    def __init__(self, low: float | None = None, high: float | None = None, closed: str = "both") -> None:
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be both, left, right or neither, got {closed!r}")
        self.low, self.high, self.closed = low, high, closed

    def convert(self, value: Any) -> float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
            raise ValueError
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        if self.low is not None:
            if number < self.low or (number == self.low and self.closed in ("right", "neither")):
                raise ValueError
        if self.high is not None:
            if number > self.high or (number == self.high and self.closed in ("left", "neither")):
                raise ValueError
        return number

    def describe(self) -> str:
        if self.low is None and self.high is None:
            return "a finite number"
        if self.high is None:
            return f"a number {'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}"
        if self.low is None:
            return f"a number {'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"a number in {left}{self.low:g}, {self.high:g}{right}"

    def invalid_examples(self) -> list[Any]:
        examples: list[Any] = [float("nan"), "1", True]
        if self.low is not None:
            examples.append(self.low if self.closed in ("right", "neither") else self.low - 1.0)
        if self.high is not None:
            examples.append(self.high if self.closed in ("left", "neither") else self.high + 1.0)
        return examples


class Options(Constraint):
    """One of a fixed set of values (strings, usually)."""

    def __init__(self, *options: Any) -> None:
        self.options = tuple(options)

    def convert(self, value: Any) -> Any:
        try:
            if value in self.options and not isinstance(value, (bool, np.bool_)):
                return value
        except TypeError:  # unhashable or incomparable values are simply not options
            pass
        raise ValueError

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def invalid_examples(self) -> list[Any]:
        return ["not-an-option", 1]


class Boolean(Constraint):
    """True or False (numpy booleans included; 0/1 and strings are refused)."""

    def convert(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ValueError

    def describe(self) -> str:
        return "True or False"

    def invalid_examples(self) -> list[Any]:
        return ["yes", 2]


class Seed(Int):
    """A random seed: a non-negative integer, or None (fresh entropy: then two runs differ)."""

    def __init__(self) -> None:
        super().__init__(low=0)

    def convert(self, value: Any) -> int | None:
        return None if value is None else super().convert(value)

    def describe(self) -> str:
        return "a non-negative integer or None"

    def invalid_examples(self) -> list[Any]:
        return [-1, 1.5, "0", True]


class Text(Constraint):
    """Any string (a layer or tensor name)."""

    def convert(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        raise ValueError

    def describe(self) -> str:
        return "a string"

    def invalid_examples(self) -> list[Any]:
        return [3]


class Dict(Constraint):
    """A dict (its keys and values are checked by the method, which knows what they mean); converted to a copy."""

    def convert(self, value: Any) -> dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise ValueError

    def describe(self) -> str:
        return "a dict"

    def invalid_examples(self) -> list[Any]:
        return [[("key", 1)], "key=1"]


class Optional(Constraint):
    """None, or a value of ``inner``."""

    def __init__(self, inner: Constraint) -> None:
        self.inner = inner

    def convert(self, value: Any) -> Any:
        return None if value is None else self.inner.convert(value)

    def describe(self) -> str:
        return f"{self.inner.describe()} or None"

    def invalid_examples(self) -> list[Any]:
        return [v for v in self.inner.invalid_examples() if v is not None]


class SequenceOf(Constraint):
    """A tuple or list of ``length`` (or ``min_length`` or more) values of ``inner``, converted to a tuple.
    ``scalar=True`` also accepts one value alone, as a sequence of one (``scalar="pair"``: as a pair of it)."""

    def __init__(self, inner: Constraint, min_length: int = 1, length: int | None = None,
                 scalar: bool | str = False) -> None:
        self.inner, self.min_length, self.length, self.scalar = inner, min_length, length, scalar

    def convert(self, value: Any) -> tuple:
        if isinstance(value, (tuple, list, np.ndarray)):
            items = list(value)
        elif self.scalar:
            items = [value, value] if self.scalar == "pair" else [value]
        else:
            raise ValueError
        if len(items) < self.min_length or (self.length is not None and len(items) != self.length):
            raise ValueError
        return tuple(self.inner.convert(item) for item in items)

    def describe(self) -> str:
        count = f"{self.length}" if self.length is not None else f"{self.min_length} or more"
        text = f"a sequence of {count} values, each {self.inner.describe()}"
        if self.scalar:
            text = f"{self.inner.describe()}, or {text}"
        return text

    def invalid_examples(self) -> list[Any]:
        bad = self.inner.invalid_examples()[0]
        size = self.length if self.length is not None else self.min_length
        examples: list[Any] = [(bad,) * max(size, 1), {"not": "a sequence"}]
        if self.min_length > 0 and self.length is None:
            examples.append(())
        return examples


class Anything(Constraint):
    """Any value the method checks itself (an autoencoder file or callable, say): declared so that it is not
    forgotten; :meth:`invalid_examples` is empty only here."""

    def __init__(self, description: str = "any value") -> None:
        self.description = description

    def convert(self, value: Any) -> Any:
        return value

    def describe(self) -> str:
        return self.description

    def invalid_examples(self) -> list[Any]:
        return []


def _shown(value: Any, limit: int = 60) -> str:
    if isinstance(value, (float, np.floating)) and math.isinf(value):
        return "infinity" if value > 0 else "-infinity"  # what a JSON 1e999 becomes: say it in words
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parameter_error(method: str, name: str, value: Any, allowed: str) -> ParameterError:
    """The one-line error: method, parameter, what was given, what is allowed."""
    return ParameterError(f"{method}: {name} must be {allowed}, got {_shown(value)}")


def validate(method: str, constraints: Mapping[str, Constraint], params: Mapping[str, Any],
             names: Iterable[str] | None = None) -> dict[str, Any]:
    """Check ``params`` against ``constraints`` and return them converted (``int``, ``float``, ``tuple``...).

    ``method`` names the method in the error message; ``names`` (default: the keys of ``params``) are the
    parameters to check. Raises :class:`ParameterError` (one line) for a refused value and ``TypeError`` for a
    parameter without a declared constraint.
    """
    result: dict[str, Any] = {}
    for name in (params if names is None else names):
        constraint = constraints.get(name)
        if constraint is None:
            raise TypeError(f"{method}: parameter {name!r} has no declared constraint in parameter_constraints")
        value = params[name]
        try:
            result[name] = constraint.convert(value)
        except (ValueError, TypeError, OverflowError):
            raise parameter_error(method, name, value, constraint.describe()) from None
    return result


# The shared vocabulary (GUIDE section 1): one constraint per shared name.
GRADIENTS = ("auto", "exact", "finite-difference", "spsa")


def score() -> Options:
    """``score``: "probability", "logit" or "raw"."""
    return Options(*SCORE_KINDS)


def fill() -> Options:
    """``fill``: what hidden pixels become (:mod:`blackbox_xai.methods.fill`)."""
    return Options(*FILLS)
