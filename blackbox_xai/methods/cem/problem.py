"""One CEM search problem (a pertinent positive or negative) in a feature space.

:class:`Problem` holds the map from the feature variable to pixels (``image``), its adjoint (``pullback``), the
perturbed images finite differences need (``perturbed``), the hinge on the logits (``seed``, ``holds``) and the
elastic net (``elastic_net``); the formulas are in :mod:`blackbox_xai.methods.cem`.
"""

from __future__ import annotations

import numpy as np


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

