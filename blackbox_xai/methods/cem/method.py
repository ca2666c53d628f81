"""The :class:`CEM` method: hyperparameters, validation, and the two searches (PP, PN) put together.

The formulation, its units and the budget are described in :mod:`blackbox_xai.methods.cem`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import TargetError
from ...model.base import Model
from ...model.capabilities import INPUT_GRADIENTS, check_requirements
from ...targets import Target
from .. import params as P
from ..base import Attribution, Method, Progress
from ..fill import fill_image
from .autoencoder import Autoencoder, check_autoencoder, describe
from .features import FEATURES, make_segments
from .problem import Problem
from .search import Schedule, Search, run_searches

MODES = ("both", "pp", "pn")
GRADIENTS = ("auto", "exact", "finite-difference")


class CEM(Method):
    """Pertinent positives and negatives by FISTA with a binary search on ``c`` (Dhurandhar et al. 2018).

    Parameters
    ----------
    mode : "both" (default: the PP and the PN), "pp" or "pn".
    features : "superpixels" (default; SLIC from scikit-image, deterministic), "grid" (``cells`` x ``cells``
        blocks) or "pixels" (every pixel and channel a variable; exact gradients only).
    n_segments : approximate number of SLIC superpixels (default 50).
    compactness : SLIC compactness (default 10, scikit-image's; higher = squarer segments).
    cells : grid size for ``features="grid"`` (default 8: 64 blocks).
    kappa : hinge margin on the logits (default 0, Alibi).
    beta : L1 weight of the elastic net (default 0.1, Alibi).
    c_init : initial weight of the hinge term (default 10, Alibi).
    c_steps : rounds of the binary search on c (default 10, Alibi).
    iterations : FISTA iterations per round (default 1000, Alibi's ``max_iterations``).
    learning_rate_init : initial FISTA step (default 1e-2, Alibi's value; in variable units per unit of per-pixel
        gradient, see the module docstring), decayed as ``lr_init * (1 - k / iterations) ** 0.5``.
    gradient : "auto" (default), "exact" or "finite-difference" (see the module docstring).
    fd_step : the finite-difference step as a fraction of the rms of the perturbed quantity, the pixels a variable
        moves across its box (default 0.01: 2.55 grey levels for a PN, 1% of ``rms(x0 - fill)`` over the feature
        for a PP; a step of ``fd_step`` on the variable itself; see the module docstring, also for the fallback
        where that rms is 0).
    max_passes : cap on the model's forward passes, gradient runs included (default 10000; None: no cap).
    fill : what the PP's removed pixels become (default "zero": the pixel the model sees as zero, the data set's
        mean colour; see :func:`~blackbox_xai.methods.fill.fill_image`).
    gamma : weight of the autoencoder term (default 0: none; > 0 needs ``autoencoder``).
    autoencoder : None (default), an ONNX file or ``ModelProto``, or a callable, images in and out (see above);
        used only when ``gamma > 0``.

    The target is a class (default the top-1 class) or a contrast ``(p, q)``, "why p and not q": the PN is then
    steered to ``q`` and the PP explains ``p``; a list of classes is refused (TargetError).

    The saliency map is the PP map (how much of each pixel the PP keeps, in [0, 1]) for "pp" and "both", the PN map
    (the per-pixel L1 of the addition, summed over channels, in grey levels) for "pn". Extras (for each computed
    mode, prefix ``pp_`` / ``pn_``): ``image`` (the PP/PN image, float32 (h, w, 3) in [0, 255] at the model
    resolution), ``delta`` (``x0 - pp_image``: what the PP removed; ``pn_image - x0``: what the PN added), ``map``,
    ``variable`` (the optimised feature variable), ``found``, ``class`` and ``class_name`` (what the model says on
    the returned image, run once more at the end), ``c`` (the c of the best solution, None if none), ``norm``
    (its elastic-net value), ``iterations``; and ``segments`` (the feature of each pixel), ``original_class``,
    ``original_class_name`` (the model's top-1 class on the image), ``explained_class`` (t0), ``contrast_class``
    (q, -1 without a contrast), ``passes`` (the model's forward passes inside the method) and ``budget_reached``.
    When no solution is found the returned PP is the whole image and the PN is no addition (``found`` False).
    """

    name = "cem"
    family = "optimisation"
    aliases = ("contrastive",)
    parameter_constraints = {
        "mode": P.Options(*MODES), "features": P.Options(*FEATURES), "n_segments": P.Int(2),
        "compactness": P.Interval(0.0, None, closed="neither"), "cells": P.Int(1), "kappa": P.Interval(0.0, None),
        "beta": P.Interval(0.0, None), "c_init": P.Interval(0.0, None, closed="neither"), "c_steps": P.Int(1),
        "iterations": P.Budget(), "learning_rate_init": P.Interval(0.0, None, closed="neither"),
        "gradient": P.Options(*GRADIENTS), "fd_step": P.Interval(0.0, 0.5, closed="right"),
        "max_passes": P.Optional(P.Budget()), "fill": P.fill(), "gamma": P.Interval(0.0, None),
        "autoencoder": P.Anything("None, an ONNX file, a ModelProto or a callable"),
    }

    def __init__(
        self,
        mode: str = "both",
        features: str = "superpixels",
        n_segments: int = 50,
        compactness: float = 10.0,
        cells: int = 8,
        kappa: float = 0.0,
        beta: float = 0.1,
        c_init: float = 10.0,
        c_steps: int = 10,
        iterations: int = 1000,
        learning_rate_init: float = 1e-2,
        gradient: str = "auto",
        fd_step: float = 0.01,
        max_passes: int | None = 10000,
        fill: str = "zero",
        gamma: float = 0.0,
        autoencoder: str | Path | Any | Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self._set_params(locals())
        if features == "pixels" and gradient == "finite-difference":
            raise self._refuse("gradient", gradient, "'exact' or 'auto' with features='pixels' (2 passes per pixel "
                               "and channel by finite differences are not affordable), or features='superpixels' "
                               "or 'grid'")
        if self.gamma > 0 and autoencoder is None:
            raise self._refuse("gamma", gamma, "0 without an autoencoder: gamma > 0 weighs the autoencoder term, "
                               "pass autoencoder= (an ONNX file or a callable)")
        if autoencoder is not None:
            check_autoencoder(autoencoder)

    # -----------------------------------------------------------------------------------------------------------

    def planned_passes(self, size: tuple[int, int]) -> int | None:
        return self.max_passes

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> Attribution:
        began = model.forward_passes
        pixels = np.asarray(pixels, dtype=np.float32)
        t0, q = _explained_classes(target)
        segments = make_segments(pixels, self.features, self.n_segments, self.compactness, self.cells)
        fill = fill_image(pixels, self.fill, model.spec).astype(np.float32)
        autoencoder = (Autoencoder(self.autoencoder, model) if self.gamma > 0 and self.autoencoder is not None
                       else None)
        modes = ["pp", "pn"] if self.mode == "both" else [self.mode]
        problems = {m: Problem(m, pixels, fill, segments, t0, q, self.kappa) for m in modes}

        exact = self._use_exact(model)
        max_passes = self.max_passes
        total_iterations = len(modes) * self.c_steps * self.iterations
        counter = {"done": 0}
        schedule = Schedule(self.beta, self.c_init, self.c_steps, self.iterations, self.learning_rate_init,
                            self.fd_step, self.gamma)

        def step(count: int) -> None:
            counter["done"] += count
            progress(min(counter["done"], total_iterations), total_iterations)

        extras: dict[str, Any] = {}
        searches = [Search(schedule, model, problems[mode], exact, autoencoder, step) for mode in modes]
        # Exact gradients: the PP's and the PN's images share each model call (one image per call otherwise).
        results = run_searches(searches, model, max_passes, together=exact)
        budget_reached = any(search.budget_reached for search in searches)
        for mode, result in zip(modes, results):
            extras.update({f"{mode}_{key}": value for key, value in result.items() if key != "budget_reached"})
        progress(total_iterations, total_iterations)

        # Verification: the model once more on exactly the returned images.
        returned = [extras[f"{mode}_image"] for mode in modes]
        verified = model.predict(np.stack(returned)).argmax(axis=1)
        for mode, cls in zip(modes, verified):
            extras[f"{mode}_class"] = int(cls)
            extras[f"{mode}_class_name"] = model.class_name(int(cls))
        original = int(np.argmax(clean_outputs))
        extras.update({
            "segments": segments.astype(np.int32),
            "original_class": original,
            "original_class_name": model.class_name(original),
            "explained_class": t0,
            "contrast_class": -1 if q is None else q,
            "passes": int(model.forward_passes - began),
            "budget_reached": bool(budget_reached),
        })
        resolved = {
            "gradient": "exact" if exact else "finite-difference",
            "n_features": int(problems[modes[0]].n_features),
            **({"autoencoder": describe(self.autoencoder)} if self.autoencoder is not None else {}),
        }
        saliency = extras["pp_map"] if "pp" in modes else extras["pn_map"]
        return Attribution(np.asarray(saliency, dtype=np.float32), extras, resolved)

    def constant_map_reason(self, extras: dict[str, Any]) -> str:
        if self.mode != "pn" and extras.get("pp_found") and not np.any(extras.get("pp_map")):
            return (f"the fill image alone (fill={self.fill!r}) is already class {extras['pp_class']}, so the "
                    "pertinent positive is empty; try another fill (grey, black, mean, blur) or mode='pn'")
        return super().constant_map_reason(extras)

    def _use_exact(self, model: Model) -> bool:
        """Whether to use exact gradients: asked for, needed (pixel features), or offered by the model ("auto")."""
        if self.gradient == "finite-difference":
            return False
        if self.gradient == "exact" or self.features == "pixels":
            asked = "features='pixels'" if self.features == "pixels" else f"gradient={self.gradient!r}"
            check_requirements(model, (INPUT_GRADIENTS,),
                               f"CEM with {asked} (use features='superpixels' or 'grid' with gradient='auto' or "
                               "'finite-difference')")
            return True
        return model.capability_gap(INPUT_GRADIENTS) is None


def _explained_classes(target: Target) -> tuple[int, int | None]:
    """(t0, q): the explained class and, for a contrast (p, q), the class the PN must reach."""
    if target.kind == "class":
        return int(target.classes[0]), None
    if target.kind == "contrast":
        return int(target.classes[0]), int(target.classes[1])
    raise TargetError(f"CEM explains one class or a contrast (p, q), not a list of classes {list(target.classes)}")

