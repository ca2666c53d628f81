"""Backward rules, one module per operator family, and the rule tables of each rule set.

Importing this package registers every rule in :data:`~.registry.GRADIENT`. :func:`rule_table` returns the
table of a rule set: ``gradient`` (exact VJPs), ``guided`` and ``deconvnet`` (ReLU overrides), ``lrp-epsilon``
and ``lrp-alphabeta`` (:mod:`.lrp`).
"""

from __future__ import annotations

from . import (  # noqa: F401
    activation,
    conv,
    elementwise,
    linear,
    normalisation,
    pool,
    quantisation,
    reduce,
    resize,
    shape,
    softmax,
    transformer,
)
from .activation import DECONVNET, GUIDED
from .lrp import lrp_table
from .registry import GRADIENT, NO_GRADIENT, Rule
from .transformer import transformer_lrp

RULE_SETS = ("gradient", "guided", "deconvnet", "lrp-epsilon", "lrp-alphabeta")

__all__ = ["GRADIENT", "NO_GRADIENT", "RULE_SETS", "Rule", "rule_table", "supported_ops"]


def rule_table(rules: str) -> dict[str, Rule]:
    """The operator -> rule table of a rule set (one of :data:`RULE_SETS`)."""
    if rules == "gradient":
        return dict(GRADIENT)
    if rules == "guided":
        return {**GRADIENT, **GUIDED}
    if rules == "deconvnet":
        return {**GRADIENT, **DECONVNET}
    if rules == "lrp-epsilon":
        return transformer_lrp(lrp_table(alpha_beta=False))
    if rules == "lrp-alphabeta":
        return transformer_lrp(lrp_table(alpha_beta=True))
    raise ValueError(f"unknown rule set {rules!r}; choose one of {RULE_SETS}")


def supported_ops(rules: str = "gradient") -> list[str]:
    """The operators with a rule in a rule set (those in :data:`NO_GRADIENT` need none)."""
    return sorted(rule_table(rules))
