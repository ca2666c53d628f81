"""The method registry: every concrete :class:`~blackbox_xai.methods.base.Method` subclass with a ``name``
registers itself when its class is created (``Method.__init_subclass__``), with its ``aliases`` and ``family``.

Scripts, the command line and the tests enumerate the registry (:func:`list_methods`, :func:`registered`)
instead of keeping lists of names. A class defined with ``register=False`` (``class Probe(Method,
register=False)``) stays out of it (tests use that for throw-away methods).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from ..errors import ParameterError
from ..model.base import Model
from ..model.capabilities import DESCRIPTIONS

Method = Any  # a blackbox_xai.methods.base.Method subclass (base imports this module to register them)

FAMILIES = ("perturbation", "optimisation", "cam", "gradient", "attention", "baseline")
"""The method families (``Method.family``)."""

_METHODS: dict[str, type[Method]] = {}
_ALIASES: dict[str, str] = {}

METHODS: Mapping[str, type[Method]] = MappingProxyType(_METHODS)
"""Registered name -> class (read-only view, filled as the method modules are imported)."""


def normalise(name: str) -> str:
    """The lookup key of a method name: lower case, without "-", "_" and spaces ("Grad-CAM++" -> "gradcam++")."""
    return name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")


def register(cls: type[Method]) -> None:
    """Add ``cls`` under its ``name`` and the ``aliases`` it declares itself (not those it inherits)."""
    name = cls.name
    if not name or normalise(name) != name:
        raise TypeError(f"{cls.__qualname__}: a registered method needs a lower-case name without '-', '_' or "
                        f"spaces, got {name!r}")
    if cls.family and cls.family not in FAMILIES:
        raise TypeError(f"{cls.__qualname__}: family must be one of {FAMILIES}, got {cls.family!r}")
    previous = _METHODS.get(name)
    if previous is not None and _same_class(previous, cls):
        pass  # the same class created again (a module reloaded): replace it
    elif previous is not None or name in _ALIASES:
        raise TypeError(f"{cls.__qualname__}: the method name {name!r} is already taken")
    aliases = tuple(normalise(a) for a in vars(cls).get("aliases", ()))
    for alias in aliases:
        owner = _ALIASES.get(alias, alias if alias in _METHODS else None)
        if owner is not None and owner != name:
            raise TypeError(f"{cls.__qualname__}: the alias {alias!r} already names {owner!r}")
    _METHODS[name] = cls
    _ALIASES.update({alias: name for alias in aliases if alias != name})


def _same_class(a: type, b: type) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


def registered(family: str | None = None) -> dict[str, type[Method]]:
    """Registered name -> class, sorted by name; only ``family``'s when given."""
    if family is not None and family not in FAMILIES:
        raise ParameterError(f"family must be one of {FAMILIES}, got {family!r}")
    return {name: _METHODS[name] for name in sorted(_METHODS) if family is None or _METHODS[name].family == family}


def aliases() -> dict[str, str]:
    """Alias -> registered name."""
    return dict(sorted(_ALIASES.items()))


def applicability(model: Model) -> dict[str, str | None]:
    """For each registered method: None when it applies to ``model``, otherwise one line saying why not (from
    the method's ``requires`` and :meth:`Model.capability_gap`; nothing runs beyond what that does)."""
    gaps: dict[str, str | None] = {}
    result: dict[str, str | None] = {}
    for name, cls in registered().items():
        reason = None
        for capability in cls.requires:
            if capability not in gaps:
                gaps[capability] = model.capability_gap(capability)
            if gaps[capability] is not None:
                reason = f"needs {DESCRIPTIONS[capability]}: {gaps[capability]}"
                break
        result[name] = reason
    return result


def list_methods(model: Model | None = None) -> list[str]:
    """Names accepted by :func:`blackbox_xai.explain` and the CLI's ``--method``, sorted; with ``model``, only
    those that apply to it (:func:`applicability` says why the others do not)."""
    if model is None:
        return sorted(_METHODS)
    return [name for name, reason in applicability(model).items() if reason is None]


def canonical_name(name: str) -> str:
    """The registered name of a method ("Grad-CAM++" -> "gradcampp"); ParameterError for unknown names."""
    key = normalise(name)
    key = _ALIASES.get(key, key)
    if key not in _METHODS:
        raise ParameterError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return key


def make_method(name: str, **params: Any) -> Method:
    """Instantiate a method by name with hyperparameters; a clear error for unknown names or parameters."""
    cls = _METHODS[canonical_name(name)]
    unknown = sorted(set(params) - set(cls.parameter_names()))
    if unknown:
        raise ParameterError(f"{cls.name}: unknown parameter(s) {', '.join(unknown)}; valid parameters: "
                             f"{', '.join(cls.parameter_names())}")
    return cls(**params)
