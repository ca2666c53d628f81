"""What a model offers, declared once: the vocabulary methods state their requirements in.

A model answers :meth:`~blackbox_xai.model.Model.capability_gap` for each capability: ``None`` when it offers it,
otherwise one line saying why not. A method lists what it needs in ``requires``; the method base class checks it
once, before any work (:func:`check_requirements`), so a method never probes a model itself.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from ..errors import CapabilityError, GradientUnavailableError



class Model(Protocol):
    """What this module needs of a model (:class:`~blackbox_xai.model.Model` has it; importing that class here
    would be a cycle)."""

    def capability_gap(self, capability: str) -> str | None: ...

SCORES = "scores"
"""Forward scores for pixel batches: every model."""
LAYERS = "layers"
"""Intermediate activations and a graph split at a layer (an ONNX graph)."""
INPUT_GRADIENTS = "input-gradients"
"""Exact gradients of a score with respect to the pixels (a backward graph)."""
LAYER_GRADIENTS = "layer-gradients"
"""Exact gradients with respect to an intermediate layer (a backward graph)."""
ATTENTION = "attention"
"""Attention probabilities over a token grid (a transformer's Softmax over the keys in each block)."""

CAPABILITIES = (SCORES, LAYERS, INPUT_GRADIENTS, LAYER_GRADIENTS, ATTENTION)
GRADIENTS = (INPUT_GRADIENTS, LAYER_GRADIENTS)

DESCRIPTIONS = {
    SCORES: "scores",
    LAYERS: "a layer's activations",
    INPUT_GRADIENTS: "exact gradients with respect to the input",
    LAYER_GRADIENTS: "exact gradients with respect to a layer",
    ATTENTION: "attention probabilities over a token grid",
}


def check_requirements(model: Model, required: Iterable[str], method: str) -> None:
    """Raise one clear error when ``model`` lacks a capability ``method`` requires.

    :class:`~blackbox_xai.errors.GradientUnavailableError` for gradients, :class:`CapabilityError` otherwise;
    the message says what is missing, why, and which methods work without it."""
    for capability in required:
        gap = model.capability_gap(capability)
        if gap is None:
            continue
        error = GradientUnavailableError if capability in GRADIENTS else CapabilityError
        raise error(f"{method} needs {DESCRIPTIONS[capability]}, which this model does not offer: {gap}; "
                    "rise, occlusion and lime work on any model")
