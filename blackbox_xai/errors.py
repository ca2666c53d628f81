"""Errors that blackbox-xai raises for bad input.

Every error a user can cause (a missing or corrupt model, an image that cannot be decoded, a target out of range,
NaN scores...) is a :class:`BlackboxError`. Its message is one line that says what is wrong and what to do; the
command-line interface prints that line and exits with a non-zero code instead of a traceback.
"""

from __future__ import annotations


class BlackboxError(Exception):
    """Base class of the errors caused by the caller's input, not by a bug in blackbox-xai."""


class ModelError(BlackboxError):
    """The model file is missing, corrupt, unsupported, or its outputs are unusable."""


class SpecError(BlackboxError):
    """The input specification is inconsistent with the model or incomplete."""


class ImageError(BlackboxError):
    """An image cannot be read, decoded or converted to RGB."""


class TargetError(BlackboxError):
    """The requested target class is not valid for this model."""


class ScoreError(BlackboxError):
    """The model returned NaN or infinite scores."""


class ParameterError(BlackboxError, ValueError):
    """A method hyperparameter is invalid."""


class OutputError(BlackboxError):
    """A result file cannot be written or read."""


class ConstantMapWarning(UserWarning):
    """A method returned a constant map: nothing it tried changed the explained score (often a saturated
    probability; the command line prints it as one warning line)."""
