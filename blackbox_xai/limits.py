"""The one reader of the size limits a user may raise: an explicit argument, else an environment variable, else
the default. Used by the image decoder (pixels per file), the model adapter (pixels per model input) and the
methods (passes per budget), so that every limit is set, checked and refused the same way."""

from __future__ import annotations

import os
from numbers import Integral

from .errors import ParameterError

_LARGEST = 2**62


def positive_limit(argument: object, argument_name: str, variable: str, default: int, unit: str) -> int:
    """``argument`` when it is not None (a positive integer, else :class:`ParameterError` naming
    ``argument_name``), else the integer in the environment variable ``variable`` (``1e6`` style accepted when
    whole), else ``default``. ``unit`` says what is counted ("pixels", "passes") in the error line."""
    if argument is not None:
        if isinstance(argument, bool) or not isinstance(argument, Integral) or int(argument) < 1:
            raise ParameterError(f"{argument_name} must be a positive integer ({unit}), got {argument!r}")
        return int(argument)
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (1 <= value <= _LARGEST and value == int(value)):  # NaN and infinity fail the range test first
        raise ParameterError(f"{variable} must be a positive integer number of {unit}, got {text!r}; unset it "
                             f"for the default of {default:,}")
    return int(value)
