"""Reading the command line's values: ``--param`` values, ``--seed``, the model flags and the method list.

``--param KEY=VALUE`` values are read as (in this order): ``none``/``null`` -> None, ``true``/``false`` -> bool
(case-insensitive), an integer, a float (``1e3``, ``inf`` is refused later by the method), a JSON list or a
comma-separated list (``areas=0.1,0.2`` -> ``(0.1, 0.2)``; each item read by the same rules), else the text.
A parameter whose default is an integer (``n_masks``, ``seed``, ``window``...) refuses a fractional value
(``n_masks=1.5``) instead of truncating it; an integral float (``n_masks=1e3``) is taken as that integer.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import re
from typing import Any

from ..errors import ParameterError, SpecError
from ..methods import METHODS, canonical_name
from ..model import InputSpec, OnnxModel

_INTEGER = re.compile(r"[+-]?\d+")
_WORDS = {"none": None, "null": None, "true": True, "false": False}


def method_names(text: str) -> list[str]:
    """The canonical names of ``--method A,B`` (each once, in order); an empty list is a :class:`ParameterError`."""
    names = list(dict.fromkeys(canonical_name(n) for n in str(text).split(",") if n.strip()))
    if not names:
        raise ParameterError(f"--method {text!r} names no method; e.g. --method rise,occlusion (see --help)")
    return names


def check_seed(seed: int | None) -> int | None:
    """``--seed``: None or a non-negative integer (what numpy's generators accept)."""
    if seed is not None and seed < 0:
        raise ParameterError(f"--seed must be a non-negative integer, got {seed}")
    return seed


def method_params(names: list[str], param_args: list[str], seed: int | None, layer: str | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Hyperparameters per method from ``--param KEY=VALUE`` (or ``METHOD.KEY=VALUE``), ``--seed`` and
    ``--layer``.

    An unscoped key goes to every selected method that takes it (an error when none does); ``--seed`` and
    ``--layer`` go to the methods that take them and the others ignore them (``--layer`` without any method
    that takes a layer is an error)."""
    defaults = {name: _defaults(name) for name in names}
    params: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in param_args:
        if "=" not in item:
            raise ParameterError(f"--param takes KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        scope, _, key = key.strip().rpartition(".")
        if not key:
            raise ParameterError(f"--param {item}: the key is empty; --param takes KEY=VALUE")
        if scope:
            scope = canonical_name(scope)
            if scope not in params:
                raise ParameterError(f"--param {item}: method {scope!r} is not among --method {','.join(names)}")
        targets = [scope] if scope else [n for n in names if key in defaults[n]]
        if not targets or any(key not in defaults[t] for t in targets):
            raise ParameterError(f"--param {item}: no selected method takes {key!r}")
        value = parse_value(raw)
        for name in targets:
            params[name][key] = _typed(value, defaults[name][key], key, item)
    check_seed(seed)
    for key, value in (("seed", seed), ("layer", layer)):
        if value is None:
            continue
        takers = [name for name in names if key in defaults[name]]
        if key == "layer" and not takers:  # a layer names a CAM target: without a CAM method it is a mistake
            raise ParameterError("--layer given but no selected method takes a layer (the CAM methods do)")
        for name in takers:
            params[name][key] = value
    return params


def parse_value(raw: str) -> Any:
    """One ``--param`` value as Python (see the module docstring); lists become tuples."""
    text = raw.strip()
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ParameterError(f"cannot read list {raw!r}: write it as [0.1, 0.2] or 0.1,0.2") from None
        return tuple(value) if isinstance(value, list) else value
    if "," in text:
        return tuple(parse_value(part) for part in text.split(",") if part.strip())
    return raw


def _defaults(name: str) -> dict[str, Any]:
    """The ``__init__`` defaults of method ``name``, by parameter name."""
    signature = inspect.signature(METHODS[name].__init__)
    return {key: p.default for key, p in signature.parameters.items() if key != "self"}


def _typed(value: Any, default: Any, key: str, item: str) -> Any:
    """``value`` for a parameter whose default is ``default``: an integer parameter takes an integral float as that
    integer and refuses a fraction (never truncated); other values pass unchanged to the method's validation."""
    integer = key == "seed" or (isinstance(default, int) and not isinstance(default, bool))
    if integer and isinstance(value, bool):
        raise ParameterError(f"--param {item}: {key} must be an integer, got {value}")
    if integer and isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        shown = "infinity" if math.isinf(value) else repr(value)
        raise ParameterError(f"--param {item}: {key} must be an integer, got {shown}")
    if key == "seed" and isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ParameterError(f"--param {item}: seed must be a non-negative integer, got {value}")
    return value


def numbers(text: str | None, name: str) -> list[float] | None:
    """Comma-separated finite numbers of the flag ``--name`` (None when not given)."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ParameterError(f"--{name} must be comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ParameterError(f"--{name} must be comma-separated finite numbers, got {text!r}")
    return values


def _size(text: str | None) -> tuple[int, ...] | None:
    values = numbers(text, "size")
    if values is None:
        return None
    if len(values) != 2 or not all(v.is_integer() and v >= 1 for v in values):
        raise ParameterError(f"--size must be H,W: two positive integers, got {text!r}")
    return tuple(int(v) for v in values)


def non_empty(args: argparse.Namespace, *names: str) -> None:
    """Refuse a flag given as an empty text (``--spec ""`` would silently mean no spec, ``--out ""`` the current
    folder)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and not str(value).strip():
            raise ParameterError(f"--{name.replace('_name', '').replace('_', '-')} is empty: give a value or leave "
                                 "the flag out")


def spec_from_args(args: argparse.Namespace) -> InputSpec | None:
    """The spec file with the flags applied; None when neither is given (the model then finds its own)."""
    non_empty(args, "spec", "labels", "input_name", "output_name", "out")
    std = numbers(args.std, "std")
    if std is not None and not all(v > 0 for v in std):
        raise ParameterError(f"--std must be positive numbers (a std divides the pixels), got {args.std!r}")
    output = args.output_name.strip() if args.output_name is not None else None
    overrides: dict[str, Any] = {
        "input": args.input_name,
        "output": int(output) if output is not None and output.isdigit() else output,
        "size": _size(args.size),
        "layout": args.layout,
        "channel_order": args.channel_order,
        "value_range": numbers(args.value_range, "value-range"),
        "mean": numbers(args.mean, "mean"),
        "std": std,
        "labels": args.labels,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not args.spec and not overrides:
        return None
    try:
        spec = InputSpec.from_json(args.spec) if args.spec else InputSpec()
        return spec.replace(**overrides) if overrides else spec
    except (TypeError, ValueError) as error:  # a value of the user's file the spec's own checks let through
        where = f"spec file {args.spec}" if args.spec else "the spec flags"
        raise SpecError(f"cannot use {where}: {' '.join(str(error).split())}") from None


def load_model_from_args(args: argparse.Namespace) -> OnnxModel:
    """The model named on the command line, with the spec file and flags applied."""
    if args.batch_size < 1:
        raise ParameterError(f"--batch-size must be at least 1, got {args.batch_size}")
    spec = spec_from_args(args)
    return OnnxModel(args.model, spec=spec, providers=args.provider, batch_size=args.batch_size)
