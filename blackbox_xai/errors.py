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


class CapabilityError(ModelError, ParameterError):
    """The model does not offer what a method (or a parameter choice) needs: layers, exact gradients... The
    message names what is missing, why this model lacks it, and what to use instead."""


class GradientUnavailableError(CapabilityError):
    """Exact gradients cannot be had for this model: an op without a backward rule (the message names it), an
    integer input, or a black box. The one exception for "no backward graph", wherever it is raised."""


class ConstantMapWarning(UserWarning):
    """A method returned a constant map: nothing it tried changed the explained score (often a saturated
    probability; the command line prints it as one warning line)."""


class FirstFrameWarning(UserWarning):
    """An image file holds several frames or pages (animated GIF, APNG or WebP, multi-page TIFF): only the first
    is used; the message says how many there were."""


class AssumedSpecWarning(UserWarning):
    """A model's input normalisation (value range, mean, std) was assumed, not known: no spec, no spec file beside
    the model and no metadata states it. Emitted once when the model is loaded; the message (one line, also in
    ``model.assumptions``) says what was assumed and how to set it."""
