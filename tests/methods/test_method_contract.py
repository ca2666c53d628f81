"""The contract every registered method keeps (scikit-learn's ``parametrize_with_checks`` idea).

One parametrised test per registered method and check: the ``__init__`` parameters are all declared in
``parameter_constraints`` and round-trip through ``get_params``; values each constraint refuses raise
:class:`ParameterError` with one line naming the method and the parameter; a method with randomness declares
itself ``stochastic`` and takes a ``seed``; two runs with the same parameters give the same map bytes; the map has
the image's resolution (a non-square image of another size than the model's) and is not constant on the committed
shapes model; every explanation's ``timing`` has the same fields and counts forward passes; a method that needs
layers or gradients is refused on a black box with a one-line :class:`CapabilityError`.

The checks are plain functions, so that ``test_the_checks_catch_*`` can show that each of them fails on a
method that breaks it. Budgets are small (``FAST``) so that the whole file runs in about a minute.
"""

from __future__ import annotations

import warnings
from typing import Any

import cv2
import numpy as np
import pytest

import blackbox_xai as bx
from blackbox_xai.errors import CapabilityError, ConstantMapWarning, ParameterError
from blackbox_xai.groundtruth import make_images, shapes_model, shapes_vit_model
from blackbox_xai.methods import Attribution, Method, applicability, canonical_name, list_methods, params as P
from blackbox_xai.methods.registry import FAMILIES, METHODS, aliases, registered
from blackbox_xai.model.capabilities import ATTENTION, SCORES

NAMES = list_methods()
ATTENTION_METHODS = [name for name in NAMES if ATTENTION in METHODS[name].requires]
"""Methods that read a transformer's attention: their contract runs on the ground-truth ViT."""

# Small budgets (only the keys a method takes are used, so a renamed parameter does not break the file) and the
# logit score, which moves where the shapes model's probability saturates.
FAST: dict[str, dict[str, Any]] = {
    "rise": {"n_masks": 64, "cells": 5},
    "occlusion": {"window": 16, "stride": 16},
    "lime": {"n_samples": 40, "segmentation": "grid"},
    "meaningful": {"iterations": 6, "mask_size": 8},
    "extremal": {"iterations": 6, "areas": (0.1,)},
    "cem": {"mode": "pn", "features": "grid", "cells": 4, "c_steps": 2, "iterations": 20, "max_iterations": 20,
            "max_passes": 400},
    "smoothgrad": {"n_samples": 4},
    "integratedgradients": {"n_steps": 8},
}
TIMING = ("seconds", "forward_passes", "forward_seconds", "backward_passes", "backward_seconds", "head_passes",
          "head_seconds", "batch_size")


def fast_params(cls: type[Method]) -> dict[str, Any]:
    names = cls.parameter_names()
    chosen = {k: v for k, v in FAST.get(cls.name, {}).items() if k in names}
    if "score" in names:
        chosen["score"] = "logit"
    return chosen


# ------------------------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------------------------


def check_declarations(cls: type[Method]) -> None:
    """A family, aliases of its own, and one constraint per ``__init__`` parameter (no more, no fewer)."""
    assert cls.family in FAMILIES, f"{cls.__name__}.family is {cls.family!r}"
    names = set(cls.parameter_names())
    declared = set(cls.parameter_constraints)
    assert names <= declared, f"{cls.__name__}: no constraint for {sorted(names - declared)}"
    assert declared <= names, f"{cls.__name__}: constraints for unknown parameters {sorted(declared - names)}"
    for name, constraint in cls.parameter_constraints.items():
        assert isinstance(constraint, P.Constraint), (cls.__name__, name)


def check_seed(cls: type[Method]) -> None:
    """A stochastic method takes a seed; a method that takes a seed says it is stochastic."""
    takes_seed = "seed" in cls.parameter_names()
    assert cls.stochastic == takes_seed, f"{cls.__name__}: stochastic={cls.stochastic} but seed parameter: " \
                                         f"{takes_seed}"
    if takes_seed:
        assert isinstance(cls.parameter_constraints["seed"], P.Seed), cls.__name__


def check_round_trip(method: Method) -> None:
    params = method.get_params()
    again = type(method)(**params)
    assert again.get_params() == params
    assert type(again)(**again.get_params()).get_params() == params


def check_invalid_values(cls: type[Method]) -> None:
    for name, constraint in cls.parameter_constraints.items():
        examples = constraint.invalid_examples()
        assert examples or isinstance(constraint, P.Anything), (cls.__name__, name)
        for value in examples:
            with pytest.raises(ParameterError) as raised:
                cls(**{name: value})
            message = str(raised.value)
            assert "\n" not in message and name in message and cls.name in message, message


def check_run(method: Method, model: bx.Model, image: np.ndarray) -> bx.Explanation:
    """Two runs with the same parameters: the same map bytes, at the image's resolution, not constant, and the
    same timing fields for every method."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantMapWarning)
        first = method.explain(model, image)
    second = type(method)(**method.get_params()).explain(model, image)
    assert first.saliency.shape == image.shape[:2], (first.saliency.shape, image.shape)
    assert first.saliency.dtype == np.float32 and np.isfinite(first.saliency).all()
    assert first.saliency.tobytes() == second.saliency.tobytes(), f"{method.name}: same params, another map"
    assert np.ptp(first.saliency) > 0, f"{method.name}: constant map"
    assert tuple(first.timing) == TIMING, tuple(first.timing)
    assert first.timing["forward_passes"] > 0 and first.timing["seconds"] > 0
    assert first.timing["batch_size"] == model.batch_size
    assert first.method == method.name and set(method.get_params()) <= set(first.params)
    return first


# ------------------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> bx.OnnxModel:
    return shapes_model("clean", batch_size=32)


@pytest.fixture(scope="module")
def vit() -> bx.OnnxModel:
    return shapes_vit_model("clean", batch_size=32)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    images, _, _, _ = make_images(1, seed=5)
    picture = cv2.resize(images[0].astype(np.float32), (120, 72), interpolation=cv2.INTER_LINEAR)
    assert picture.shape == (72, 120, 3)  # not square, not the model's 96 x 96
    return picture


@pytest.fixture(scope="module")
def black_box(model: bx.OnnxModel) -> bx.CallableModel:
    return bx.CallableModel(lambda batch: model.predict(batch), spec=bx.InputSpec(size=model.input_size),
                            batch_size=model.batch_size, output_kind="logits")


# ------------------------------------------------------------------------------------------------------------
# The contract, per registered method
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_declarations(name: str) -> None:
    cls = METHODS[name]
    check_declarations(cls)


@pytest.mark.parametrize("name", NAMES)
def test_seed_declared(name: str) -> None:
    check_seed(METHODS[name])


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip(name: str) -> None:
    cls = METHODS[name]
    check_round_trip(cls())
    check_round_trip(cls(**fast_params(cls)))


@pytest.mark.parametrize("name", NAMES)
def test_invalid_values_raise_one_line_parameter_errors(name: str) -> None:
    cls = METHODS[name]
    check_invalid_values(cls)


@pytest.mark.parametrize("name", NAMES)
def test_map_contract(name: str, model: bx.OnnxModel, vit: bx.OnnxModel, image: np.ndarray) -> None:
    cls = METHODS[name]
    exp = check_run(cls(**fast_params(cls)), vit if name in ATTENTION_METHODS else model, image)
    if cls.stochastic:  # the seed is recorded, so the call can be repeated
        assert exp.params["seed"] == cls().get_params()["seed"]


@pytest.mark.parametrize("name", NAMES)
def test_black_box_refusal(name: str, black_box: bx.CallableModel, image: np.ndarray) -> None:
    cls = METHODS[name]
    reason = applicability(black_box)[name]
    if set(cls.requires) <= {SCORES}:
        assert reason is None and name in list_methods(black_box)
        return
    assert reason and "\n" not in reason and name not in list_methods(black_box)
    with pytest.raises(CapabilityError) as raised:
        cls(**fast_params(cls)).explain(black_box, image)
    assert "\n" not in str(raised.value) and name in str(raised.value)
    assert black_box.forward_passes == 0  # refused before any work


# ------------------------------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------------------------------


def test_registry_is_every_method_class_once() -> None:
    assert NAMES == sorted(METHODS) and len(NAMES) >= 26
    assert bx.list_methods is list_methods
    for family in FAMILIES:
        assert all(cls.family == family for cls in registered(family).values())
    assert sum(len(registered(f)) for f in FAMILIES) == len(NAMES)
    for alias, name in aliases().items():
        assert canonical_name(alias) == name and alias not in METHODS
    assert canonical_name("Grad-CAM++") == "gradcampp" and canonical_name("IG") == "integratedgradients"
    assert canonical_name("contrastive") == "cem" and canonical_name("mp") == "meaningful"


def test_every_method_applies_to_the_onnx_model(model: bx.OnnxModel, vit: bx.OnnxModel) -> None:
    gaps = applicability(model)
    others = [name for name in NAMES if name not in ATTENTION_METHODS]
    assert {name: gaps[name] for name in others} == {name: None for name in others}
    assert list_methods(model) == others
    for name in ATTENTION_METHODS:  # a CNN has no attention: one line says so
        assert gaps[name] and "\n" not in gaps[name] and "attention" in gaps[name], gaps[name]
    assert applicability(vit) == {name: None for name in NAMES}


def test_a_class_registers_itself_unless_told_not_to() -> None:
    class Probe(Method, register=False):
        name = "probe"
        family = "baseline"

        def attribute(self, model, pixels, target, clean_outputs, progress):
            return Attribution(np.zeros(pixels.shape[:2], np.float32))

    assert "probe" not in METHODS
    with pytest.raises(TypeError, match="already taken"):
        class Impostor(Method):  # noqa: F841 - the name of an existing method
            name = "rise"
            family = "perturbation"

            def attribute(self, model, pixels, target, clean_outputs, progress):
                raise NotImplementedError


def test_integrated_gradients_quadrature_through_explain(model: bx.OnnxModel, image: np.ndarray) -> None:
    """``quadrature`` no longer collides with ``explain``'s ``method``: the rule reaches the method."""
    gauss = bx.explain(model, image, method="integratedgradients", quadrature="gausslegendre", n_steps=8)
    trapezoid = bx.explain(model, image, method="ig", quadrature="riemann-trapezoid", n_steps=8)
    assert gauss.params["quadrature"] == "gausslegendre" and trapezoid.params["quadrature"] == "riemann-trapezoid"
    assert gauss.timing["backward_passes"] == 8 + 2  # 8 Gauss nodes, and both ends for the completeness check
    assert trapezoid.timing["backward_passes"] == 8  # the trapezoid's nodes include both ends
    assert gauss.saliency.tobytes() != trapezoid.saliency.tobytes()


# ------------------------------------------------------------------------------------------------------------
# The checks catch what they are meant to catch
# ------------------------------------------------------------------------------------------------------------


class _Noisy(Method, register=False):
    """A map from fresh entropy: a different map at every call, whatever its parameters."""

    name = "noisy"
    family = "baseline"
    parameter_constraints = {"cells": P.Int(1)}

    def __init__(self, cells: int = 4) -> None:
        self._set_params(locals())

    def attribute(self, model, pixels, target, clean_outputs, progress):
        model.predict(pixels[None])
        return Attribution(np.random.default_rng().random(pixels.shape[:2]).astype(np.float32))


def test_the_checks_catch_a_forgotten_constraint() -> None:
    class Forgetful(Method, register=False):
        name = "forgetful"
        family = "baseline"
        parameter_constraints = {"cells": P.Int(1)}

        def __init__(self, cells: int = 4, sigma: float = 0.5) -> None:
            self.cells, self.sigma = cells, sigma

        def attribute(self, model, pixels, target, clean_outputs, progress):
            raise NotImplementedError

    with pytest.raises(AssertionError, match="no constraint for"):
        check_declarations(Forgetful)
    with pytest.raises(TypeError, match="no declared constraint"):  # and the helper refuses to store it
        P.validate("forgetful", Forgetful.parameter_constraints, {"cells": 4, "sigma": 0.5})


def test_the_checks_catch_a_forgotten_seed_and_a_nondeterministic_map(model: bx.OnnxModel,
                                                                       image: np.ndarray) -> None:
    class Unseeded(_Noisy, register=False):
        stochastic = True

    with pytest.raises(AssertionError, match="stochastic"):
        check_seed(Unseeded)
    with pytest.raises(AssertionError, match="another map"):
        check_run(_Noisy(), model, image)


def test_the_checks_catch_an_unchecked_value() -> None:
    class Lenient(Method, register=False):
        name = "lenient"
        family = "baseline"
        parameter_constraints = {"cells": P.Int(1)}

        def __init__(self, cells: int = 4) -> None:
            self.cells = cells  # stored without validation

        def attribute(self, model, pixels, target, clean_outputs, progress):
            raise NotImplementedError

    with pytest.raises(pytest.fail.Exception):
        check_invalid_values(Lenient)


# ------------------------------------------------------------------------------------------------------------
# The constraints themselves
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("constraint, good, bad", [
    (P.Int(1), [1, 7, np.int64(3), 4.0], [0, 2.5, True, "3", None, float("nan")]),
    (P.Int(0, 2), [0, 2], [-1, 3]),
    (P.Interval(0.0, 1.0, closed="right"), [1.0, 0.5, 1], [0.0, 1.5, float("nan"), float("inf"), True, "0.5"]),
    (P.Interval(0.0, None, closed="left"), [0.0, 1e9], [-1e-9, float("inf")]),
    (P.Options("a", "b"), ["a", "b"], ["c", 1, None, ["a"]]),
    (P.Boolean(), [True, False, np.bool_(True)], [0, 1, "True", None]),
    (P.Seed(), [0, 12, None, np.int32(5)], [-1, 1.5, "0", False]),
    (P.Optional(P.Text()), [None, "layer"], [3]),
    (P.SequenceOf(P.Int(1), length=2, scalar="pair"), [3, (2, 3), [4, 5]], [(1, 2, 3), (0, 1), 0, "ab"]),
    (P.SequenceOf(P.Interval(0.0, 1.0, closed="neither"), scalar=True), [0.1, (0.1, 0.2)], [(), (0.0,), 1.0]),
    (P.Dict(), [{}, {"a": 1}], [[("a", 1)], None]),
])
def test_constraints_accept_and_refuse(constraint: P.Constraint, good: list, bad: list) -> None:
    for value in good:
        constraint.convert(value)
    for value in [*bad, *constraint.invalid_examples()]:
        with pytest.raises((ValueError, TypeError)):
            constraint.convert(value)


def test_conversions_are_canonical() -> None:
    assert P.Int(1).convert(4.0) == 4 and type(P.Int(1).convert(np.int64(4))) is int
    assert type(P.Interval(0.0).convert(2)) is float
    assert P.SequenceOf(P.Int(1), length=2, scalar="pair").convert(3) == (3, 3)
    values = P.validate("rise", METHODS["rise"].parameter_constraints, {"n_masks": 10.0, "p_keep": 1})
    assert values == {"n_masks": 10, "p_keep": 1.0}
    with pytest.raises(ParameterError, match=r"^rise: p_keep must be a number in \(0, 1\], got 0$"):
        P.validate("rise", METHODS["rise"].parameter_constraints, {"p_keep": 0})
    with pytest.raises(ParameterError, match=r"^rise: n_masks must be an integer in \[1, 1,000,000\] \(a pass budget; "
                                             r"set BLACKBOX_XAI_MAX_PASSES to allow more than 1,000,000\), got infinity$"):
        P.validate("rise", METHODS["rise"].parameter_constraints, {"n_masks": float("inf")})
