"""RISE's estimators and mask designs against closed forms, Monte Carlo over seeds, and the sanity failure mode.

The models are black boxes whose score is an exactly known function of the mask. With ``fill="black"`` the
perturbed image is ``x * M``, so a score linear in the pixels, ``f = a + sum_q w_q . x_q``, is
``f(M) = a + sum_q c_q M_q`` with ``c_q = w_q . x_q``: its mean over masks is ``E[f] = a + p sum_q c_q`` (every
pixel of a mask has expectation p).
"""

from __future__ import annotations

import numpy as np
import pytest

import blackbox_xai as bx
from blackbox_xai.methods import RISE
from blackbox_xai.methods.rise_masks import MaskSampler, generate_masks

SIZE = (12, 14)


def linear_model(weights: np.ndarray, bias: float, batch_size: int = 64) -> bx.CallableModel:
    """Score = bias + sum(weights * pixels) (raw), computed in float64."""

    def scores(pixels: np.ndarray) -> np.ndarray:
        return (bias + np.einsum("nhwc,hwc->n", pixels.astype(np.float64), weights))[:, None]

    return bx.CallableModel(scores, spec=bx.InputSpec(size=weights.shape[:2]), batch_size=batch_size,
                            output_kind="logits")


@pytest.fixture
def problem() -> tuple[bx.CallableModel, np.ndarray, np.ndarray, float]:
    """A linear model with a large bias (the mean score dominates, as on a confident classifier), its image, the
    per-pixel contributions ``c_q`` and ``E[f]`` at p_keep = 0.5."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(*SIZE, 3)) * 1e-3
    image = rng.uniform(0, 255, size=(*SIZE, 3)).astype(np.float32)
    bias = 5.0
    contributions = (weights * image.astype(np.float64)).sum(axis=2)
    return linear_model(weights, bias), image, contributions, bias + 0.5 * contributions.sum()


def rise_map(model: bx.Model, image: np.ndarray, **params) -> bx.Explanation:
    params = {"cells": 3, "fill": "black", "score": "raw", **params}
    return RISE(**params).explain(model, image, target=0)


@pytest.mark.parametrize("sampling", ["random", "sobol"])
def test_antithetic_centred_equals_paper_minus_the_exact_mean_score(problem, sampling):
    """At p_keep = 0.5 an antithetic pair is M and 1 - M: the coverage is exactly 1 on every pixel, so
    paper - centred = fbar * coverage = fbar; and for a linear score f(M) + f(1 - M) = 2 E[f], so fbar is E[f]
    exactly, whatever the seed: the two estimators differ by the constant E[f] on every pixel."""
    model, image, _, mean_score = problem
    for seed in (0, 1):
        common = {"n_masks": 40, "sampling": sampling, "antithetic": True, "seed": seed}
        paper = rise_map(model, image, estimator="paper", **common)
        centred = rise_map(model, image, estimator="centred", **common)
        np.testing.assert_allclose(centred.extras["mean_score"], mean_score, rtol=1e-6)
        np.testing.assert_allclose(paper.saliency - centred.saliency, mean_score, rtol=1e-5)
        assert np.ptp(centred.saliency) > 1e-3 * abs(mean_score)  # not a constant map


def test_centred_expectation_is_the_papers_minus_the_mean_score_independent_masks(problem):
    """Independent masks: E[centred_p] = (1 - 1/N) (E[paper_p] - E[f]) (the module docstring's derivation:
    sum_i (f_i - fbar) M_i(p) has expectation (N - 1) Cov(f, M_p)). Monte Carlo over seeds: the per-pixel mean
    of d = centred - (1 - 1/N) (paper - E[f]) is zero within its standard error, and is not zero without the
    constant."""
    model, image, _, mean_score = problem
    n, seeds = 16, 300
    paper, centred = [], []
    for seed in range(seeds):
        kwargs = {"n_masks": n, "sampling": "random", "antithetic": False, "seed": seed}
        paper.append(rise_map(model, image, estimator="paper", **kwargs).saliency)
        centred.append(rise_map(model, image, estimator="centred", **kwargs).saliency)
    paper, centred = np.asarray(paper, np.float64), np.asarray(centred, np.float64)

    def z(constant: float) -> np.ndarray:
        d = centred - (1 - 1 / n) * (paper - constant)
        return d.mean(axis=0) / (d.std(axis=0, ddof=1) / np.sqrt(seeds))

    assert np.abs(z(mean_score)).max() < 5 and np.mean(z(mean_score) ** 2) < 2
    assert np.abs(z(0.0)).min() > 20  # the constant E[f] is really there


def per_pixel_variance(model: bx.Model, image: np.ndarray, seeds: int, **params) -> float:
    """The variance of the map over ``seeds`` seeds, averaged over the pixels."""
    maps = np.asarray([rise_map(model, image, seed=s, **params).saliency for s in range(seeds)], np.float64)
    return float(maps.var(axis=0, ddof=1).mean())


def test_variance_over_seeds_drops_with_centring_and_sobol_points(problem):
    """Per-pixel variance of the map over 60 seeds (32 masks). The mean score times the coverage noise
    dominates the paper's variance; centring removes it, and Sobol points shrink what is left. Antithetic pairs
    do not help the centred estimator on a linear score: the pair's contribution (f - E[f]) (2 M - 1) is as
    variable as two independent masks' (they help on photos: scripts/bench_convergence.py); with them the paper's
    estimator is the centred one plus a constant, so the two vary alike."""
    model, image, _, _ = problem
    common = {"n_masks": 32, "p_keep": 0.5, "seeds": 60, "antithetic": False}
    paper = per_pixel_variance(model, image, estimator="paper", sampling="random", **common)
    centred = per_pixel_variance(model, image, estimator="centred", sampling="random", **common)
    sobol = per_pixel_variance(model, image, estimator="centred", sampling="sobol", **common)
    common["antithetic"] = True
    antithetic = per_pixel_variance(model, image, estimator="centred", sampling="random", **common)
    paper_antithetic = per_pixel_variance(model, image, estimator="paper", sampling="random", **common)
    assert centred < 0.2 * paper, (centred, paper)  # measured 0.12
    assert sobol < 0.3 * centred, (sobol, centred)  # measured 0.16
    assert antithetic > 0.7 * centred, (antithetic, centred)  # measured 2.0
    assert paper_antithetic < 0.5 * paper, (paper_antithetic, paper)  # the coverage is even
    np.testing.assert_allclose(paper_antithetic, antithetic, rtol=1e-6)  # the maps differ by a constant


def test_centred_beats_paper_at_p_keep_other_than_half():
    """At p_keep = 0.3 (antithetic pairs are not complements there) the centred estimator is still much less
    variable than the paper's for a score with a large mean."""
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(*SIZE, 3)) * 1e-3
    image = rng.uniform(0, 255, size=(*SIZE, 3)).astype(np.float32)
    model = linear_model(weights, 5.0)
    for antithetic in (False, True):
        common = {"n_masks": 32, "p_keep": 0.3, "seeds": 40, "antithetic": antithetic}
        paper = per_pixel_variance(model, image, estimator="paper", **common)
        centred = per_pixel_variance(model, image, estimator="centred", **common)
        assert centred < 0.5 * paper, (centred, paper, antithetic)


@pytest.mark.parametrize("sampling,antithetic", [("random", False), ("random", True), ("sobol", False),
                                                 ("sobol", True)])
def test_same_seed_same_bytes_and_masks_independent_of_chunking(problem, sampling, antithetic):
    model, image, _, _ = problem
    params = {"n_masks": 50, "sampling": sampling, "antithetic": antithetic, "tolerance": 0.0}
    first = rise_map(model, image, seed=3, **params)
    again = rise_map(model, image, seed=3, **params)
    other = rise_map(model, image, seed=4, **params)
    assert first.saliency.tobytes() == again.saliency.tobytes()
    assert first.extras["standard_error"].tobytes() == again.extras["standard_error"].tobytes()
    assert not np.allclose(first.saliency, other.saliency)
    whole = MaskSampler(3, 0.5, SIZE, sampling, antithetic, seed=3).draw(23)
    sampler = MaskSampler(3, 0.5, SIZE, sampling, antithetic, seed=3)
    pieces = np.concatenate([sampler.draw(5), sampler.draw(7), sampler.draw(11)])
    if (sampling, antithetic) == ("random", False):  # the paper's generator: draw for draw as it always was
        legacy = generate_masks(np.random.default_rng(3), 23, 3, 0.5, SIZE)
        assert whole.tobytes() == legacy.tobytes()
    else:
        assert whole.tobytes() == pieces.tobytes()


def recording_model(seen: list[np.ndarray]) -> bx.CallableModel:
    def scores(pixels: np.ndarray) -> np.ndarray:
        seen.append(pixels.copy())
        return pixels.mean(axis=(1, 2, 3))[:, None]

    return bx.CallableModel(scores, spec=bx.InputSpec(size=SIZE), batch_size=7, output_kind="logits")


@pytest.mark.parametrize("sampling", ["random", "sobol"])
def test_the_model_sees_antithetic_pairs(sampling):
    """With fill="black" on a white image the model sees 255 * M: consecutive images add up to 255 everywhere
    (M and 1 - M at p_keep = 0.5), even with an odd batch size (the pairs are never split)."""
    seen: list[np.ndarray] = []
    image = np.full((*SIZE, 3), 255.0, np.float32)
    explanation = rise_map(recording_model(seen), image, n_masks=30, sampling=sampling, antithetic=True)
    batches = [b for b in seen[1:] if len(b) > 1] or seen[1:]
    masks = np.concatenate(batches)[-30:, :, :, 0] / 255.0
    assert len(masks) == 30 and explanation.timing["forward_passes"] == 31
    assert max(len(b) for b in seen) <= 7
    np.testing.assert_allclose(masks[0::2] + masks[1::2], 1.0, atol=1e-5)
    assert np.ptp(masks) > 0.5
    seen.clear()
    rise_map(recording_model(seen), image, n_masks=30, sampling=sampling, antithetic=False)
    masks = np.concatenate(seen[1:])[-30:, :, :, 0] / 255.0
    assert not np.allclose(masks[0::2] + masks[1::2], 1.0, atol=1e-2)


def test_a_model_whose_score_barely_varies_no_longer_gives_the_mask_coverage_pattern():
    """The sanity failure: a score of 10 + 1e-4 * (brightness of a region). The paper's map is the mean score
    times the coverage pattern of the seed's masks (the map of a constant model), whatever the region; the
    centred map on the same masks does not correlate with that pattern and finds the region."""
    size = (32, 32)
    region = np.zeros(size, bool)
    region[4:14, 18:30] = True

    def scores(pixels: np.ndarray) -> np.ndarray:
        return (10.0 + 1e-4 * pixels.mean(axis=3)[:, region].mean(axis=1))[:, None]

    model = bx.CallableModel(scores, spec=bx.InputSpec(size=size), output_kind="logits")
    constant = bx.CallableModel(lambda p: np.ones((len(p), 1)), spec=bx.InputSpec(size=size), output_kind="logits")
    image = np.full((*size, 3), 200.0, np.float32)
    common = {"n_masks": 500, "cells": 6, "fill": "black", "score": "raw", "seed": 2}
    coverage = RISE(estimator="paper", sampling="random", antithetic=False, **common).explain(
        constant, image, target=0).saliency.ravel()
    paper = RISE(estimator="paper", sampling="random", antithetic=False, **common).explain(
        model, image, target=0).saliency
    centred = RISE(estimator="centred", sampling="random", antithetic=False, **common).explain(
        model, image, target=0).saliency
    default = RISE(**common).explain(model, image, target=0).saliency
    assert np.corrcoef(paper.ravel(), coverage)[0, 1] > 0.99
    for saliency in (centred, default):
        assert abs(np.corrcoef(saliency.ravel(), coverage)[0, 1]) < 0.2
        top = saliency >= np.quantile(saliency, 1 - region.mean())
        assert (top & region).sum() / (top | region).sum() > 0.6


@pytest.mark.parametrize("estimator,antithetic", [("centred", False), ("centred", True), ("paper", False)])
def test_estimated_standard_error_matches_the_spread_over_seeds(problem, estimator, antithetic):
    """The per-pixel standard error estimated from one run's pairs agrees with the standard deviation of the map
    over 80 seeds (independent pairs: random sampling; measured ratios 0.97 to 1.02)."""
    ratio = error_ratio(problem, estimator=estimator, sampling="random", antithetic=antithetic)
    assert 0.85 < ratio < 1.15, ratio


def test_estimated_standard_error_is_conservative_for_sobol_points(problem):
    """Sobol pairs are more even than independent ones: the estimate overstates the error (measured 2.4x), so
    early stopping stops late, never early."""
    assert error_ratio(problem, estimator="centred", sampling="sobol", antithetic=False) > 1.3


def error_ratio(problem, **params) -> float:
    """Root mean square of the estimated standard error over that of the maps' spread over 80 seeds."""
    model, image, _, _ = problem
    runs = [rise_map(model, image, seed=s, n_masks=64, tolerance=0.0, **params) for s in range(80)]
    assert all(r.extras["masks_used"] == 64 and r.timing["forward_passes"] == 65 for r in runs)
    spread = np.asarray([r.saliency for r in runs], np.float64).std(axis=0, ddof=1)
    estimated = np.mean([r.extras["standard_error"] for r in runs], axis=0)
    return float(np.sqrt(np.mean(estimated ** 2) / np.mean(spread ** 2)))


def test_early_stopping_stops_when_the_relative_error_is_reached_and_records_it():
    size = (32, 32)
    region = np.zeros(size, bool)
    region[4:20, 10:30] = True

    def scores(pixels: np.ndarray) -> np.ndarray:
        return (pixels.mean(axis=3)[:, region].mean(axis=1) / 255.0)[:, None]

    model = bx.CallableModel(scores, spec=bx.InputSpec(size=size), batch_size=32, output_kind="logits")
    image = np.full((*size, 3), 200.0, np.float32)
    stopped = RISE(n_masks=4000, cells=6, score="raw", tolerance=0.2, seed=0).explain(model, image, target=0)
    used = stopped.extras["masks_used"]
    assert 128 <= used < 4000 and used % 32 == 0
    assert stopped.timing["forward_passes"] == used + 1
    assert stopped.extras["relative_error"] <= 0.2
    assert stopped.params["tolerance"] == 0.2 and stopped.params["n_masks"] == 4000
    # Stopping where it did is right: a run of that many masks without a tolerance is the same map, and two
    # seeds stopped by the same rule agree at about 1 - tolerance**2.
    full = RISE(n_masks=used, cells=6, score="raw", seed=0).explain(model, image, target=0)
    np.testing.assert_allclose(full.saliency, stopped.saliency, rtol=1e-6, atol=1e-7)
    other = RISE(n_masks=4000, cells=6, score="raw", tolerance=0.2, seed=1).explain(model, image, target=0)
    assert np.corrcoef(stopped.saliency.ravel(), other.saliency.ravel())[0, 1] > 0.85
    never = RISE(n_masks=300, cells=6, score="raw", tolerance=0.0, seed=0).explain(model, image, target=0)
    assert never.extras["masks_used"] == 300 and never.timing["forward_passes"] == 301
