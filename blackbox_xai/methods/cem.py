"""CEM: the Contrastive Explanation Method (Dhurandhar et al., NeurIPS 2018).

Dhurandhar, Chen, Luss, Tu, Ting, Shanmugam and Das, "Explanations based on the Missing: Towards Contrastive
Explanations with Pertinent Negatives", NeurIPS 2018 (arXiv:1802.07623). An image of class ``t0`` is explained by

* a **pertinent positive** (PP): a minimal part of the image that is enough for the model to keep saying ``t0``;
* a **pertinent negative** (PN): a minimal addition to the image that makes the model say something else (or, for a
  contrastive target ``(p, q)``, "why p and not q", say ``q``): what is *missing* for another class.

Each is the solution of ``min_v c * hinge(v) + beta * |v|_1 + |v|_2^2`` over a box, by FISTA (Beck and Teboulle
2009: a gradient step on the smooth part, shrinkage-thresholding for the L1 term, projection onto the box, Nesterov
momentum ``k / (k + 3)``), with a binary search on the constant ``c``, as in the paper and in Alibi's ``CEM``
(SeldonIO/alibi, ``alibi/explainers/cem.py``), whose defaults are used: ``kappa=0, beta=0.1, c_init=10, c_steps=10,
max_iterations=1000``, learning rate with polynomial decay (power 0.5, to 0 at ``max_iterations``), autoencoder
weight ``gamma=0``.

Feature space and units
-----------------------
Black-box gradients by finite differences cost two passes per variable, so the optimisation works on features:
SLIC superpixels (``features="superpixels"``), a low-resolution grid of ``cells`` x ``cells`` blocks (``"grid"``)
or every pixel and channel (``"pixels"``, exact gradients only). ``S`` maps a feature vector to pixels (segment
indicators; the identity for pixels). Variables live in [0, 1]:

* PN, variable ``b`` (F, 3): ``pixels = clip(x0 + 255 * S(b), 0, 255)`` -- a PN only adds (raises R, G, B).
* PP, variable ``a`` (F, 1), or (F, 3) for pixels: ``pixels = fill + S(a) * (x0 - fill)`` with ``fill`` the pixel
  the model sees as zero (:func:`~blackbox_xai.methods.fill.fill_image`, ``fill="zero"``) -- a PP only removes:
  ``a = 1`` is the whole image, ``a = 0`` everything removed. The PP search starts from nothing (``a = 0``) and the
  PN from no addition (``b = 0``), as in the reference implementation.

The elastic net is measured in pixel space, in units of the full range (255 = 1): ``sum_f area_f * (beta * |v_f| +
v_f^2)`` with ``area_f`` the number of pixels of feature ``f`` (1 for pixels), i.e. ``beta * |S(v)|_1 + |S(v)|_2^2``
-- the paper's penalty on the image perturbation, restricted to perturbations that are constant on each feature.
The gradient step is preconditioned by the same areas (``v - lr * grad / area``), so that a feature moves by its
mean per-pixel sensitivity whatever its size, and the shrinkage threshold is ``lr * beta`` for every feature; with
that, the learning rate is in variable units per unit of per-pixel gradient and the same default fits every
feature space (``learning_rate_init=1e-2``, Alibi's value, whose features also span a range of 1).

The hinge works on logits (``model.convert(outputs, "logit")``, the log-probabilities for a model that outputs
probabilities: only logit differences enter, so both agree):

* PN: ``max(0, y_t0 - max_{i != t0} y_i + kappa)``; with a contrast ``(p, q)`` the PN is steered to ``q``:
  ``max(0, max_{i != q} y_i - y_q + kappa)`` (that is ``y_p - y_q + kappa`` while ``p`` is ``q``'s strongest rival),
  and it counts as found only when the model says ``q``.
* PP: ``max(0, max_{i != t0} y_i - y_t0 + kappa)``; with a contrast, ``t0 = p``.

``t0`` is the target class (default the top-1 class). An iterate counts (Alibi's check) when the model, run on it,
gives the wanted class with margin ``kappa``; the best solution is the one of smallest elastic-net value among those,
over all iterations and values of ``c``. ``c`` starts at ``c_init``; after each of the ``c_steps`` rounds it is
bisected between the bounds when a solution was found in the round and multiplied by 10 (or bisected towards the
upper bound, once there is one) when none was. One addition to Alibi's schedule: a round whose iterates reach a
fixed point of the proximal-gradient map ends there (the iterates would repeat exactly). At ``v = 0`` that happens
while ``c`` is too small for any feature to pay its L1 price, ``c <= c0 = min_f (beta + g_f) / -h_f`` over the
features whose hinge gradient ``h_f`` is negative (``g_f``: the autoencoder term's gradient, preconditioned like
``h_f``); the round then costs one iteration instead of ``max_iterations``, ``c0`` becomes the lower bound and the
next ``c`` is ``10 * c0`` (Alibi: ``10 * c``). The ``c`` a PN or PP needs grows with the number of pixels (the
per-pixel gradients shrink): a few to a few tens at 96 x 96, hundreds to thousands at 224 x 224; this is what lets
a black-box search at 224 reach it within its budget.

Gradients of the hinge term (``gradient=``): "exact" chains :meth:`OnnxModel.gradient` (the seed is the hinge's
logit vector, e.g. ``e_t0 - e_j``) through the pixel map and ``S^T``; "finite-difference" takes central differences
of the logits with respect to each variable (``2 * n_variables`` passes, batched in chunks of the model's batch
size, plus one at the point itself); "auto" (default) uses exact gradients when the model has a backward graph and
finite differences otherwise (a :class:`~blackbox_xai.model.CallableModel`, or an op without a backward rule).

Optional autoencoder term (Alibi's ``gamma * |AE(x) - x|_2^2``): ``autoencoder=`` an ONNX file (path or
``ModelProto``) or a callable, taking and returning images (N, H, W, 3) float32 in [0, 255], RGB, at the model's
resolution. The term is ``gamma * |(AE(x) - x) / 255|^2`` on the PN image and on the PP image (what the model sees;
Alibi applies it to the PP's kept part, which for us is the PP image up to the fill). An ONNX autoencoder gets exact
gradients from a backward graph (:func:`blackbox_xai.autodiff.build_gradient_model`); a callable one gets central
differences on the feature variable (``2 * n_variables`` autoencoder calls per iteration; not counted as model
passes).

Budget: ``max_passes`` caps the forward passes of the model, gradient runs included (default 10000; None: no cap,
Alibi's whole schedule of ``c_steps * max_iterations`` iterations per search). An iteration costs 2 passes with
exact gradients (3 when the hinge's rival class changes between the two), ``2 + 2 * n_variables`` by finite
differences. With ``mode="both"`` the passes left are shared equally between the two searches (the PP runs
first). A search stops cleanly before an iteration that could overrun its share and keeps its best solution;
``extras["budget_reached"]`` says whether that happened. Measured on 2 shared cores: the default black-box run
(both modes, 39 superpixels) on the zoo's EfficientNet-Lite0 at 224 x 224 takes about 10000 passes and 2.5 minutes
(about 13 ms a pass, batched) and finds both a PP and a PN. Exact-gradient iterations run one image at a time and
a backward run costs a few forward runs: the default 10000 passes take about 12 minutes on the same model (about
70 ms a pass; both found, with smaller elastic-net values) and under a minute on the 96 x 96 ground-truth model;
lower ``max_passes`` for a faster answer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, ParameterError, TargetError
from ..model.base import Model
from ..model.capabilities import INPUT_GRADIENTS, check_requirements
from ..targets import Target
from .base import Method, Progress, chunks
from .fill import check_fill, fill_image

logger = logging.getLogger(__name__)

MODES = ("both", "pp", "pn")
FEATURES = ("superpixels", "grid", "pixels")
GRADIENTS = ("auto", "exact", "finite-difference")
C_UPPER = 1e10  # Alibi's "no upper bound yet" value for c


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
    max_iterations : FISTA iterations per round (default 1000, Alibi).
    learning_rate_init : initial FISTA step (default 1e-2, Alibi's value; in variable units per unit of per-pixel
        gradient, see the module docstring), decayed as ``lr_init * (1 - k / max_iterations) ** 0.5``.
    gradient : "auto" (default), "exact" or "finite-difference" (see the module docstring).
    fd_step : central-difference step on a variable (default 0.01 of the range, about 2.5 grey levels).
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
        max_iterations: int = 1000,
        learning_rate_init: float = 1e-2,
        gradient: str = "auto",
        fd_step: float = 0.01,
        max_passes: int | None = 10000,
        fill: str = "zero",
        gamma: float = 0.0,
        autoencoder: str | Path | Any | Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
        if features not in FEATURES:
            raise ParameterError(f"features must be one of {FEATURES}, got {features!r}")
        if gradient not in GRADIENTS:
            raise ParameterError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
        if features == "pixels" and gradient == "finite-difference":
            raise ParameterError("features='pixels' needs exact gradients (2 passes per pixel and channel by finite "
                                 "differences are not affordable): use gradient='exact' or features='superpixels' "
                                 "or 'grid'")
        if _int(n_segments, "n_segments") < 2:
            raise ParameterError(f"n_segments must be at least 2, got {n_segments}")
        if _int(cells, "cells") < 1:
            raise ParameterError(f"cells must be at least 1, got {cells}")
        for name, value in (("compactness", compactness), ("c_init", c_init), ("learning_rate_init",
                                                                              learning_rate_init)):
            if not _finite(value) or float(value) <= 0:
                raise ParameterError(f"{name} must be a positive number, got {value!r}")
        for name, value in (("kappa", kappa), ("beta", beta), ("gamma", gamma)):
            if not _finite(value) or float(value) < 0:
                raise ParameterError(f"{name} must be a non-negative number, got {value!r}")
        if _int(c_steps, "c_steps") < 1:
            raise ParameterError(f"c_steps must be at least 1, got {c_steps}")
        if _int(max_iterations, "max_iterations") < 1:
            raise ParameterError(f"max_iterations must be at least 1, got {max_iterations}")
        if not _finite(fd_step) or not 0.0 < float(fd_step) <= 0.5:
            raise ParameterError(f"fd_step must be in (0, 0.5], got {fd_step!r}")
        if max_passes is not None and _int(max_passes, "max_passes") < 1:
            raise ParameterError(f"max_passes must be at least 1 (or None), got {max_passes}")
        if float(gamma) > 0 and autoencoder is None:
            raise ParameterError("gamma > 0 weighs the autoencoder term: pass autoencoder= (an ONNX file or a "
                                 "callable)")
        if autoencoder is not None:
            _check_autoencoder(autoencoder)
        self.mode = mode
        self.features = features
        self.n_segments = int(n_segments)
        self.compactness = float(compactness)
        self.cells = int(cells)
        self.kappa = float(kappa)
        self.beta = float(beta)
        self.c_init = float(c_init)
        self.c_steps = int(c_steps)
        self.max_iterations = int(max_iterations)
        self.learning_rate_init = float(learning_rate_init)
        self.gradient = gradient
        self.fd_step = float(fd_step)
        self.max_passes = None if max_passes is None else int(max_passes)
        self.fill = check_fill(fill)
        self.gamma = float(gamma)
        self.autoencoder = autoencoder

    # -----------------------------------------------------------------------------------------------------------

    def attribute(
        self, model: Model, pixels: np.ndarray, target: Target, clean_outputs: np.ndarray, progress: Progress
    ) -> tuple[np.ndarray, dict[str, Any]]:
        began = model.forward_passes
        pixels = np.asarray(pixels, dtype=np.float32)
        t0, q = _explained_classes(target)
        segments = make_segments(pixels, self.features, self.n_segments, self.compactness, self.cells)
        fill = fill_image(pixels, self.fill, model.spec).astype(np.float32)
        autoencoder = _Autoencoder(self.autoencoder) if self.gamma > 0 and self.autoencoder is not None else None
        modes = ["pp", "pn"] if self.mode == "both" else [self.mode]
        problems = {m: Problem(m, pixels, fill, segments, t0, q, self.kappa) for m in modes}

        exact = self._use_exact(model, problems[modes[0]])
        max_passes = self.max_passes
        total_iterations = len(modes) * self.c_steps * self.max_iterations
        counter = {"done": 0}

        def step(count: int) -> None:
            counter["done"] += count
            progress(min(counter["done"], total_iterations), total_iterations)

        extras: dict[str, Any] = {}
        budget_reached = False
        for index, mode in enumerate(modes):
            limit = None
            if max_passes is not None:
                left = max_passes - (model.forward_passes - began) - (len(modes) - index)  # verification passes
                limit = model.forward_passes + max(0, left // (len(modes) - index))
            search = _Search(self, model, problems[mode], exact, autoencoder, limit, step)
            result = search.run()
            budget_reached |= result["budget_reached"]
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
            "resolved_params": {
                "gradient": "exact" if exact else "finite-difference",
                "n_features": int(problems[modes[0]].n_features),
                **({"autoencoder": _describe(self.autoencoder)} if self.autoencoder is not None else {}),
            },
        })
        saliency = extras["pp_map"] if "pp" in modes else extras["pn_map"]
        return np.asarray(saliency, dtype=np.float32), extras

    def constant_map_reason(self, extras: dict[str, Any]) -> str:
        if self.mode != "pn" and extras.get("pp_found") and not np.any(extras.get("pp_map")):
            return (f"the fill image alone (fill={self.fill!r}) is already class {extras['pp_class']}, so the pertinent "
                    "positive is empty; try another fill (grey, black, mean, blur) or mode='pn'")
        return super().constant_map_reason(extras)

    def _use_exact(self, model: Model, problem: Problem) -> bool:
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


# ---------------------------------------------------------------------------------------------------------------
# Feature spaces
# ---------------------------------------------------------------------------------------------------------------


def make_segments(pixels: np.ndarray, features: str, n_segments: int = 50, compactness: float = 10.0,
                  cells: int = 8) -> np.ndarray:
    """The feature index of each pixel (h, w), int64, labels 0..F-1 (every label used).

    "superpixels": SLIC (Achanta et al. 2012, scikit-image, start_label 0, deterministic) on the image in [0, 1];
    "grid": ``cells`` x ``cells`` blocks of (nearly) equal size; "pixels": one feature per pixel (row-major).
    """
    height, width = pixels.shape[:2]
    if features == "pixels":
        return np.arange(height * width, dtype=np.int64).reshape(height, width)
    if features == "grid":
        rows = np.minimum(np.arange(height) * cells // height, cells - 1)
        cols = np.minimum(np.arange(width) * cells // width, cells - 1)
        labels = rows[:, None] * cells + cols[None, :]
    elif features == "superpixels":
        from skimage.segmentation import slic

        image = np.clip(np.asarray(pixels, np.float64) / 255.0, 0.0, 1.0)
        labels = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    else:
        raise ParameterError(f"features must be one of {FEATURES}, got {features!r}")
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(height, width).astype(np.int64)


class Problem:
    """One CEM search (a PP or a PN) in a feature space: the map from the variable to pixels and its adjoint.

    ``variable`` has shape (F, k): k = 3 for a PN (an addition per channel) and for a PP on pixels, else 1 (a PP
    keeps each superpixel or cell as a whole). ``areas`` (F, k) are the pixel counts that weigh the elastic net and
    precondition the step.
    """

    def __init__(self, mode: str, x0: np.ndarray, fill: np.ndarray, segments: np.ndarray, t0: int,
                 q: int | None, kappa: float) -> None:
        self.mode, self.t0, self.q, self.kappa = mode, int(t0), q, float(kappa)
        self.x0 = np.asarray(x0, np.float32)
        self.fill = np.asarray(fill, np.float32)
        self.segments = segments
        self.n_features = int(segments.max()) + 1
        per_pixel = self.n_features == segments.size
        self.channels = 3 if (mode == "pn" or per_pixel) else 1
        counts = np.bincount(segments.ravel(), minlength=self.n_features).astype(np.float64)
        self.areas = np.repeat(counts[:, None], self.channels, axis=1)
        self.removed = self.x0 - self.fill  # what a PP takes away where a = 0
        order = np.argsort(segments.ravel(), kind="stable")
        bounds = np.concatenate([[0], np.cumsum(counts.astype(np.int64))])
        self.members = [order[bounds[f]:bounds[f + 1]] for f in range(self.n_features)]

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_features, self.channels

    def start(self) -> np.ndarray:
        """The starting point: no addition (PN), nothing kept (PP)."""
        return np.zeros(self.shape, dtype=np.float64)

    def lift(self, v: np.ndarray) -> np.ndarray:
        """S(v): (h, w, k) float32."""
        return np.asarray(v, np.float32)[self.segments]

    def image(self, v: np.ndarray) -> np.ndarray:
        """The pixels (h, w, 3) float32 in [0, 255] for the variable ``v``."""
        lifted = self.lift(v)
        if self.mode == "pn":
            return np.clip(self.x0 + np.float32(255.0) * lifted, 0.0, 255.0)
        return np.clip(self.fill + lifted * self.removed, 0.0, 255.0)

    def pullback(self, v: np.ndarray, pixel_gradient: np.ndarray) -> np.ndarray:
        """d/dv of a function of the pixels whose gradient at ``image(v)`` is ``pixel_gradient`` (h, w, 3)."""
        g = np.asarray(pixel_gradient, np.float64)
        if self.mode == "pn":
            unclipped = self.x0 + 255.0 * self.lift(v)
            g = 255.0 * g * ((unclipped < 255.0) & (unclipped > 0.0))
        else:
            unclipped = self.fill + self.lift(v) * self.removed
            g = g * self.removed * ((unclipped < 255.0) & (unclipped > 0.0))
            if self.channels == 1:
                g = g.sum(axis=2, keepdims=True)
        flat = self.segments.ravel()
        out = np.empty(self.shape, dtype=np.float64)
        for channel in range(self.channels):
            out[:, channel] = np.bincount(flat, weights=g[:, :, channel].ravel(), minlength=self.n_features)
        return out

    def perturbed(self, v: np.ndarray, elements: np.ndarray, step: float) -> np.ndarray:
        """Images at ``v + step * e_i`` for each flat variable index ``i`` of ``elements`` (n, h, w, 3)."""
        base = self.image(v)
        height, width = base.shape[:2]
        batch = np.repeat(base[None], len(elements), axis=0).reshape(len(elements), height * width, 3)
        flat_x0 = self.x0.reshape(-1, 3)
        flat_fill = self.fill.reshape(-1, 3)
        flat_removed = self.removed.reshape(-1, 3)
        for n, element in enumerate(elements):
            feature, channel = divmod(int(element), self.channels)
            value = np.float32(v[feature, channel] + step)
            rows = self.members[feature]
            if self.mode == "pn":
                batch[n, rows, channel] = np.clip(flat_x0[rows, channel] + np.float32(255.0) * value, 0.0, 255.0)
            elif self.channels == 1:
                batch[n, rows, :] = np.clip(flat_fill[rows] + value * flat_removed[rows], 0.0, 255.0)
            else:
                batch[n, rows, channel] = np.clip(flat_fill[rows, channel] + value * flat_removed[rows, channel],
                                                  0.0, 255.0)
        return batch.reshape(len(elements), height, width, 3)

    # The hinge ------------------------------------------------------------------------------------------------

    def seed(self, logits: np.ndarray) -> tuple[float, np.ndarray]:
        """(hinge value before max(0, .), the logit vector whose dot product with the logits it is, without kappa)."""
        logits = np.asarray(logits, np.float64)
        seed = np.zeros(len(logits), dtype=np.float64)
        if self.mode == "pn" and self.q is not None:
            rival = _strongest_other(logits, self.q)
            seed[rival], seed[self.q] = 1.0, -1.0
        else:
            rival = _strongest_other(logits, self.t0)
            sign = 1.0 if self.mode == "pn" else -1.0
            seed[self.t0], seed[rival] = sign, -sign
        return float(seed @ logits + self.kappa), seed

    def holds(self, logits: np.ndarray) -> bool:
        """Whether the class condition holds (Alibi's check, with the margin kappa)."""
        shifted = np.asarray(logits, np.float64).copy()
        if self.mode == "pn" and self.q is not None:
            shifted[self.q] -= self.kappa
            return int(np.argmax(shifted)) == self.q
        if self.mode == "pn":
            shifted[self.t0] += self.kappa
            return int(np.argmax(shifted)) != self.t0
        shifted[self.t0] -= self.kappa
        return int(np.argmax(shifted)) == self.t0

    def elastic_net(self, v: np.ndarray, beta: float) -> float:
        return float(np.sum(self.areas * (beta * np.abs(v) + v * v)))


def _strongest_other(logits: np.ndarray, index: int) -> int:
    masked = np.asarray(logits, np.float64).copy()
    masked[index] = -np.inf
    return int(np.argmax(masked))


# ---------------------------------------------------------------------------------------------------------------
# Gradients of the hinge term
# ---------------------------------------------------------------------------------------------------------------


def logits_of(model: Model, images: np.ndarray) -> np.ndarray:
    """Logits (n, C) float64 of images (n, h, w, 3), in chunks of the model's batch size."""
    return np.asarray(model.convert(model.predict(images), "logit"), dtype=np.float64)


def hinge_gradient_exact(model: Model, problem: Problem, v: np.ndarray,
                         rival_guess: np.ndarray | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """(logits at v, hinge before max(0, .), d(seed . logits)/dv (F, k)) by the model's backward graph.

    The seed is the hinge's logit vector at ``v``; ``rival_guess`` (a seed) saves the pass that would find it:
    when the logits the gradient run returns give another seed, the gradient is run again with the right one.
    """
    image = problem.image(v)[None]
    seed = rival_guess
    if seed is None:
        logits = logits_of(model, image)[0]
        _, seed = problem.seed(logits)
    logits, pixel_gradient = model.gradient(image, seed.astype(np.float32))
    logits = np.asarray(logits[0], np.float64)
    value, actual = problem.seed(logits)
    if not np.array_equal(actual, seed):
        logits, pixel_gradient = model.gradient(image, actual.astype(np.float32))
        logits = np.asarray(logits[0], np.float64)
        value, actual = problem.seed(logits)
    return logits, value, problem.pullback(v, pixel_gradient[0])


def logit_jacobian_fd(model: Model, problem: Problem, v: np.ndarray, step: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(logits at v (C,), central-difference Jacobian of the logits w.r.t. v, (C, F, k)).

    ``1 + 2 * F * k`` images, built and evaluated in chunks of the model's batch size.
    """
    count = problem.n_features * problem.channels
    center = logits_of(model, problem.image(v)[None])[0]
    jacobian = np.empty((len(center), count), dtype=np.float64)
    half = max(1, model.batch_size // 2)
    for start, stop in chunks(count, half):
        elements = np.arange(start, stop)
        batch = np.concatenate([problem.perturbed(v, elements, step), problem.perturbed(v, elements, -step)])
        out = logits_of(model, batch)
        jacobian[:, start:stop] = ((out[:stop - start] - out[stop - start:]) / (2.0 * step)).T
    return center, jacobian.reshape(len(center), problem.n_features, problem.channels)


# ---------------------------------------------------------------------------------------------------------------
# Optional autoencoder term
# ---------------------------------------------------------------------------------------------------------------


def _check_autoencoder(autoencoder: Any) -> None:
    if isinstance(autoencoder, (str, Path)):
        if not Path(autoencoder).is_file():
            raise ParameterError(f"autoencoder file {autoencoder} not found")
        return
    if callable(autoencoder) or hasattr(autoencoder, "SerializeToString"):
        return
    raise ParameterError(f"autoencoder must be an ONNX file, an onnx.ModelProto or a callable, got "
                         f"{type(autoencoder).__name__}")


def _describe(autoencoder: Any) -> str:
    if isinstance(autoencoder, (str, Path)):
        return str(autoencoder)
    if hasattr(autoencoder, "SerializeToString"):
        return "onnx.ModelProto"
    return getattr(autoencoder, "__name__", type(autoencoder).__name__)


class _Autoencoder:
    """``|(AE(x) - x) / 255|^2`` and its pixel gradient (exact for ONNX, None for a callable)."""

    def __init__(self, source: Any) -> None:
        self.session = self.grad_session = None
        self.function: Callable[[np.ndarray], np.ndarray] | None = None
        if callable(source) and not isinstance(source, (str, Path)) and not hasattr(source, "SerializeToString"):
            self.function = source
            return
        import onnx
        import onnxruntime as ort
        from google.protobuf.message import DecodeError

        from ..autodiff import UnsupportedOpError, build_gradient_model

        try:
            proto = onnx.load(str(source)) if isinstance(source, (str, Path)) else source
        except (OSError, ValueError, DecodeError) as error:
            raise ModelError(f"cannot read the autoencoder {source}: {error}") from None
        initializers = {t.name for t in proto.graph.initializer}
        inputs = [i.name for i in proto.graph.input if i.name not in initializers]
        if len(inputs) != 1 or len(proto.graph.output) != 1:
            raise ModelError("the autoencoder must have one image input and one image output")
        self.input, self.output = inputs[0], proto.graph.output[0].name
        options = ort.SessionOptions()
        self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        try:
            built = build_gradient_model(proto, self.output, wrt=[self.input])
            self.grad_session = ort.InferenceSession(built.SerializeToString(), options,
                                                     providers=["CPUExecutionProvider"])
        except UnsupportedOpError:
            self.grad_session = None  # falls back to finite differences on the feature variable

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if self.function is not None:
            out = np.asarray(self.function(images), np.float64)
        else:
            out = np.asarray(self.session.run([self.output], {self.input: images})[0], np.float64)
        if out.shape != images.shape:
            raise ModelError(f"the autoencoder returned {list(out.shape)} for images {list(images.shape)}: it must "
                             "return images of the shape it takes (N, H, W, 3)")
        return out

    def losses(self, images: np.ndarray) -> np.ndarray:
        residual = (self.reconstruct(images) - images) / 255.0
        return np.sum(residual.reshape(len(images), -1) ** 2, axis=1)

    def pixel_gradient(self, image: np.ndarray) -> tuple[float, np.ndarray] | None:
        """(loss, d loss / d pixels (h, w, 3)) or None when only finite differences are possible."""
        if self.grad_session is None:
            return None
        batch = np.asarray(image, np.float32)[None]
        residual = (self.reconstruct(batch) - batch) / 255.0
        names = [o.name for o in self.grad_session.get_outputs()]
        out = self.grad_session.run(names, {self.input: batch, "seed": residual.astype(np.float32)})
        jt_r = np.asarray(out[1], np.float64)[0]
        gradient = 2.0 / 255.0 * (jt_r - residual[0])
        return float(np.sum(residual ** 2)), gradient


def autoencoder_gradient(autoencoder: _Autoencoder, problem: Problem, v: np.ndarray, step: float) -> np.ndarray:
    """d |(AE(x(v)) - x(v)) / 255|^2 / dv (F, k): exact through the backward graph, else central differences."""
    exact = autoencoder.pixel_gradient(problem.image(v))
    if exact is not None:
        return problem.pullback(v, exact[1])
    count = problem.n_features * problem.channels
    out = np.empty(count, dtype=np.float64)
    for start, stop in chunks(count, 16):
        elements = np.arange(start, stop)
        plus = autoencoder.losses(problem.perturbed(v, elements, step))
        minus = autoencoder.losses(problem.perturbed(v, elements, -step))
        out[start:stop] = (plus - minus) / (2.0 * step)
    return out.reshape(problem.shape)


# ---------------------------------------------------------------------------------------------------------------
# FISTA with a binary search on c
# ---------------------------------------------------------------------------------------------------------------


class _Search:
    def __init__(self, method: CEM, model: Model, problem: Problem, exact: bool, autoencoder: _Autoencoder | None,
                 limit: int | None, step: Callable[[int], None]) -> None:
        self.method, self.model, self.problem, self.exact = method, model, problem, exact
        self.autoencoder, self.limit, self.step = autoencoder, limit, step
        self.budget_reached = False

    def affordable(self) -> bool:
        """Whether one more iteration fits in the pass budget (worst case)."""
        if self.limit is None:
            return True
        cost = 3 if self.exact else 2 + 2 * self.problem.n_features * self.problem.channels
        return self.model.forward_passes + cost <= self.limit

    def gradients(self, y: np.ndarray, rival: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """At ``y``, preconditioned (divided by the areas): (gradient of the hinge, zero where it is inactive;
        gradient of gamma * AE, zero without autoencoder; the hinge's seed)."""
        problem, method = self.problem, self.method
        if self.exact:
            logits, value, grad = hinge_gradient_exact(self.model, problem, y, rival)
            _, seed = problem.seed(logits)
        else:
            logits, jacobian = logit_jacobian_fd(self.model, problem, y, method.fd_step)
            value, seed = problem.seed(logits)
            grad = np.tensordot(seed, jacobian, axes=1)
        hinge = grad / problem.areas if value > 0 else np.zeros(problem.shape)
        extra = np.zeros(problem.shape)
        if self.autoencoder is not None:
            extra = method.gamma * autoencoder_gradient(self.autoencoder, problem, y, method.fd_step) / problem.areas
        return hinge, extra, seed

    def run(self) -> dict[str, Any]:
        method, problem = self.method, self.problem
        lower, upper, c = 0.0, C_UPPER, method.c_init
        best_norm, best_v, best_c = math.inf, None, None
        iterations = 0
        rival: np.ndarray | None = None
        for _ in range(method.c_steps):
            x = problem.start()
            y = x.copy()
            found_here = False
            threshold = 0.0  # the c below which v = 0 is a fixed point, when the round stopped there
            for k in range(method.max_iterations):
                if not self.affordable():
                    self.budget_reached = True
                    break
                rate = method.learning_rate_init * (1.0 - k / method.max_iterations) ** 0.5
                hinge, extra, rival = self.gradients(y, rival)
                gradient = c * hinge + extra + 2.0 * y
                # Shrinkage-thresholding of beta * |v|_1 and projection on [0, 1] (the variable is never negative).
                x_next = np.clip(y - rate * gradient - rate * method.beta, 0.0, 1.0)
                y_next = np.clip(x_next + k / (k + 3.0) * (x_next - x), 0.0, 1.0)
                stationary = np.array_equal(x_next, x) and np.array_equal(y_next, y)
                x, y = x_next, y_next
                logits = logits_of(self.model, problem.image(x)[None])[0]
                iterations += 1
                self.step(1)
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s c=%g k=%d hinge=%.4f net=%.4g max=%.3f passes=%d", problem.mode, c, k,
                                 problem.seed(logits)[0], problem.elastic_net(x, method.beta), float(x.max()),
                                 self.model.forward_passes)
                if problem.holds(logits):
                    found_here = True
                    norm = problem.elastic_net(x, method.beta)
                    if norm < best_norm:
                        best_norm, best_v, best_c = norm, x.copy(), c
                if stationary:
                    # A fixed point of the proximal-gradient map (for one step size, so for all): the iterates
                    # would repeat exactly. At v = 0 this happens while c * hinge_f + extra_f + beta >= 0 for every
                    # f, i.e. for c <= min over descent directions of (beta + extra_f) / -hinge_f.
                    if k == 0 and not found_here and not x.any():
                        descent = hinge < 0
                        threshold = (float(np.min((method.beta + extra[descent]) / -hinge[descent]))
                                     if descent.any() else math.inf)
                    self.step(method.max_iterations - k - 1)
                    break
            if self.budget_reached or threshold == math.inf:  # no c can leave v = 0: nothing to search
                break
            if found_here:
                upper = min(upper, c)
                c = (lower + upper) / 2.0
            else:
                lower = max(lower, c, threshold)
                c = (lower + upper) / 2.0 if upper < 1e9 else lower * 10.0
        return self.result(best_v, best_c, best_norm, iterations)

    def result(self, best_v: np.ndarray | None, best_c: float | None, best_norm: float,
               iterations: int) -> dict[str, Any]:
        problem = self.problem
        found = best_v is not None
        if not found:  # the trivial answers: the whole image (PP), no addition (PN)
            best_v = np.ones(problem.shape) if problem.mode == "pp" else problem.start()
        image = problem.image(best_v).astype(np.float32)
        if problem.mode == "pn":
            delta = image - problem.x0
            amount = np.sum(delta, axis=2)
        else:
            delta = problem.x0 - image
            amount = np.mean(problem.lift(best_v), axis=2)
        return {
            "image": image,
            "delta": delta.astype(np.float32),
            "map": amount.astype(np.float32),
            "variable": best_v.astype(np.float32),
            "found": bool(found),
            "c": None if best_c is None else float(best_c),
            "norm": float(best_norm) if found else None,
            "iterations": int(iterations),
            "budget_reached": self.budget_reached,
        }


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def _explained_classes(target: Target) -> tuple[int, int | None]:
    """(t0, q): the explained class and, for a contrast (p, q), the class the PN must reach."""
    if target.kind == "class":
        return int(target.classes[0]), None
    if target.kind == "contrast":
        return int(target.classes[0]), int(target.classes[1])
    raise TargetError(f"CEM explains one class or a contrast (p, q), not a list of classes {list(target.classes)}")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False
