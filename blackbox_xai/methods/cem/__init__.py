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
iterations=1000`` (Alibi's ``max_iterations``), learning rate with polynomial decay (power 0.5, to 0 at
``iterations``), autoencoder weight ``gamma=0``.

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
``h_f``); the round then costs one iteration instead of ``iterations``, ``c0`` becomes the lower bound and the
next ``c`` is ``10 * c0`` (Alibi: ``10 * c``). The ``c`` a PN or PP needs grows with the number of pixels (the
per-pixel gradients shrink): a few to a few tens at 96 x 96, hundreds to thousands at 224 x 224; this is what lets
a black-box search at 224 reach it within its budget.

Gradients of the hinge term (``gradient=``): "exact" chains :meth:`OnnxModel.gradient` (the seed is the hinge's
logit vector, e.g. ``e_t0 - e_j``) through the pixel map and ``S^T``; "finite-difference" takes central differences
of the logits with respect to each variable (``2 * n_variables`` passes, batched in chunks of the model's batch
size, plus one at the point itself); "auto" (default) uses exact gradients when the model has a backward graph and
finite differences otherwise (a :class:`~blackbox_xai.model.CallableModel`, or an op without a backward rule).

The finite-difference step ``fd_step`` is, as everywhere in the library, a fraction of the rms of the perturbed
quantity. What one variable ``v_f`` perturbs is the pixels of its feature (one channel of them for a PN or a PP on
pixels), which it moves linearly across the box: from ``x0`` (``v_f = 0``) to ``x0 + 255`` (``v_f = 1``, before
clipping) for a PN, from the fill to ``x0`` for a PP. The step moves those pixels by ``fd_step`` times the rms of
that span over the feature's pixels (255 for a PN, so 2.55 grey levels at the default 0.01; ``rms(x0 - fill)`` for
a PP), which is a step of exactly ``fd_step`` on the variable, whatever the feature. Where the rms is 0 (a PP feature
whose pixels already are the fill) the variable cannot move the image: the step on it stays ``fd_step`` and its
difference is 0. The same step serves a callable autoencoder's differences.

Optional autoencoder term (Alibi's ``gamma * |AE(x) - x|_2^2``): ``autoencoder=`` an ONNX file (path or
``ModelProto``) or a callable, taking and returning images (N, H, W, 3) float32 in [0, 255], RGB, at the model's
resolution. The term is ``gamma * |(AE(x) - x) / 255|^2`` on the PN image and on the PP image (what the model sees;
Alibi applies it to the PP's kept part, which for us is the PP image up to the fill). An ONNX autoencoder runs in
sessions the explained model opens (``model.make_session``: the model's providers, threads and graph optimisation)
and gets exact gradients from a backward graph (:func:`blackbox_xai.autodiff.build_gradient_model`); a callable one
gets central differences on the feature variable (``2 * n_variables`` autoencoder calls per iteration; not counted
as model passes).

Budget: ``max_passes`` caps the forward passes of the model, gradient runs included (default 10000; None: no cap,
Alibi's whole schedule of ``c_steps * iterations`` iterations per search). An iteration costs 2 passes with
exact gradients (3 when the hinge's rival class changes between the two), ``2 + 2 * n_variables`` by finite
differences. With ``mode="both"`` the passes left are shared equally between the two searches (the PP runs
first). A search stops cleanly before an iteration that could overrun its share and keeps its best solution;
``extras["budget_reached"]`` says whether that happened. The default black-box run (both modes, 39 superpixels)
on the zoo's EfficientNet-Lite0 at 224 x 224 uses about 10000 passes and finds both a PP and a PN. Exact-gradient
iterations run one image at a time and a backward run costs a few forward runs; lower ``max_passes`` for a faster
answer.

Modules: :mod:`.method` (the :class:`CEM` class), :mod:`.features` (feature spaces), :mod:`.problem` (the map from
the variable to pixels, the hinge, the elastic net), :mod:`.jacobian` (exact and finite-difference gradients),
:mod:`.autoencoder` (the optional term), :mod:`.search` (FISTA and the binary search on ``c``).
"""

from .autoencoder import Autoencoder, autoencoder_gradient
from .features import FEATURES, make_segments
from .jacobian import hinge_gradient_exact, logit_jacobian_fd, logits_of
from .method import CEM, GRADIENTS, MODES
from .problem import Problem
from .search import Schedule, Search

__all__ = [
    "CEM", "FEATURES", "GRADIENTS", "MODES", "Autoencoder", "Problem", "Schedule", "Search", "autoencoder_gradient",
    "hinge_gradient_exact", "logit_jacobian_fd", "logits_of", "make_segments",
]
