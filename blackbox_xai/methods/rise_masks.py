"""RISE's random masks: the paper's independent draws, scrambled Sobol points, and antithetic pairs.

A mask is a ``cells`` x ``cells`` grid of cells, each kept with probability ``p_keep``, bilinearly upsampled to
(cells + 1) x cell size and cropped at a shift of up to one cell, so that mask edges fall anywhere (Petsiuk, Das
and Saenko, BMVC 2018). Bilinear weights are convex, so every pixel of a mask has expectation exactly ``p_keep``
whatever the design below.

Designs (:class:`MaskSampler`):

- ``sampling="random"``: independent uniforms decide the cells and the shift (the paper's masks);
- ``sampling="sobol"``: the uniforms are the points of a scrambled Sobol sequence (Owen 1998; scipy.stats.qmc)
  in ``cells**2 + 2`` dimensions (the cells, then the two shifts): every cell is kept in very nearly
  ``p_keep`` of the masks, and every pair of cells is kept together in very nearly ``p_keep**2`` of them, which
  the paper's independent draws only reach on average. The balance is exact for prefixes of 2^k points;
  scrambling keeps every point uniform, so the estimators stay unbiased;
- ``antithetic=True``: masks come in pairs drawn from the uniforms ``u`` and ``1 - u`` for the cells (the same
  shift): a cell is kept in the first if ``u < p_keep`` and in the second if ``u > 1 - p_keep``. Both are
  ordinary masks; at ``p_keep = 0.5`` the second is the complement ``1 - M`` of the first, so every pixel is
  covered exactly once per pair.

Every design draws its uniforms row by row from one generator, so that the first n masks of a run do not depend
on how the run is chunked, except the paper's own generator (``sampling="random"``, ``antithetic=False``), which is
kept draw for draw as it was (:func:`generate_masks`, chunked by the model's batch size), so that old maps can be
reproduced byte for byte.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

SAMPLINGS = ("random", "sobol")


def cell_size(cells: int, size: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) of one cell for masks of ``size`` (h, w): the side divided by ``cells``, rounded up."""
    height, width = size
    return -(-height // cells), -(-width // cells)


def upsample(grids: np.ndarray, shift_y: np.ndarray, shift_x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Masks (n, h, w) float32: each grid (n, cells, cells) bilinearly upsampled to (cells + 1) cell sizes and
    cropped to ``size`` at its shift (pixels)."""
    height, width = size
    cells = grids.shape[1]
    cell_h, cell_w = cell_size(cells, size)
    up_h, up_w = (cells + 1) * cell_h, (cells + 1) * cell_w
    masks = np.empty((len(grids), height, width), dtype=np.float32)
    for i, grid in enumerate(grids):
        upsampled = cv2.resize(grid, (up_w, up_h), interpolation=cv2.INTER_LINEAR)
        masks[i] = upsampled[shift_y[i]:shift_y[i] + height, shift_x[i]:shift_x[i] + width]
    return masks


def generate_masks(
    rng: np.random.Generator, count: int, cells: int, p_keep: float, size: tuple[int, int]
) -> np.ndarray:
    """``count`` RISE masks (count, h, w) float32 in [0, 1], drawn from ``rng`` as the paper does: independent
    Bernoulli(``p_keep``) cells, then independent integer shifts."""
    cell_h, cell_w = cell_size(cells, size)
    grids = (rng.random((count, cells, cells)) < p_keep).astype(np.float32)
    shift_y = rng.integers(0, cell_h, count)
    shift_x = rng.integers(0, cell_w, count)
    return upsample(grids, shift_y, shift_x, size)


class MaskSampler:
    """Draws RISE masks chunk after chunk (see the module's documentation for the designs).

    Parameters
    ----------
    cells, p_keep : the grid size and the probability that a cell is kept.
    size : (height, width) of the masks.
    sampling : "random" (independent uniforms) or "sobol" (scrambled Sobol points).
    antithetic : draw masks in pairs from ``u`` and ``1 - u`` (an odd count ends with the first of a pair).
    seed : seed of the generator (None: fresh entropy).
    """

    def __init__(self, cells: int, p_keep: float, size: tuple[int, int], sampling: str = "random",
                 antithetic: bool = False, seed: int | None = 0) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.cells, self.p_keep, self.size = int(cells), float(p_keep), (int(size[0]), int(size[1]))
        self.sampling, self.antithetic = sampling, bool(antithetic)
        self.rng = np.random.default_rng(seed)
        self._sobol = None
        if sampling == "sobol":
            from scipy.stats import qmc  # scipy comes with scikit-image and scikit-learn

            self._sobol = qmc.Sobol(d=self.cells * self.cells + 2, scramble=True, seed=self.rng)
        self._pending: np.ndarray | None = None  # the second mask of a pair whose first ended the last chunk

    @property
    def legacy(self) -> bool:
        """True for the paper's own generator (:func:`generate_masks`), kept draw for draw."""
        return self.sampling == "random" and not self.antithetic

    def uniforms(self, count: int) -> np.ndarray:
        """``count`` points (count, cells**2 + 2) in [0, 1) of the design (before antithetic pairing)."""
        if self._sobol is None:
            return self.rng.random((count, self.cells * self.cells + 2))
        with warnings.catch_warnings():  # "balance properties ... require n to be a power of 2": known
            warnings.simplefilter("ignore", UserWarning)
            return self._sobol.random(count)

    def draw(self, count: int) -> np.ndarray:
        """The next ``count`` masks (count, h, w) float32 in [0, 1]."""
        if self.legacy:
            return generate_masks(self.rng, count, self.cells, self.p_keep, self.size)
        cells2 = self.cells * self.cells
        parts = []
        if self._pending is not None and count > 0:
            parts.append(self._pending)
            self._pending = None
        needed = count - sum(len(p) for p in parts)
        if needed > 0:
            points = self.uniforms(-(-needed // 2) if self.antithetic else needed)
            if self.antithetic:
                mirrored = points.copy()
                mirrored[:, :cells2] = 1.0 - points[:, :cells2]
                points = np.stack([points, mirrored], axis=1).reshape(-1, points.shape[1])
            if len(points) > needed:
                self._pending = points[needed:]
                points = points[:needed]
            parts.append(points)
        points = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return self._masks(points)

    def _masks(self, points: np.ndarray) -> np.ndarray:
        cells2 = self.cells * self.cells
        cell_h, cell_w = cell_size(self.cells, self.size)
        grids = (points[:, :cells2] < self.p_keep).astype(np.float32).reshape(-1, self.cells, self.cells)
        shift_y = np.minimum((points[:, cells2] * cell_h).astype(np.int64), cell_h - 1)
        shift_x = np.minimum((points[:, cells2 + 1] * cell_w).astype(np.int64), cell_w - 1)
        return upsample(grids, shift_y, shift_x, self.size)
